"""KoBEST scoring speed at a real shape on one GPU: eval_ko.py's path (lm-eval's own KoBEST tasks fed from the
local TSVs, the project's 4-bit model with a LoRA adapter handed to lm-eval's HFLM), one task at a time.
From the repository root:

    python3 -m bench.eval_speed --model=/tmp/random-polyglot-ko-12.8b --kobest_dir=../shared/data/kobest --out=R.json

--model is a model folder (bench/random_model.py writes one of polyglot-ko-12.8b's shape: speed does not
depend on the weights' values); a freshly initialised LoRA adapter (finetune_ko.py's LORA_R and targets) is put
on it, as a run folder's would be. Records items/s for each task of --split and the total time; for the test
split (4,561 items, which ../shared/data does not hold) the total is also estimated from each task's items/s.
The JSON is written after each task, so a run that is stopped keeps what it measured. No cache: every
request is scored.
"""
import json
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

import finetune_ko as defaults  # the recipe's LoRA settings: its constants block
from kochat import cli, modeling, runs
from kochat.errors import UserError
from kochat.evaluation import harness, suites

# ---- constants: override on the command line as --name=value ------------------------------------------
MODEL = ""              # a model folder (bench/random_model.py writes one of a real shape); required
KOBEST_DIR = ""         # KoBEST's folder (BoolQ/ … WiC/, each <split>.tsv); required
OUT = ""                # the result JSON; required
SPLIT = "dev"           # the files scored (../shared/data/kobest has dev and train)
LIMIT = 0               # items a task; 0 = all
BATCH_SIZE = 0          # lm-eval's batch of requests; 0 = auto, as eval_ko.py's default
MAX_BATCH_SIZE = 64     # the largest batch auto tries
ADAPTER = True          # a freshly initialised LoRA on the 4-bit base, as a run folder loads
F1 = True               # also lm-eval's macro-F1 (imports scikit-learn and scipy); false = accuracy only, same speed
TEST_ITEMS = {"kobest_boolq": 1404, "kobest_copa": 1000, "kobest_hellaswag": 500,  # KoBEST v1.0's test split
              "kobest_sentineg": 397, "kobest_wic": 1260}                          # (skt/kobest_v1), 4,561 items


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "MODEL", "KOBEST_DIR", "OUT")
    if LIMIT < 0 or BATCH_SIZE < 0 or MAX_BATCH_SIZE < 1:
        raise UserError("--limit and --batch_size must be 0 or more, --max_batch_size 1 or more")
    local, _ = suites.resolve(["kobest"], {"kobest": KOBEST_DIR}, SPLIT)
    out = Path(OUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    results = {"device": torch.cuda.get_device_name() if cuda else "cpu", "model": MODEL, "split": SPLIT,
               "limit": LIMIT or None, "batch_size": BATCH_SIZE or "auto", "adapter": ADAPTER,
               "lm_eval": harness.lm_eval_version(), "versions": runs.versions(),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "command": " ".join(["python3 -m bench.eval_speed", *argv]), "tasks": {}}
    t0 = time.perf_counter()
    tokenizer = modeling.load_tokenizer(MODEL)
    model = modeling.load_model(MODEL, tokenizer, four_bit=True)
    if ADAPTER:
        targets = modeling.lora_targets(model.config, defaults.LORA_TARGETS)
        model = get_peft_model(model, LoraConfig(r=defaults.LORA_R, lora_alpha=defaults.LORA_ALPHA,
                                                 target_modules=targets, task_type="CAUSAL_LM"))
    model.eval()
    results["model_load_s"] = round(time.perf_counter() - t0, 1)
    save(results, out)

    total_s = total_items = 0.0
    for task in local:
        entry = {}
        try:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            config = suites.config_for(task)
            if not F1:  # the metric is computed after scoring: leaving it out changes no timing
                config["metric_list"] = [m for m in config["metric_list"] if m["metric"] != "f1"]
            scored = harness.score(model, tokenizer, [config], limit=LIMIT, batch_size=BATCH_SIZE,
                                   max_batch_size=MAX_BATCH_SIZE)
            seconds = time.perf_counter() - start
            row = scored["tasks"][task.task]
            entry = {"items": row["items"], "seconds": round(seconds, 2), "items_per_s": round(row["items"] / seconds, 2),
                     "acc": row.get("acc"), "f1": row.get("f1")}
            if cuda:
                entry["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            total_s += seconds
            total_items += row["items"]
        except Exception as e:  # one failure is recorded; the other tasks still run
            entry = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
        results["tasks"][task.task] = entry
        print(task.task, json.dumps(entry, ensure_ascii=False), flush=True)
        save(results, out)

    measured = {t: e for t, e in results["tasks"].items() if "items_per_s" in e}
    results["total"] = {"items": int(total_items), "seconds": round(total_s, 1)}
    if len(measured) == len(TEST_ITEMS):
        results["test_split_estimate_s"] = round(sum(TEST_ITEMS[t] / e["items_per_s"] for t, e in measured.items()), 1)
    save(results, out)
    print(json.dumps({k: results[k] for k in ("total", "test_split_estimate_s") if k in results}))


def save(results: dict, out: Path) -> None:
    runs.write_json(out, results)


if __name__ == "__main__":
    sys.exit(cli.run(main))
