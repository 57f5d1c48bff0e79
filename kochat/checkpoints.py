"""Training that survives interruption: sealed checkpoints, resuming from the newest one, a clean stop on
Ctrl-C or SIGTERM, and the disk space a run needs, checked before it starts.

The Trainer writes checkpoint-N/ file by file (adapter, optimizer, scheduler, RNG state, trainer state
with the data position), so a crash mid-save leaves a folder that looks like a checkpoint and loads
wrong. When a save has finished, SealCheckpoints writes a manifest of its files (sizes and SHA-256)
beside them, write-then-rename: a checkpoint counts only when its seal exists and its files still match.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import TrainerCallback, TrainerState
from transformers.trainer_utils import TrainOutput

from .cli import flag
from .errors import UserError
from .processes import largest_across
from .runs import RUN_SETTINGS, write_json

SEAL = "kochat-complete.json"
GB = 1e9


def seal(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SEAL and not p.name.startswith("."))
    write_json(folder / SEAL, {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
                               for p in files})


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def is_complete(folder: Path) -> bool:
    """Sealed, and every file the seal lists is there with its size and hash."""
    try:
        manifest = json.loads((folder / SEAL).read_text(encoding="utf-8"))
        return bool(manifest) and all((folder / name).stat().st_size == entry["bytes"]
                                      and _sha256(folder / name) == entry["sha256"]
                                      for name, entry in manifest.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def step_of(folder: Path) -> int:
    return int(folder.name.rsplit("-", 1)[1])


def checkpoint_folders(checkpoints: Path) -> list[Path]:
    """checkpoint-N folders, oldest step first."""
    if not checkpoints.is_dir():
        return []
    found = [p for p in checkpoints.iterdir() if p.is_dir() and p.name.startswith("checkpoint-")
             and p.name.rsplit("-", 1)[1].isdigit()]
    return sorted(found, key=step_of)


def resume_point(checkpoints: Path, resume: str) -> str | None:
    """The checkpoint to continue from: RESUME "auto" = the newest complete one (none: a fresh start),
    "never" = none, or a checkpoint folder's path. Incomplete checkpoints (a crash mid-save) are removed,
    with a note, so the Trainer never counts them among the ones it keeps."""
    if resume == "never":
        if checkpoint_folders(checkpoints):
            raise UserError(f"{checkpoints} holds checkpoints of an unfinished run; {flag('RESUME', 'auto')} "
                            f"continues it, {flag('OVERWRITE', 'true')} starts over")
        return None
    if resume != "auto":
        path = Path(resume).expanduser()
        if not is_complete(path):
            raise UserError(f"{flag('RESUME', resume)} is not a complete checkpoint folder (it needs its {SEAL}); "
                            f"use {flag('RESUME', 'auto')} for the newest complete one")
        return str(path)
    newest = None
    for folder in checkpoint_folders(checkpoints):
        if is_complete(folder):
            newest = folder
        else:
            print(f"    removing {folder.name}: its save did not finish (no matching {SEAL})")
            shutil.rmtree(folder)
    return str(newest) if newest else None


def finished_training(checkpoint: str | None) -> bool:
    """The checkpoint holds the whole training: the run was stopped after its last save, before its end.
    Resumed from it, the Trainer would train one step more than the run asks for."""
    state_file = Path(checkpoint) / "trainer_state.json" if checkpoint is not None else None
    if state_file is None or not state_file.is_file():
        return False  # nothing to resume, or a folder the Trainer itself will refuse
    state = json.loads(state_file.read_text(encoding="utf-8"))
    return state["global_step"] >= state["max_steps"]


def check_same_launch(checkpoint: str | None, fsdp: bool) -> None:
    """A checkpoint continues under the kind of launch that wrote it: FSDP's keeps the optimizer's state in
    shards (optimizer_0/), one process's and DDP's keep it whole. Any checkpoint must hold its adapter."""
    if checkpoint is None:
        return
    start_over = flag("RESUME", "never")
    if (Path(checkpoint) / "optimizer_0").is_dir() != fsdp:
        written_by = "one process or DDP (torchrun)" if fsdp else "accelerate launch --config_file configs/fsdp_qlora.yaml"
        raise UserError(f"{checkpoint} was written by a run launched differently; continue it as it was launched "
                        f"({written_by}), or pass {start_over} to start over")
    if not (Path(checkpoint) / "adapter_model.safetensors").is_file():
        raise UserError(f"{checkpoint} holds no adapter (an FSDP checkpoint written before kochat kept it); pass "
                        f"{start_over} to start over")


def load_adapter(model, checkpoint: str) -> None:
    """The checkpoint's adapter weights into the (unwrapped) LoRA model."""
    set_peft_model_state_dict(model, load_file(str(Path(checkpoint) / "adapter_model.safetensors")))


