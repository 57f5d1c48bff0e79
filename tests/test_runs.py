import os

import pytest

from kochat import runs
from kochat.cli import UserError


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


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_output_folder_is_refused_before_training(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(UserError, match="cannot write the output folder"):
        runs.prepare_output_dir(str(locked / "run"), overwrite=False)


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
