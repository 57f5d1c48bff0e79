"""Fold a speed run's raw JSON (bench/speed.py --part train and --part gen) into bench/results/latest.json.
    python bench/summarize.py bench/results/<run>/speed-train.json bench/results/<run>/speed-gen.json
"""
import json
import sys
from pathlib import Path

SEED = "seed: batch 2, pad to longest, all layers checkpointed"
OURS = "packed 4096, all layers checkpointed"  # finetune_ko.py's defaults: PACK_TOKENS=4096, BATCH_SIZE=1


def main(train_path: str, gen_path: str) -> None:
    train, gen = json.loads(Path(train_path).read_text()), json.loads(Path(gen_path).read_text())
    latest = {
        "device": train["device"], "date": train["date"], "gen_date": gen["date"], "versions": train["versions"],
        "seed_train_real_tok_s": train["train"][SEED]["real_tok_s"],
        "train_real_tok_s": train["train"][OURS]["real_tok_s"],
        "train_peak_gib": train["train"][OURS]["peak_gib"],
        "gen_batch1_tok_s": gen["generation"]["merged bf16 fast, batch 1"]["tok_s"],
        "gen_batch16_tok_s": gen["generation"]["merged bf16 fast, batch 16"]["tok_s"],
        "model_load_s": train["model_load_s"],
        "first_step_s": train.get("first_step_s"),
        "raw": [train_path, gen_path],
    }
    out = Path(__file__).resolve().parent / "results" / "latest.json"
    out.write_text(json.dumps(latest, indent=2) + "\n")
    print(json.dumps(latest, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:3])
