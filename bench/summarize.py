"""Fold a speed run's raw JSON (bench/speed.py --part train and --part gen) and the recipe run's
run_config.json (bench/recipe_gpu.sh: start to first step) into bench/results/latest.json.
    python bench/summarize.py RUN/speed-train.json RUN/speed-gen.json RUN/recipe/run_config.json
"""
import json
import sys
from pathlib import Path

from speed import DEFAULT, SEED


def main(train_path: str, gen_path: str, recipe_path: str) -> None:
    train, gen = json.loads(Path(train_path).read_text()), json.loads(Path(gen_path).read_text())
    timing = json.loads(Path(recipe_path).read_text())["timing"]
    latest = {
        "device": train["device"], "date": train["date"], "gen_date": gen["date"], "versions": train["versions"],
        "seed_train_real_tok_s": train["train"][SEED]["real_tok_s"],
        "train_real_tok_s": train["train"][DEFAULT]["real_tok_s"],
        "train_peak_gib": train["train"][DEFAULT]["peak_gib"],
        "gen_batch1_tok_s": gen["generation"]["merged bf16 fast, batch 1"]["tok_s"],
        "gen_batch16_tok_s": gen["generation"]["merged bf16 fast, batch 16"]["tok_s"],
        "model_load_s": train["model_load_s"],
        "first_step_s": timing["first_step_s"],
        "recipe_model_load_s": timing["model_load_s"],
        "raw": [train_path, gen_path, recipe_path],
    }
    out = Path(__file__).resolve().parent / "results" / "latest.json"
    out.write_text(json.dumps(latest, indent=2) + "\n")
    print(json.dumps(latest, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:4])
