"""The real entry point, `python3 finetune_ko.py --preset tiny`, run as a user runs it (offline, CPU)."""
import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from kochat import PROJECT_ROOT


@pytest.fixture
def run_recipe(run_script):
    return lambda *args, cwd: run_script("finetune_ko.py", *args, cwd=cwd)


def test_the_run_folder_describes_itself(tiny_run):
    run, _ = tiny_run
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", "template.json", "run_config.json", "loss.png", "demo.jsonl"):
        assert (run / name).is_file(), name
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "logs"))  # TensorBoard: the eval loss after training too, in the same folder
    events.Reload()
    assert {"train/loss", "eval/loss"} <= set(events.Tags()["scalars"])
    assert not (run / "checkpoints" / "runs").exists()  # not a second run beside it
    weights = list(run.rglob("*.safetensors"))  # the adapter and its checkpoints': readable as the other files
    assert len(weights) > 1 and {w.stat().st_mode for w in weights} == {(run / "adapter_config.json").stat().st_mode}
    config = json.loads((run / "run_config.json").read_text(encoding="utf-8"))
    assert config["preset"] == "tiny" and config["constants"]["MODEL_ID"] == "tiny-gpt-neox"
    assert config["end_of_text"] == {"token": "<|endoftext|>", "id": 2}
    assert config["data_report"] == {"read": 212, "kept": 212, "skipped": {}, "answers": 212, "split per answer": 0,
                                     "eval prompts also trained on": 0}
    assert json.loads((run / "generation_config.json").read_text())["eos_token_id"] == 2
    assert json.loads((run / "tokenizer_config.json").read_text())["eos_token"] == "<|endoftext|>"
    assert json.loads((run / "template.json").read_text(encoding="utf-8"))["response_split"] == "### 답변:"
    from kochat import modeling

    # the BitsAndBytesConfig step 4 writes out is the loader's: chat and serving load the base as it was trained
    assert config["quantization"] == modeling.nf4_config(modeling.compute_dtype()).to_dict()


def test_the_run_folder_has_a_real_model_card(tiny_run):
    run, result = tiny_run
    card = (run / "README.md").read_text(encoding="utf-8")
    assert "More Information Needed" not in card and "base_model:" not in card  # no cache path posing as a hub id
    assert card.startswith("---\nlibrary_name: peft") and "# tiny: a LoRA adapter for tiny-gpt-neox" in card
    assert "60 optimizer steps on" in card and "212 of 212 rows kept" in card and "| LORA_R | `8` |" in card
    assert "written for kochat" in card and "4-bit NF4 with double quantization" in card
    assert "python3 chat_ko.py --adapter outputs/tiny" in card and "PeftModel.from_pretrained" in card
    assert result.stdout.strip().splitlines()[-1] == "done. Talk to it: python3 chat_ko.py --adapter outputs/tiny"
    assert "Warning" not in result.stderr  # nothing for a user to act on is printed (e.g. paged Adam on a CPU)


def test_the_adapter_is_real_and_was_trained(tiny_run):
    run, _ = tiny_run
    assert (run / "adapter_model.safetensors").stat().st_size > 10_000
    weights = load_file(str(run / "adapter_model.safetensors"))
    b = [w for k, w in weights.items() if "lora_B" in k]
    a = [w for k, w in weights.items() if "lora_A" in k]
    assert len(a) == len(b) == 2  # query_key_value in both layers
    assert all(w.abs().sum() > 0 for w in b)  # B starts at zero: non-zero means training reached it


def test_loss_went_down_and_eval_loss_was_logged(tiny_run):
    run, _ = tiny_run
    history = json.loads((run / "run_config.json").read_text(encoding="utf-8"))["train"]["log_history"]
    train = [e["loss"] for e in history if "loss" in e]
    evals = [e["eval_loss"] for e in history if "eval_loss" in e]
    assert len(train) >= 10 and len(evals) >= 3
    assert sum(train[-3:]) / 3 < sum(train[:3]) / 3 - 0.2
    assert evals[-1] < evals[0]


def test_the_demo_answered_every_question(tiny_run):
    run, result = tiny_run
    demo = [json.loads(line) for line in (run / "demo.jsonl").read_text(encoding="utf-8").splitlines()]
    questions = [l for l in (PROJECT_ROOT / "prompts" / "demo_questions.txt").read_text(encoding="utf-8").splitlines()
                 if l.strip() and not l.startswith("#")]
    assert len(demo) == len(questions)
    for answer in demo:
        assert answer["new_tokens"] >= 1 and answer["seconds"] > 0 and answer["finish_reason"] in ("stop", "length")
        assert f"A: {answer['text']}" in result.stdout
    assert "⟦" in result.stdout and "<|endoftext|>⟧" in result.stdout  # the mask evidence was printed


def test_plain_peft_loads_the_adapter_and_answers_like_gen(tiny_run):
    from peft import PeftModel
    from transformers import AutoTokenizer

    from kochat import modeling, tiny
    from kochat.generation import gen
    from kochat.prompts import Template
    from kochat.tokenization import encode_prompt

    run, _ = tiny_run
    tokenizer = AutoTokenizer.from_pretrained(run)  # the run folder's own tokenizer
    assert tokenizer.eos_token_id == 2
    base = modeling.load_model(tiny.MODEL_ID, tokenizer, four_bit=True)
    plain = PeftModel.from_pretrained(base, str(run)).eval()
    template = Template.load(str(run / "template.json"))
    ours = modeling.load_model(tiny.MODEL_ID, tokenizer, four_bit=True, adapter=str(run)).eval()
    for question in ["한국의 수도는 어디인가요?", "하늘은 왜 파란가요?"]:
        ids = torch.tensor([encode_prompt(tokenizer, template.prompt(question))])
        out = plain.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=24,
                             do_sample=False, eos_token_id=2, pad_token_id=0)[0, ids.shape[1]:].tolist()
        expected = tokenizer.decode(out[: out.index(2)] if 2 in out else out, skip_special_tokens=True).strip()
        assert gen(ours, tokenizer, template, question, max_new_tokens=24)[0].text == expected
        assert expected  # a trained adapter on a pretrained tiny base says something