def restore_finished(trainer, checkpoint: str) -> TrainOutput:
    """Take a finished training from its last checkpoint: the adapter's weights and the Trainer's state
    (steps, loss history), as trainer.train() left them there. The returned training loss is the mean of
    the logged losses (the Trainer's own figure was not saved)."""
    load_adapter(trainer.model, checkpoint)
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return TrainOutput(trainer.state.global_step, sum(losses) / len(losses) if losses else float("nan"), {})


def changed_settings(checkpoints: Path, constants: dict, may_change) -> list[str]:
    """The constants, other than those in `may_change`, whose values differ from the ones the checkpoints in
    the folder were made with (none recorded: none differ). The script declares `may_change`
    (finetune_ko.py's RESUME_MAY_CHANGE): only it knows which of its constants leave the training alone."""
    path = checkpoints / RUN_SETTINGS
    if not path.is_file():
        return []
    saved = json.loads(path.read_text(encoding="utf-8"))
    return sorted(k for k in saved.keys() | constants.keys()
                  if k not in may_change and saved.get(k) != constants.get(k))


def check_same_settings(checkpoints: Path, constants: dict, resume: str | None, may_change) -> None:
    """Record the run's constants beside its checkpoints; when resuming, refuse checkpoints made with
    other data, model, template or training settings (they would continue a different run)."""
    if resume is not None:
        changed = changed_settings(checkpoints, constants, may_change)
        if changed:
            saved = json.loads((checkpoints / RUN_SETTINGS).read_text(encoding="utf-8"))
            was = ", ".join(flag(k, repr(saved.get(k))) for k in changed[:4])
            raise UserError(f"the checkpoints in {checkpoints} come from other settings ({was}); rerun with "
                            f"those, or {flag('OVERWRITE', 'true')} to start over with the new ones")
    checkpoints.mkdir(parents=True, exist_ok=True)
    write_json(checkpoints / RUN_SETTINGS, constants)


class SealCheckpoints(TrainerCallback):
    """Seal each checkpoint once the Trainer has written all of it."""

    def on_save(self, args, state, control, **kwargs):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()  # every process has written its part (its own RNG state) before the seal
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():  # one process seals (kochat/processes.py)
            seal(folder)


class StopOnSignal(TrainerCallback):
    """Ctrl-C or SIGTERM during training: finish the current step, save a checkpoint, stop. A second
    Ctrl-C stops at once (the last sealed checkpoint is still there)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.pending = 0  # the number of a signal this process caught, until the processes agree on it
        self.received: str | None = None  # the signal every process stops for, once they agreed
        self.exit_status = 0  # 128 + the signal's number, the shell's convention for "stopped by a signal"
        self.previous = {}

    def _handle(self, signum, frame):
        if self.pending:
            raise KeyboardInterrupt
        self.pending = signum
        # straight to standard output's descriptor, not print: the handler may run while the main thread is inside
        # a write to sys.stdout (a progress bar's), where print would raise "reentrant call"
        os.write(1, f"\n    {signal.Signals(signum).name}: saving a checkpoint after this step, then stopping (press "
                    f"Ctrl-C again to stop at once)\n".encode())

    def on_train_begin(self, args, state, control, **kwargs):
        self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def agree(self, args) -> str | None:
        """A signal to any one of several processes counts for all of them (else the others would wait for it in
        their next all-reduce forever). Decisions read only what was agreed: a signal that lands just after the
        all-reduce is agreed on at the next step, not acted on by one process alone (whose save would then meet
        the others' next step, a mismatch of collectives)."""
        signum = largest_across(self.pending, args.device)
        if signum and self.received is None:
            self.received, self.exit_status = signal.Signals(signum).name, 128 + signum
        return self.received

    def on_step_end(self, args, state, control, **kwargs):
        if self.agree(args):
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def check_disk_space(folder: Path, counts, keep: int, optim: str, merged: bool) -> None:
    """Stop before training when the output folder's disk cannot hold what the run will write: `keep`
    checkpoints (LoRA weights and optimizer state), the adapter, logs, and the merged 16-bit model."""
    from .estimate import OPTIMIZER_BYTES

    need = keep * (counts.trainable * (4 + OPTIMIZER_BYTES.get(optim, 8)) + 2e6) + 100e6
    what = f"{keep} checkpoints, the adapter, logs"
    if merged:
        need, what = need + 2 * counts.total, what + ", the merged model"
    existing = next(p for p in [folder, *folder.absolute().parents] if p.exists())
    free = shutil.disk_usage(existing).free
    if free < need:
        raise UserError(f"{existing} has {free / GB:.1f} GB free, but this run writes ~{need / GB:.1f} GB "
                        f"({what}); free some space or pass {flag('OUTPUT_DIR', '<a folder on a bigger disk>')}")
