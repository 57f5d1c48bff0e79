"""Local benchmark files -> lm-eval's own tasks: the files found and checked (one line each, no model), the
rows renamed into the hub dataset's fields so lm-eval's prompts and targets render from them. KMMLU and
HAE-RAE fixtures (tests/fixtures/kmmlu, haerae) were written for this project in the released files' layout."""
import re

import pytest

from kochat import PROJECT_ROOT
from kochat.errors import UserError
from kochat.evaluation import suites
from support import SHARED_DATA, needs_shared_data

KOBEST = SHARED_DATA / "kobest"
FIXTURES = PROJECT_ROOT / "tests" / "fixtures"


def lm_eval_task(local_task):
    """The lm-eval Task object eval_ko.py scores, built from our config (no model)."""
    from lm_eval.tasks import TaskManager

    return next(iter(TaskManager(include_defaults=False).load([suites.config_for(local_task)])["tasks"].values()))


def kobest_copy(tmp_path, header="ID\tsentence\tquestion\t1\t2\tAnswer", row="1\t비가 왔다.\t결과\t땅이 젖었다.\t해가 떴다.\t1"):
    for sub in ("BoolQ", "COPA", "HellaSwag", "SentiNeg", "WiC"):
        (tmp_path / sub).mkdir()
    (tmp_path / "COPA" / "dev.tsv").write_text(f"{header}\n{row}\n", encoding="utf-8")
    return tmp_path


@needs_shared_data
def test_kobest_dev_files_become_lm_evals_tasks_with_its_prompts():
    local, hub = suites.resolve(["kobest"], {"kobest": str(KOBEST)}, "dev")
    assert hub == [] and [t.task for t in local] == list(suites.KOBEST)
    assert [len(t.rows()) for t in local] == [700, 500, 500, 400, 610]  # skt/kobest_v1's validation sizes
    copa = lm_eval_task(local[1])
    doc = copa.test_docs()[0]  # 전쟁이 시작되었다. / 결과 / … / answer 2
    assert copa.doc_to_text(doc) == "전쟁이 시작되었다.  그래서"  # lm-eval's own prompt function
    assert copa.doc_to_target(doc) == "병사들이 전투에 파견되었다." == copa.doc_to_choice(doc)[1]
    boolq = lm_eval_task(local[0])
    assert boolq.doc_to_choice(boolq.test_docs()[0]) == ["아니오", "예"] and boolq.doc_to_target(boolq.test_docs()[0]) == 0


def test_kmmlu_and_haerae_files_in_their_released_layout():
    local, _ = suites.resolve(["kmmlu", "haerae"], {"kmmlu": str(FIXTURES / "kmmlu"),
                                                    "haerae": str(FIXTURES / "haerae")}, "test")
    assert [t.task for t in local] == ["kmmlu_accounting", "kmmlu_korean_history", "haerae_general_knowledge"]
    history = lm_eval_task(local[1])
    doc = history.test_docs()[0]
    assert history.doc_to_text(doc) == "훈민정음을 반포한 왕은?\nA. 태조\nB. 태종\nC. 세종\nD. 세조\n정답："
    assert history.doc_to_target(doc) == 2  # answer 3, lm-eval's answer-1
    haerae = lm_eval_task(local[2])
    assert haerae.doc_to_target(haerae.test_docs()[1]) == "(B)"


@pytest.mark.parametrize("tasks, folders, split, message", [
    (["kobest"], {}, "dev", "pass --kobest_dir=DIR"),
    (["kobest"], {"kobest": "/nonexistent/kobest"}, "dev", "is not a folder"),
    (["kobest"], {"kobest": "EMPTY"}, "dev", "has no BoolQ/ folder"),
    (["kobest_copa"], {"kobest": "COPY"}, "test", "COPA/test.tsv… holds dev"),
    (["kobest"], {"kobest": "COPY"}, "nosplit", "kobest has the splits"),
    (["kobst"], {}, "dev", "unknown task 'kobst' (did you mean kobest?)"),
    (["arc_easy"], {}, "dev", "other lm-eval tasks read the hub, and it is closed here (offline)"),
    (["kmmlu"], {"kmmlu": "EMPTY"}, "test", "holds no kmmlu file"),
    (["haerae"], {"haerae": str(FIXTURES / "haerae")}, "dev", "haerae has the splits test"),
])
def test_bad_input_is_one_line(tmp_path, tasks, folders, split, message):
    (tmp_path / "empty").mkdir()
    replace = {"EMPTY": str(tmp_path / "empty"), "COPY": str(tmp_path / "copy")}
    (tmp_path / "copy").mkdir()
    kobest_copy(tmp_path / "copy")
    with pytest.raises(UserError) as e:
        suites.resolve(tasks, {k: replace.get(v, v) for k, v in folders.items()}, split)
    text = str(e.value)
    assert "\n" not in text and all(part in text for part in message.split("…"))