def test_a_finished_run_is_kept_and_the_error_is_one_line(tiny_run, run_recipe):
    run, _ = tiny_run
    before = hashlib.sha256((run / "adapter_model.safetensors").read_bytes()).hexdigest()
    result = run_recipe("--preset", "tiny", "--overwrite=false", cwd=run.parent.parent)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: outputs/tiny already holds a finished run")
    assert "Traceback" not in result.stderr
    assert hashlib.sha256((run / "adapter_model.safetensors").read_bytes()).hexdigest() == before


def test_a_preset_replaces_only_its_own_run(tiny_run, run_recipe, tmp_path):
    """--preset tiny overwrites outputs/tiny; a run named on the command line (another run's folder) is kept."""
    import shutil

    run, _ = tiny_run
    other = tmp_path / "outputs" / "hr-faq"
    shutil.copytree(run, other)
    before = hashlib.sha256((other / "adapter_model.safetensors").read_bytes()).hexdigest()
    result = run_recipe("--preset", "tiny", "--run_name=hr-faq", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: outputs/hr-faq already holds a finished run")
    assert hashlib.sha256((other / "adapter_model.safetensors").read_bytes()).hexdigest() == before


def test_the_first_command_runs_again_as_written(tiny_run, run_recipe, tmp_path):
    # README's first command, a second time: the tiny preset replaces its own earlier run
    import shutil

    run, _ = tiny_run
    again = tmp_path / "outputs" / "tiny"
    shutil.copytree(run, again)
    (again / "run_config.json").unlink()  # so a stale one cannot pass for the new one
    result = run_recipe("--preset", "tiny", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming" not in result.stdout and "training had finished" not in result.stdout  # trained afresh
    assert json.loads((again / "run_config.json").read_text(encoding="utf-8"))["train"]["steps"] == 60
    first, second = load_file(str(run / "adapter_model.safetensors")), load_file(str(again / "adapter_model.safetensors"))
    assert max((first[n] - second[n]).abs().max().item() for n in first) < 1e-5  # same seed: the same adapter


def test_dry_run_prints_the_koalpaca_figure(tmp_path, run_recipe):
    result = run_recipe("--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trainable params: 6,553,600 || all params: 6,608,701,440 || trainable%: 0.0992" in result.stdout
    assert "fits a 24 GB card" in result.stdout
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("model_id, first_lines", [
    ("Qwen/Qwen3-8B", ["model: Qwen/Qwen3-8B  (qwen3, 36 layers, hidden 4096, vocab 151936)",
                       "trainable params: 21,823,488 || all params: 4,739,675,136"]),
    ("google/gemma-3-12b-pt", ["model: google/gemma-3-12b-pt  (gemma3, 48 layers, hidden 3840, vocab 262208)",
                               "trainable params: 32,735,232 || all params: 6,635,330,160"])])
def test_dry_run_of_another_known_model_needs_no_download(tmp_path, run_recipe, model_id, first_lines):
    """The figures (counted in tests/test_known_models.py) through the script itself, for a model whose shape
    kochat knows: its own LoRA targets, batch and checkpointed share chosen, and its licence."""
    result = run_recipe("--dry-run", f"--model_id={model_id}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    start = lines.index(first_lines[0])
    assert lines[start + 1].startswith(first_lines[1])
    assert "fits a 24 GB card" in result.stdout and "commercial use allowed" in result.stdout
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("args, message", [
    (["--max_stpes=5"], "error: unknown option --max_stpes (did you mean --max_steps?)"),
    (["--preset", "tiny", "--data=missing.jsonl"], "error: data file missing.jsonl not found"),
    (["--preset", "tiny", "--model_id=./no-model"], "error: model folder ./no-model not found"),
    (["--preset", "tiny", "--demo_questions=nope.txt"], "error: cannot read the questions file nope.txt"),
    (["--preset", "tiny", "--lora_targets=q_proj,v_proj"], "error: --lora_targets: gpt_neox has no linear layer "
                                                           "named 'q_proj', 'v_proj'; its linear layers are named "
                                                           "query_key_value, dense"),
    (["--preset", "tiny", "--lora_r=-8"], "error: --lora_r must be at least 1, not -8"),
    (["--preset", "tiny", "--eval_fraction=1"], "error: --eval_fraction must be a share from 0"),
    (["--preset", "tiny", "--lr_scheduler=cosinus"], "error: --lr_scheduler must be one of linear, cosine"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, run_recipe, args, message):
    result = run_recipe(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_the_real_model_on_a_cpu_points_to_the_tiny_preset(tmp_path, run_recipe):
    from transformers import AutoConfig

    from kochat.known_models import KNOWN_MODELS

    spec = dict(KNOWN_MODELS["EleutherAI/polyglot-ko-12.8b"].config)
    AutoConfig.for_model(spec.pop("model_type"), **spec).save_pretrained(tmp_path / "polyglot-ko-12.8b")
    result = run_recipe("--model_id=./polyglot-ko-12.8b", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: the model has 12.9 B parameters and this machine has no CUDA GPU; run `--preset tiny` for the "
        "offline CPU check of every step, or `--dry-run` to see what it needs on a GPU")
    assert not (tmp_path / "outputs").exists()
