"""bench/ as modules of the project: the same --name=value options as the entry scripts, and the speed
summary rebuilt from the committed raw results (the GPU parts themselves run on a GPU only)."""
import json
import subprocess
import sys

import pytest

from kochat import PROJECT_ROOT
from kochat.errors import UserError

SCRIPTS = ["speed", "profile_steps", "random_model", "serve_load", "soak", "summarize", "rag", "grounded_gpu", "eval_speed",
           "export_gpu", "inspect_run", "gguf_agreement", "batch_kernel_error",
           "humming_products", "dp4a_rows"]


def run_module(name, *args):
    return subprocess.run([sys.executable, "-m", f"bench.{name}", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_runs_as_a_module_with_the_projects_options(name):
    result = run_module(name, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Constants (edit them at the top of the script, or override: --name=value)" in result.stdout
    assert "--preset" not in result.stdout
    source = (PROJECT_ROOT / "bench" / f"{name}.py").read_text(encoding="utf-8")
    assert "sys.path.insert" not in source and "argparse" not in source


def test_a_missing_required_option_is_one_line():
    result = run_module("speed", "--part=train")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: --model=… --data=… --out=… are required (see --help)"


def test_humming_configurations_are_read_as_named_changes_or_refused_in_one_line(tmp_path):
    from bench.humming_products import read_configs
    from kochat.errors import UserError

    committed = read_configs(str(PROJECT_ROOT / "bench" / "humming_configs.json"))
    assert committed["3 stages"] == {"num_stages": 3} and all(isinstance(c, dict) for c in committed.values())
    listed = tmp_path / "listed.json"
    listed.write_text('[{"num_stages": 3}]')
    with pytest.raises(UserError, match="a JSON object of named objects of humming's TuningConfig fields"):
        read_configs(str(listed))
    with pytest.raises(UserError, match="not a readable JSON file"):
        read_configs(str(tmp_path / "missing.json"))


def test_the_speed_defaults_are_the_recipes():
    import finetune_ko
    from bench import speed

    _, pack, batch, share, compiled = speed.TRAIN_SETTINGS[2]
    assert speed.TRAIN_SETTINGS[2][0] == speed.NAMES["default"]
    assert (pack, batch, share, compiled) == (finetune_ko.PACK_TOKENS, finetune_ko.BATCH_SIZE,
                                              finetune_ko.GRADIENT_CHECKPOINTING, finetune_ko.COMPILE)


def absolute(entry: str) -> str:
    """A raw entry of latest.json (PATH, or NAME=PATH for another base model) with its path from the project root."""
    name, _, path = entry.rpartition("=")
    return f"{name}={PROJECT_ROOT / path}" if name else str(PROJECT_ROOT / path)


def test_latest_json_is_rebuilt_from_its_raw_files():
    from bench import summarize

    latest = json.loads((PROJECT_ROOT / "bench" / "results" / "latest.json").read_text())
    rebuilt = summarize.summarize(*map(absolute, latest["raw"]))
    assert {k: v for k, v in rebuilt.items() if k != "raw"} == {k: v for k, v in latest.items() if k != "raw"}


def test_another_models_results_land_under_its_own_keys(tmp_path):
    """NAME=PATH: a finetune_ko.py log and bench.quant_kernels' merged bf16 of another base model give NAME_ keys and
    leave polyglot-ko-12.8b's alone; a log without a NAME, or one without the figures, is one line."""
    from bench import summarize

    latest = json.loads((PROJECT_ROOT / "bench" / "results" / "latest.json").read_text())
    twelve = [absolute(path) for path in latest["raw"] if "=" not in path]
    log = tmp_path / "train.log"
    log.write_text("[6] trained 20 steps, final train loss 11.7663, 9,411 real tokens/s after the first step, peak GPU "
                   "memory 19.62 GiB\n", encoding="utf-8")
    bf16 = tmp_path / "bf16.json"
    bf16.write_text(json.dumps({"bf16 fast, batch 1": {"tok_s": 180.0, "peak_gpu_gib": 15.4},
                                "bf16 fast, batch 16": {"tok_s": 2556.2, "peak_gpu_gib": 16.3}}))
    rebuilt = summarize.summarize(*twelve, f"other={log}", f"other={bf16}")
    assert {k: v for k, v in rebuilt.items() if k.startswith("other_")} == {
        "other_train_real_tok_s": 9411.0, "other_train_peak_gib": 19.62, "other_gen_batch1_tok_s": 180.0,
        "other_gen_batch16_tok_s": 2556.2, "other_gen_peak_gib": 16.3}
    assert rebuilt["train_real_tok_s"] == latest["train_real_tok_s"]
    assert rebuilt["gen_batch1_tok_s"] == latest["gen_batch1_tok_s"]
    assert summarize.figures(json.loads(bf16.read_text())) == {}  # unnamed: the 12.8b's bench.speed figures stay
    row16 = tmp_path / "row16.json"  # a 16-bit model loaded as chat_ko.py loads it: the merged figures too
    row16.write_text(json.dumps({"saved quantize": {"answering": "answering with bfloat16 weights, one row at a time "
                                                                 "through kochat's bf16 kernel on cuda, fast mode on"},
                                 "saved fast, batch 1": {"tok_s": 192.2, "peak_gpu_gib": 15.4}}))
    newer = summarize.summarize(*twelve, f"other={bf16}", f"other={row16}")
    assert (newer["other_gen_batch1_tok_s"], newer["other_gen_batch16_tok_s"]) == (192.2, 2556.2)
    assert summarize.figures(json.loads(row16.read_text())) == {}  # unnamed: not the 12.8b's merged figures either
    for entry in (str(log), f"other={tmp_path / 'empty.log'}"):
        (tmp_path / "empty.log").write_text("[6] trained 0 steps\n", encoding="utf-8")
        with pytest.raises(UserError, match="is not a result of bench.export_gpu"):
            summarize.summarize(*twelve, entry)

