"""Training survives interruption: killed at a random step, stopped by SIGTERM, rerun with the same command."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from kochat import PROJECT_ROOT
from kochat.checkpoints import SEAL

ARGS = ["--preset", "tiny", "--max_steps=30", "--save_steps=5", "--eval_fraction=0", "--demo_questions="]
# The kill point is drawn from this seed: set KOCHAT_RESUME_SEED to repeat a run's draw (a failure prints it).
SEED = int(os.environ.get("KOCHAT_RESUME_SEED") or time.time_ns() % 2**32)


def start(cwd, args=ARGS):
    return subprocess.Popen([sys.executable, str(PROJECT_ROOT / "finetune_ko.py"), *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(path, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def logged_losses(run):
    history = json.loads((run / "run_config.json").read_text(encoding="utf-8"))["train"]["log_history"]
    return [(e["step"], e["loss"]) for e in history if "loss" in e]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, run_script):
    work = tmp_path_factory.mktemp("uninterrupted")
    result = run_script("finetune_ko.py", *ARGS, cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "outputs" / "tiny"


def test_a_run_killed_at_a_random_step_resumes_to_the_same_adapter_and_loss(uninterrupted, tmp_path, run_script):
    chance = random.Random(SEED)
    # killed 0-0.5 s after checkpoint 5, 10 or 15 of 30; later, a fast CPU sometimes finished first (and a
    # kill after the last checkpoint has its own test below)
    after, delay = chance.choice([5, 10, 15]), chance.uniform(0, 0.5)
    print(f"KOCHAT_RESUME_SEED={SEED}: killed {delay:.2f} s after checkpoint-{after}")
    run = tmp_path / "outputs" / "tiny"
    proc = start(tmp_path)
    wait_for(run / "checkpoints" / f"checkpoint-{after}" / SEAL, proc)
    time.sleep(delay)  # anywhere in the next steps, a save included
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "adapter_model.safetensors").exists(), f"killed after it finished (KOCHAT_RESUME_SEED={SEED})"

    result = run_script("finetune_ko.py", *ARGS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[6] resuming from" in result.stdout, (SEED, after, delay)
    assert json.loads((run / "run_config.json").read_text(encoding="utf-8"))["train"]["steps"] == 30
    resumed_log, straight_log = logged_losses(run), logged_losses(uninterrupted)
    assert [s for s, _ in resumed_log] == [s for s, _ in straight_log] == [5, 10, 15, 20, 25, 30]
    assert [x for _, x in resumed_log] == pytest.approx([x for _, x in straight_log], abs=1e-4), (SEED, after, delay)
    resumed, straight = load_file(str(run / "adapter_model.safetensors")), load_file(str(uninterrupted / "adapter_model.safetensors"))
    assert resumed.keys() == straight.keys()
    worst = max((resumed[n] - straight[n]).abs().max().item() for n in straight)
    print(f"killed after checkpoint-{after} + {delay:.2f} s: largest adapter difference {worst:.2e}, largest loss "
          f"difference {max(abs(a[1] - b[1]) for a, b in zip(resumed_log, straight_log)):.2e}")
    assert worst < 1e-5, (worst, SEED, after, delay)


def test_a_run_stopped_after_its_last_checkpoint_finishes_without_training_again(uninterrupted, tmp_path,
                                                                                 run_script):
    # killed after checkpoint-30 (the last step) was sealed but before the adapter was written: the Trainer,
    # resumed there, would train a 31st step; the run must finish from the checkpoint as it stands
    import shutil

    run = tmp_path / "outputs" / "tiny"
    shutil.copytree(uninterrupted / "checkpoints", run / "checkpoints")
    assert (run / "checkpoints" / "checkpoint-30" / SEAL).exists()
    result = run_script("finetune_ko.py", *ARGS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[6] training had finished at outputs/tiny/checkpoints/checkpoint-30" in result.stdout
    assert json.loads((run / "run_config.json").read_text(encoding="utf-8"))["train"]["steps"] == 30
    assert logged_losses(run) == logged_losses(uninterrupted)
    restored, straight = load_file(str(run / "adapter_model.safetensors")), load_file(str(uninterrupted / "adapter_model.safetensors"))
    assert all(torch.equal(restored[n], straight[n]) for n in straight)


def test_sigterm_saves_a_checkpoint_and_says_how_to_continue(tmp_path, run_script):
    run = tmp_path / "outputs" / "tiny"
    proc = start(tmp_path)
    wait_for(run / "checkpoints" / "checkpoint-5" / SEAL, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert "Traceback" not in out
    stopped = next(line for line in out.splitlines() if line.startswith("[6] stopped by SIGTERM"))
    step = int(stopped.split(" at step ")[1].split()[0])
    assert "Run the same command again to continue" in stopped
    assert (run / "checkpoints" / f"checkpoint-{step}" / SEAL).is_file()
    assert not (run / "adapter_model.safetensors").exists()

    result = run_script("finetune_ko.py", *ARGS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {run / 'checkpoints' / f'checkpoint-{step}'}".replace(str(tmp_path) + "/", "") in result.stdout
    assert json.loads((run / "run_config.json").read_text(encoding="utf-8"))["train"]["steps"] == 30


def test_a_chat_template_run_stopped_by_sigterm_resumes_to_the_adapter_of_one_never_stopped(tmp_path_factory,
                                                                                           run_script):
    """The same on the Qwen3 chat preset (its own template, multi-turn conversations, every linear layer adapted)."""
    args = ["--preset", "tiny_chat", *ARGS[2:]]
    straight, stopped = tmp_path_factory.mktemp("chat-straight"), tmp_path_factory.mktemp("chat-stopped")
    result = run_script("finetune_ko.py", *args, cwd=straight)
    assert result.returncode == 0, result.stderr[-3000:]
    run = stopped / "outputs" / "tiny_chat"
    proc = start(stopped, args)
    wait_for(run / "checkpoints" / "checkpoint-5" / SEAL, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and not (run / "adapter_model.safetensors").exists(), out[-3000:]
    result = run_script("finetune_ko.py", *args, cwd=stopped)
    assert result.returncode == 0 and "[6] resuming from" in result.stdout, result.stderr[-3000:]
    resumed = load_file(str(run / "adapter_model.safetensors"))
    never = load_file(str(straight / "outputs" / "tiny_chat" / "adapter_model.safetensors"))
    assert resumed.keys() == never.keys() and any("gate_proj" in name for name in never)
    assert max((resumed[n] - never[n]).abs().max().item() for n in never) < 1e-5

