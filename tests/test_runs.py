import os
from pathlib import Path

import pytest

from kochat import answering, runs
from kochat.errors import UserError


def test_a_finished_run_is_not_overwritten_silently(tmp_path):
    run = tmp_path / "run"
    assert runs.prepare_output_dir(str(run), overwrite=False) == run
    assert not run.exists()  # nothing is created before there is something to save
    run.mkdir()
    (run / runs.ADAPTER_FILE).write_bytes(b"weights")
    with pytest.raises(UserError, match="already holds a finished run; pass --run_name=<new name>"):
        runs.prepare_output_dir(str(run), overwrite=False)
    assert runs.prepare_output_dir(str(run), overwrite=True) == run
    assert (run / runs.ADAPTER_FILE).read_bytes() == b"weights"


def test_a_folder_that_is_not_a_run_is_never_written_into(tmp_path):
    """A new user's trial: --output_dir=. replaced the project's README.md with the run's card."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("# my project")
    (project / "finetune_ko.py").write_text("")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="holds other files and is not a run folder; pass --run_name=<new name>"):
            runs.prepare_output_dir(str(project), overwrite=overwrite)
    export = tmp_path / "merged"
    export.mkdir()
    (export / "config.json").write_text("{}")
    with pytest.raises(UserError, match="not a run folder"):
        runs.prepare_output_dir(str(export), overwrite=True)
    (tmp_path / "empty" / ".ipynb_checkpoints").mkdir(parents=True)  # hidden files only: as good as empty
    assert runs.prepare_output_dir(str(tmp_path / "empty"), overwrite=False) == tmp_path / "empty"
    stopped = tmp_path / "stopped"  # a run stopped before it finished: its settings, no adapter yet
    (stopped / "checkpoints").mkdir(parents=True)
    (stopped / "checkpoints" / runs.RUN_SETTINGS).write_text("{}")
    assert runs.prepare_output_dir(str(stopped), overwrite=False) == stopped
    (project / "logs").mkdir()  # a project's logs/ is no run's (review: it let --output_dir=. through)
    (project / "checkpoints").mkdir()
    with pytest.raises(UserError, match="not a run folder"):
        runs.prepare_output_dir(str(project), overwrite=False)
    (tmp_path / "disk" / "lost+found").mkdir(parents=True)  # a freshly made file system: as good as empty
    assert runs.prepare_output_dir(str(tmp_path / "disk"), overwrite=False) == tmp_path / "disk"


def test_the_merged_copy_goes_into_a_new_folder_or_replaces_an_earlier_merged_copy(tmp_path):
    runs.check_merged_dir(str(tmp_path / "new"))
    merged = tmp_path / "merged"
    merged.mkdir()
    runs.check_merged_dir(str(merged))  # empty
    for name in ("config.json", runs.TEMPLATE_FILE, "model.safetensors"):
        (merged / name).write_text("x")
    runs.check_merged_dir(str(merged))  # an earlier merge: replaced
    (tmp_path / "project" / "src").mkdir(parents=True)
    (tmp_path / "project" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="--merged_dir=.*project holds other files and is not an earlier merged copy"):
        runs.check_merged_dir(str(tmp_path / "project"))
    with pytest.raises(UserError, match="is a file"):
        runs.check_merged_dir(str(merged / "config.json"))


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_an_unwritable_output_folder_is_refused_before_training():
    # nothing can be made in /proc, not even by root (CI runs as root; os.access would have said yes)
    with pytest.raises(UserError, match="cannot write the output folder /proc/kochat/run: /proc is not a writable"):
        runs.prepare_output_dir("/proc/kochat/run", overwrite=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a folder without write permission")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(UserError, match="cannot write the output folder"):
        runs.prepare_output_dir(str(locked / "run"), overwrite=False)
    assert list(locked.iterdir()) == []  # the probe left nothing


def test_a_file_in_the_way_of_the_output_folder_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is not a writable folder"):
        runs.prepare_output_dir(str(tmp_path / "file" / "run"), overwrite=False)


def test_loss_plot_is_a_png(tmp_path):
    history = [{"step": 5, "loss": 2.5}, {"step": 10, "loss": 2.1}, {"step": 10, "eval_loss": 2.3}]
    runs.plot_loss(history, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_json_leaves_no_temporary_file(tmp_path):
    runs.write_json(tmp_path / "a.json", {"한글": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert "한글" in (tmp_path / "a.json").read_text(encoding="utf-8")


def test_a_failed_write_keeps_the_earlier_file_and_leaves_no_temporary_one(tmp_path, monkeypatch):
    runs.write_text(tmp_path / "Modelfile", "before")

    def disk_full(self, text, *args, **kwargs):  # half of it written, then the disk is full
        self.write_bytes(text[:2].encode())
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        runs.write_text(tmp_path / "Modelfile", "after")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["Modelfile"]
    assert (tmp_path / "Modelfile").read_text(encoding="utf-8") == "before"


def test_open_run_reads_an_adapter_run_and_a_merged_folder(tmp_path, koalpaca_template, tiny_tokenizer):
    from kochat import modeling, tiny

    run = tmp_path / "run"
    run.mkdir()
    runs.write_json(run / runs.TEMPLATE_FILE, koalpaca_template.to_dict())
    runs.write_json(run / "adapter_config.json", {"base_model_name_or_path": "/somewhere/else"})
    runs.write_json(run / runs.RUN_CONFIG, {"constants": {"MODEL_ID": "tiny-gpt-neox"}})
    tiny_tokenizer.save_pretrained(run)
    with pytest.raises(UserError, match="has adapter_config.json but no adapter weights"):
        runs.open_run(str(run))
    (run / runs.ADAPTER_FILE).write_bytes(b"")  # its weights are not read here
    opened = runs.open_run(str(run))
    assert (opened.base_model, opened.adapter, opened.template) == ("tiny-gpt-neox", str(run), koalpaca_template)
    (run / runs.RUN_CONFIG).write_text("{not json")  # broken: the adapter's own config names the base, not here
    with pytest.raises(UserError, match=rf"^the base model of {run}: model folder /somewhere/else not found; pass "
                                        r"--base=…: a folder holding config.json, or a hub id$"):
        runs.open_run(str(run))
    assert runs.open_run(str(run), base="tiny-gpt-neox").base_model == "tiny-gpt-neox"  # --base: where it is here
    runs.write_json(run / "adapter_config.json", {"base_model_name_or_path": None})
    with pytest.raises(UserError, match="names a readable base model; pass a run folder that finetune_ko.py "
                                        "finished, or --base=… the base it was trained on"):
        runs.open_run(str(run))
    runs.write_json(run / runs.RUN_CONFIG, {"constants": {"MODEL_ID": "EleutherAI/polyglot-ko-12.8b"}})
    with pytest.raises(UserError, match=r"^the base model of .*: 'EleutherAI/polyglot-ko-12.8b' is not a local folder "
                                        r"and the hub did not provide it: .* --local-dir /models/polyglot-ko-12.8b`, "
                                        r"copy that folder here and pass --base=/models/polyglot-ko-12.8b; "
                                        r"HF_HUB_OFFLINE=1 is honoured$"):  # trained on a connected machine
        runs.open_run(str(run))

    merged = tmp_path / "merged"
    modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).save_pretrained(merged)
    runs.write_json(merged / runs.TEMPLATE_FILE, koalpaca_template.to_dict())
    tiny_tokenizer.save_pretrained(merged)
    opened = runs.open_run(str(merged))
    assert (opened.base_model, opened.adapter) == (str(merged), None)
    with pytest.raises(UserError, match=r"is a merged model, its weights its own: --base=tiny-gpt-neox is only for a "
                                        r"run folder's adapter; leave it out$"):
        runs.open_run(str(merged), base="tiny-gpt-neox")
    (merged / "config.json").unlink()
    with pytest.raises(UserError, match="holds neither an adapter"):
        runs.open_run(str(merged))
    for empty in ("", " "):  # --adapter= with nothing after it: not the current folder
        with pytest.raises(UserError, match="^--adapter is empty: pass a run folder from finetune_ko.py"):
            runs.open_run(empty)


def test_a_merged_folder_answers_like_the_run_it_came_from(tiny_run_folder, tmp_path, tiny_tokenizer):
    from kochat.generation import gen

    merged = runs.save_merged(tiny_run_folder, str(tmp_path / "merged"), tiny_tokenizer,
                              runs.open_run(str(tiny_run_folder)).template)
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    answers = []
    for folder in (tiny_run_folder, merged):
        run, tokenizer, model = answering.load_for_answering(str(folder), four_bit=False)
        assert not model.training
        answers.append(gen(model, tokenizer, run.template, ["한국의 수도는?", "하늘은 왜 파란가요?"],
                           max_new_tokens=20))
    assert [a.text for a in answers[0]] == [a.text for a in answers[1]]


def test_clear_run_removes_only_what_a_run_wrote(tmp_path):
    for name in (runs.ADAPTER_FILE, runs.RUN_CONFIG, "README.md", "mine.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (tmp_path / "eval" / "cache").mkdir(parents=True)  # eval_ko.py's: the old adapter's scores go, the cache stays
    for name in ("kobest-test.json", "kobest-test.md", "answers-demo.html", "cache/base-1a2b.sqlite", "notes.txt"):
        (tmp_path / "eval" / name).write_text("x")
    assert runs.clear_run(tmp_path) == 3  # the eval reports it removed, said by finetune_ko.py (a user's trial)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "mine.txt"]
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["eval/cache/base-1a2b.sqlite", "eval/notes.txt", "mine.txt"]
    assert not runs.holds_finished_run(tmp_path)
