"""Several processes on the CPU (gloo): `torchrun --nproc_per_node=2 finetune_ko.py` trains one run as one process
with the same effective batch does, writes one run folder, and a SIGTERM to either process stops both with a
checkpoint that the same command continues from. (`accelerate launch --cpu --num_processes=2` was seen to start a
single process with accelerate 1.15; torchrun starts two.)"""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from kochat import PROJECT_ROOT
from kochat.checkpoints import SEAL


def torchrun(*args):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(PROJECT_ROOT / "finetune_ko.py"),
            "--preset", "tiny", "--batch_size=1", *args]  # 2 processes × 1 sequence = the preset's batch of 2


def started_past_first_checkpoint(tmp_path, args):
    """(torchrun process, checkpoints folder, the rank-1 worker) once checkpoint-10 is sealed. Rank 1 is not the
    one that prints and saves."""
    proc = subprocess.Popen(torchrun(*args), cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    checkpoints = tmp_path / "outputs" / "tiny" / "checkpoints"
    deadline = time.monotonic() + 300
    while not (checkpoints / "checkpoint-10" / SEAL).exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "finetune_ko.py" in " ".join(p.cmdline())]
    return proc, checkpoints, next(p for p in workers if p.environ().get("RANK") == "1")


def losses(run, key):
    history = json.loads((run / "run_config.json").read_text(encoding="utf-8"))["train"]["log_history"]
    return [e[key] for e in history if key in e]


def test_two_processes_train_one_run_like_one_process_with_the_same_batch(tiny_run, tmp_path):
    result = subprocess.run(torchrun(), cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    run, (single, _) = tmp_path / "outputs" / "tiny", tiny_run
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["tiny"]
    config = json.loads((run / "run_config.json").read_text(encoding="utf-8"))
    assert (config["processes"], config["strategy"]) == (2, "ddp")
    assert result.stdout.count("[0] model tiny-gpt-neox") == 1  # one report, not one a process
    assert "effective batch 2 sequences an update (1 × 1 accumulated × 2 processes, ddp)" in result.stdout
    # the tokens trained on are counted over both processes: as many as the one process saw
    seen_two, seen_one = losses(run, "num_input_tokens_seen")[-1], losses(single, "num_input_tokens_seen")[-1]
    assert abs(seen_two - seen_one) < 0.05 * seen_one
    speed = config["timing"]["real_tok_s_after_first_step"]
    assert speed > 0 and f"{speed:,.0f} real tokens/s after the first step" in result.stdout
    # the same sequences an update, split over two processes: the same curve, up to float sums in another order
    # and which sequences share an update (the distributed sampler's order)
    two, one = losses(run, "loss"), losses(single, "loss")
    assert len(two) == len(one) and max(abs(a - b) for a, b in zip(two, one)) < 0.15
    assert max(abs(a - b) for a, b in zip(losses(run, "eval_loss"), losses(single, "eval_loss"))) < 0.02
    assert (run / "adapter_model.safetensors").is_file() and (run / "demo.jsonl").is_file()


def test_a_sigterm_to_either_process_stops_both_with_a_checkpoint_and_the_same_command_continues(tmp_path):
    args = ["--max_steps=40", "--save_steps=10", "--eval_fraction=0", "--demo_questions="]
    proc, checkpoints, second = started_past_first_checkpoint(tmp_path, args)
    second.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0 and "stopped by SIGTERM at step" in output, output[-3000:]
    stopped_at = int(output.split("stopped by SIGTERM at step ")[1].split()[0])
    assert 10 <= stopped_at < 40 and (checkpoints / f"checkpoint-{stopped_at}" / SEAL).exists()
    again = subprocess.run(torchrun(*args), cwd=tmp_path, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from outputs/tiny/checkpoints/checkpoint-{stopped_at}" in again.stdout
    assert "[6] trained 40 steps" in again.stdout
    assert (tmp_path / "outputs" / "tiny" / "adapter_model.safetensors").is_file()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without GPUs")
def test_fsdp_on_a_machine_without_gpus_is_one_line_before_anything_loads(tmp_path):
    # what `accelerate launch --config_file configs/fsdp_qlora.yaml` sets; accelerate's FSDP needs GPUs
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "finetune_ko.py"), "--preset", "tiny"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "ACCELERATE_USE_FSDP": "true"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: FSDP shards the model across GPUs")
    assert "torchrun --nproc_per_node=N" in result.stderr and not (tmp_path / "outputs").exists()


def test_a_kill_9_of_one_process_loses_no_more_than_the_steps_since_the_last_sealed_checkpoint(tmp_path):
    """kill -9 gives no process a chance to save: torchrun ends the other one, and the same command continues from
    the newest sealed checkpoint (a half-written one, if the survivor started a save, is removed)."""
    args = ["--max_steps=30", "--save_steps=10", "--eval_fraction=0", "--demo_questions="]
    proc, checkpoints, second = started_past_first_checkpoint(tmp_path, args)
    second.kill()
    proc.communicate(timeout=300)
    assert proc.returncode != 0 and not (tmp_path / "outputs" / "tiny" / "adapter_model.safetensors").exists()
    sealed = sorted(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*") if (p / SEAL).exists())
    again = subprocess.run(torchrun(*args), cwd=tmp_path, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from outputs/tiny/checkpoints/checkpoint-{sealed[-1]}" in again.stdout
    assert "[6] trained 30 steps" in again.stdout and (tmp_path / "outputs" / "tiny" / "adapter_model.safetensors").is_file()
