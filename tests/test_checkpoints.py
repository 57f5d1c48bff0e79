import os
import shutil
import signal
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerControl

from kochat import checkpoints
from kochat.errors import UserError
from kochat.estimate import ParamCount


def fake_checkpoint(root: Path, step: int, sealed=True) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(os.urandom(4096))
    (folder / "optimizer.pt").write_bytes(os.urandom(8192))
    (folder / "trainer_state.json").write_text('{"global_step": %d}' % step)
    if sealed:
        checkpoints.seal(folder)
    return folder


def test_a_sealed_checkpoint_is_complete_until_a_file_is_cut_changed_or_lost(tmp_path):
    folder = fake_checkpoint(tmp_path, 10)
    assert checkpoints.is_complete(folder)
    for damage in ("truncate", "flip", "remove", "unsealed"):
        copy = tmp_path / damage / "checkpoint-10"
        shutil.copytree(folder, copy)
        target = copy / "optimizer.pt"
        if damage == "truncate":
            target.write_bytes(target.read_bytes()[:100])  # a crash mid-write
        elif damage == "flip":
            data = bytearray(target.read_bytes())
            data[5] ^= 1
            target.write_bytes(bytes(data))
        elif damage == "remove":
            target.unlink()
        else:
            (copy / checkpoints.SEAL).unlink()  # the crash came before the seal
        assert not checkpoints.is_complete(copy), damage


def test_resume_takes_the_newest_complete_checkpoint_and_removes_a_half_saved_one(tmp_path, capsys):
    root = tmp_path / "checkpoints"
    fake_checkpoint(root, 5)
    fake_checkpoint(root, 10)
    half = fake_checkpoint(root, 15, sealed=False)
    assert checkpoints.resume_point(root, "auto") == str(root / "checkpoint-10")
    assert not half.exists() and "checkpoint-15: its save did not finish" in capsys.readouterr().out
    assert checkpoints.resume_point(tmp_path / "none-yet", "auto") is None


def test_resume_never_and_resume_from_a_path(tmp_path):
    root = tmp_path / "checkpoints"
    assert checkpoints.resume_point(root, "never") is None
    good = fake_checkpoint(root, 5)
    with pytest.raises(UserError, match="unfinished run; --resume=auto continues it, --overwrite=true starts over"):
        checkpoints.resume_point(root, "never")
    assert checkpoints.resume_point(root, str(good)) == str(good)
    bad = fake_checkpoint(root, 6, sealed=False)
    with pytest.raises(UserError, match="not a complete checkpoint folder"):
        checkpoints.resume_point(root, str(bad))


def test_too_little_disk_is_an_error_before_training(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda p: usage(100e9, 99.5e9, 0.5e9))
    counts = ParamCount(trainable=6_553_600, total=12_900_157_440, stored=6_608_701_440, quantized=12_580_000_000)
    folder = tmp_path / "outputs" / "run"
    checkpoints.check_disk_space(folder, counts, 2, "paged_adamw_8bit", merged=False)  # ~0.2 GB: fits in 0.5
    with pytest.raises(UserError, match=r"has 0.5 GB free, but this run writes ~26.0 GB \(2 checkpoints, the "
                                        r"adapter, logs, the merged model\); free some space or pass --output_dir"):
        checkpoints.check_disk_space(folder, counts, 2, "paged_adamw_8bit", merged=True)


def test_sigterm_asks_the_trainer_to_save_and_stop_after_the_step():
    stop, control = checkpoints.StopOnSignal(), TrainerControl()
    before = signal.getsignal(signal.SIGTERM)
    args = SimpleNamespace(device=torch.device("cpu"))  # what the callback reads of the Trainer's arguments
    stop.on_train_begin(args, None, control)
    try:
        stop.on_step_end(args, None, control)
        assert not control.should_save and not control.should_training_stop
        os.kill(os.getpid(), signal.SIGTERM)
        stop.on_step_end(args, None, control)
        assert control.should_save and control.should_training_stop
        assert stop.received == "SIGTERM" and stop.exit_status == 143
        with pytest.raises(KeyboardInterrupt):  # a second signal: stop at once
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        stop.on_train_end(None, None, control)
    assert signal.getsignal(signal.SIGTERM) == before



