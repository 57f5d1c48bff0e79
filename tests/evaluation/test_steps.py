"""finetune_ko.py's EVAL_TASKS: SUITE=DIR[@split] items, checked (folders, files) before training starts."""
import json

import pytest

from kochat import PROJECT_ROOT
from kochat.errors import UserError
from kochat.evaluation import steps


def test_eval_tasks_spec():
    kmmlu = PROJECT_ROOT / "tests" / "fixtures" / "kmmlu"
    assert steps.parse_spec(f"kobest=/data/kobest@dev, kmmlu={kmmlu}") == [("kobest", "/data/kobest", "dev"),
                                                                           ("kmmlu", str(kmmlu), "test")]
    (name, local, split), = steps.check_spec(f"kmmlu={kmmlu}")
    assert name == "kmmlu" and split == "test" and [t.task for t in local] == ["kmmlu_accounting", "kmmlu_korean_history"]
    for bad in ("kobest", "mmlu=/data", "kobest=@dev"):
        with pytest.raises(UserError, match="SUITE=FOLDER"):
            steps.parse_spec(bad)
    with pytest.raises(UserError) as e:  # finetune_ko.py has no --kobest_dir: the folder is named as given
        steps.check_spec("kobest=/nonexistent/kobest@dev")
    assert str(e.value) == "--eval_tasks=kobest=/nonexistent/kobest@dev: /nonexistent/kobest is not a folder"


def test_scores_are_named_by_the_file_the_split_reads(tmp_path):
    from types import SimpleNamespace

    run = SimpleNamespace(folder=tmp_path / "run")
    assert steps.default_out(run, ["kobest"], "validation") == tmp_path / "run" / "eval" / "kobest-dev.json"  # one file
    assert steps.default_out(run, ["kobest"], "dev", 10).name == "kobest-dev-first10.json"
    assert steps.default_out(run, ["kobest", "mine"], "test").name == "kobest+mine-test.json"


def test_answers_of_another_questions_file_of_the_same_stem_are_not_replaced(tmp_path):
    out = tmp_path / "answers-qs.json"
    steps.check_not_another_files_answers(out, "qs.txt")  # none yet
    out.write_text(json.dumps({"questions": str(tmp_path / "qs.jsonl")}), encoding="utf-8")
    steps.check_not_another_files_answers(out, str(tmp_path / "x" / ".." / "qs.jsonl"))  # the same file again
    with pytest.raises(UserError, match=r"answers-qs.json holds the answers to .*qs.jsonl; to keep both, pass --out="):
        steps.check_not_another_files_answers(out, str(tmp_path / "qs.txt"))
    out.write_text('{"questions": "/a/qs.txt"}', encoding="utf-8")
    with pytest.raises(UserError, match="holds the answers to /a/qs.txt"):
        steps.check_not_another_files_answers(out, "/b/qs.txt")
