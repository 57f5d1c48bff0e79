"""bench/ as modules of the project: the same --name=value options as the entry scripts, and the speed
summary rebuilt from the committed raw results (the GPU parts themselves run on a GPU only)."""
import json
import subprocess
import sys

import pytest

from kochat import PROJECT_ROOT

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


def test_latest_json_is_rebuilt_from_its_raw_files():
    from bench import summarize

    latest = json.loads((PROJECT_ROOT / "bench" / "results" / "latest.json").read_text())
    rebuilt = summarize.summarize(*(str(PROJECT_ROOT / path) for path in latest["raw"]))
    assert {k: v for k, v in rebuilt.items() if k != "raw"} == {k: v for k, v in latest.items() if k != "raw"}