def test_a_signal_landing_just_after_the_processes_agreed_stops_at_the_next_step_not_this_one(monkeypatch):
    """What one of several processes sees when SIGTERM arrives between the all-reduce and the decision: acting on
    it alone would send this process to save while the others start the next step (a mismatch of collectives)."""
    stop, control = checkpoints.StopOnSignal(), TrainerControl()
    args = SimpleNamespace(device=torch.device("cpu"))
    agreed = []

    def all_reduce_then_a_signal(value, device):
        agreed.append(value)
        if len(agreed) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs as this call returns
        return value

    monkeypatch.setattr(checkpoints, "largest_across", all_reduce_then_a_signal)
    stop.on_train_begin(args, None, control)
    try:
        stop.on_step_end(args, None, control)
        assert stop.pending == signal.SIGTERM and not control.should_save and stop.received is None
        stop.on_step_end(args, None, control)
        assert agreed == [0, signal.SIGTERM] and control.should_save and control.should_training_stop
        assert stop.received == "SIGTERM" and stop.exit_status == 143
    finally:
        stop.on_train_end(None, None, control)


MAY_CHANGE = {"MAX_NEW_TOKENS", "SAVE_STEPS"}  # as the script declares them (finetune_ko.RESUME_MAY_CHANGE)


def test_checkpoints_only_continue_the_settings_they_came_from(tmp_path):
    root = tmp_path / "checkpoints"
    constants = {"DATA": "a.jsonl", "LORA_R": 8, "MAX_NEW_TOKENS": 256, "SAVE_STEPS": 500}
    checkpoints.check_same_settings(root, constants, None, MAY_CHANGE)  # a fresh run records its settings
    fake_checkpoint(root, 5)
    resume = checkpoints.resume_point(root, "auto")
    checkpoints.check_same_settings(root, {**constants, "MAX_NEW_TOKENS": 64, "SAVE_STEPS": 10}, resume, MAY_CHANGE)
    assert checkpoints.changed_settings(root, {**constants, "DATA": "b.jsonl"}, MAY_CHANGE) == ["DATA"]
    with pytest.raises(UserError, match=r"come from other settings \(--data='a.jsonl', --lora_r=8\); rerun with "
                                        r"those, or --overwrite=true"):
        checkpoints.check_same_settings(root, {**constants, "DATA": "b.jsonl", "LORA_R": 16}, resume, MAY_CHANGE)
    with pytest.raises(UserError, match=r"other settings \(--save_steps=10\)"):  # the script decides what may change
        checkpoints.check_same_settings(root, {**constants, "MAX_NEW_TOKENS": 64}, resume, may_change=set())


def test_a_checkpoint_continues_only_under_the_launch_that_wrote_it(tmp_path):
    from kochat.checkpoints import check_same_launch
    from kochat.errors import UserError

    whole, sharded, old_fsdp = (tmp_path / name for name in ("whole", "sharded", "old-fsdp"))
    for folder in (whole, sharded, old_fsdp):
        folder.mkdir()
    (whole / "adapter_model.safetensors").write_bytes(b"x")
    (sharded / "optimizer_0").mkdir()
    (sharded / "adapter_model.safetensors").write_bytes(b"x")
    (old_fsdp / "optimizer_0").mkdir()  # before SaveShardedAdapter: no adapter in an FSDP checkpoint
    check_same_launch(None, fsdp=True)
    check_same_launch(str(whole), fsdp=False)
    check_same_launch(str(sharded), fsdp=True)
    with pytest.raises(UserError, match="configs/fsdp_qlora.yaml"):
        check_same_launch(str(sharded), fsdp=False)
    with pytest.raises(UserError, match="DDP"):
        check_same_launch(str(whole), fsdp=True)
    with pytest.raises(UserError, match="holds no adapter.*--resume=never"):
        check_same_launch(str(old_fsdp), fsdp=True)
