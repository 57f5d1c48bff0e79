"""Fold a speed run's raw JSON (bench.speed --part=train and --part=gen) and the recipe run's log
(bench/recipe_gpu.sh: model load and start to first step) into bench/results/latest.json.
    python3 -m bench.summarize --train=RUN/speed-train.json --gen=RUN/speed-gen.json --recipe_log=RUN/recipe/recipe.log
--cold_log: the output of a finetune_ko.py run started with an empty torch.compile cache (a fresh machine);
its start-to-first-step becomes first_step_s, and the recipe's (cache filled by earlier runs)
first_step_s_warm_cache. Without it, the recipe log's figure is first_step_s.
"""
import json
import re
import sys
from pathlib import Path

from bench.speed import NAMES
from kochat import cli

# ---- constants: override on the command line as --name=value ------------------------------------------
TRAIN = ""          # bench.speed's JSON of --part=train; required
GEN = ""            # bench.speed's JSON of --part=gen; required
RECIPE_LOG = ""     # bench/recipe_gpu.sh's recipe.log; required
COLD_LOG = ""       # a finetune_ko.py log from a fresh machine (empty compile cache); "" = none


def first_step_s(log: str) -> float:
    return float(re.search(r"first training step done ([\d.]+) s after start", log).group(1))


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "TRAIN", "GEN", "RECIPE_LOG")
    latest = summarize(TRAIN, GEN, RECIPE_LOG, COLD_LOG or None)
    out = Path(__file__).resolve().parent / "results" / "latest.json"
    out.write_text(json.dumps(latest, indent=2) + "\n")
    print(json.dumps(latest, indent=2))


def summarize(train_path: str, gen_path: str, recipe_path: str, cold_path: str | None = None) -> dict:
    train, gen = json.loads(Path(train_path).read_text()), json.loads(Path(gen_path).read_text())
    log = Path(recipe_path).read_text(encoding="utf-8")
    recipe_load_s = float(re.search(r"\[4\] loaded .* in 4-bit in ([\d.]+) s", log).group(1))
    latest = {
        "device": train["device"], "date": train["date"], "gen_date": gen["date"], "versions": train["versions"],
        "seed_train_real_tok_s": train["train"][NAMES["seed"]]["real_tok_s"],
        "train_real_tok_s": train["train"][NAMES["default"]]["real_tok_s"],
        "train_peak_gib": train["train"][NAMES["default"]]["peak_gib"],
        "gen_batch1_tok_s": gen["generation"]["merged bf16 fast, batch 1"]["tok_s"],
        "gen_batch16_tok_s": gen["generation"]["merged bf16 fast, batch 16"]["tok_s"],
        "model_load_s": train["model_load_s"],
        "first_step_s": first_step_s(Path(cold_path).read_text(encoding="utf-8") if cold_path else log),
        "recipe_model_load_s": recipe_load_s,
        "raw": [train_path, gen_path, recipe_path] + ([cold_path] if cold_path else []),
    }
    if cold_path:
        latest["first_step_s_warm_cache"] = first_step_s(log)
    return latest


if __name__ == "__main__":
    sys.exit(cli.run(main))