def test_a_hub_task_is_one_line_before_loading_when_the_hub_does_not_answer(monkeypatch, capsys):
    """Without HF_HUB_OFFLINE too: lm-eval would otherwise fail reaching the hub after the model has loaded."""
    import socket

    import datasets.config
    from huggingface_hub import constants

    from kochat import hub

    hub.use_offline_if_unreachable.cache_clear()  # decided once a process: decided again here, and after
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # restored after: the tests run offline
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)

    def unreachable(*args, **kwargs):
        raise OSError("no route to host")
    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(UserError, match="other lm-eval tasks read the hub, and it is closed here"):
        suites.resolve(["arc_easy"], {}, "dev")
    assert "is not reachable, working offline" in capsys.readouterr().out
    hub.use_offline_if_unreachable.cache_clear()


@pytest.mark.parametrize("header, row, message", [
    ("ID\tsentence\tquestion\t1\t2\tlabel", "1\t비가 왔다.\t결과\t땅이 젖었다.\t해가 떴다.\t1", "no column Answer; it has"),
    ("ID\tsentence\tquestion\t1\t2\tAnswer", "1\t비가 왔다.\t결과\t땅이 젖었다.\t해가 떴다.\t3", "row 2: Answer is '3'"),
])
def test_a_tsv_with_wrong_columns_or_labels_is_one_line(tmp_path, header, row, message):
    kobest_copy(tmp_path, header, row)
    with pytest.raises(UserError, match=message):
        suites.resolve(["kobest_copa"], {"kobest": str(tmp_path)}, "dev")


@pytest.mark.parametrize("name, text", [
    ("general_knowledge.tsv", "query\tanswer\n수도는? (A) 부산 (B) 서울\t(B)\n"),  # HAE-RAE Bench 1.1's data/
    ("general_knowledge.jsonl", '{"query": "수도는? (A) 부산 (B) 서울", "answer": "B", "options": ["부산", "서울"]}\n'),
])
def test_a_haerae_subset_is_read_in_any_data_file_format(tmp_path, name, text):
    (tmp_path / name).write_text(text, encoding="utf-8")
    local, _ = suites.resolve(["haerae_general_knowledge"], {"haerae": str(tmp_path)}, "test")
    assert local[0].rows() == [{"query": "수도는? (A) 부산 (B) 서울", "answer": "(B)"}]


@pytest.mark.parametrize("name, text, message", [
    ("general_knowledge.csv", "query,answer\n수도는?,(B),남는 칸\n", "general_knowledge.csv, row 2: more fields than"),
    ("general_knowledge.jsonl", '{"query": "수도는?", "answer": "(B)"}\n["수도는?", "(B)"]\n',
     "general_knowledge.jsonl, line 2: list, not named fields"),
    ("general_knowledge.jsonl", '{"query": "수도는?", "answer": "(F)"}\n', "line 1: answer is '(F)', expected one of"),
])
def test_a_bad_row_in_any_format_is_one_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(message)):
        suites.resolve(["haerae"], {"haerae": str(tmp_path)}, "test")


def test_rows_with_an_empty_field_are_left_out_as_the_hubs_loader_drops_them(tmp_path):
    kobest_copy(tmp_path, row="1\t비가 왔다.\t결과\t땅이 젖었다.\t해가 떴다.\t1\n2\t\t결과\t가\t나\t2")
    local, _ = suites.resolve(["kobest_copa"], {"kobest": str(tmp_path)}, "dev")
    assert local[0].rows() == [{"premise": "비가 왔다.", "question": "결과", "alternative_1": "땅이 젖었다.",
                                "alternative_2": "해가 떴다.", "label": 0}]


def test_without_lm_eval_installed_scoring_is_one_line_saying_how_to_install_it(monkeypatch):
    import sys

    from kochat.errors import UserError
    from kochat.evaluation import suites

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # not installed: the README's first command leaves it out
    with pytest.raises(UserError, match=r"needs lm-evaluation-harness.*pip install lm-eval==0\.4\.13"):
        suites.resolve(["kobest"], {"kobest": "."}, "dev")
