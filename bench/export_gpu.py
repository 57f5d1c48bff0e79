"""export_ko.py's int8 and int4 formats at a real shape on one GPU: the 16-bit model quantized by
kochat.export.quantized (as `python3 export_ko.py --format=int4` does), loaded back as chat_ko.py and serve_ko.py
load it (answering.load_for_answering), and answered with gen()'s fast mode at batch 1 and 16 (256 new tokens each).
From the repository root:

    python3 -m bench.export_gpu --model=/tmp/random-polyglot-ko-12.8b --data=KOALPACA_1K.jsonl --out=RESULT.json

--model is a 16-bit model folder (bench/random_model.py writes one of a real shape; random weights: speed and
memory only, the answers mean nothing). --cache_8bit=true answers with the 8-bit key/value cache
(kochat/kv_cache.py). The int4 and int8 exports load onto the kernels --kernels names (answering.onto_kernels: batches,
humming's where installed, as eval_ko.py; one_row, the dp4a kernel for one row, as chat_ko.py; both, as serve_ko.py;
export, the export's own: tinygemm, torchao's int8). The JSON is rewritten after each measurement.
"""
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from bench.speed import attempt, gen_speed
from kochat import answering, cli, estimate, runs
from kochat.errors import UserError
from kochat.export import quantized
from kochat.generation import mode_line
from kochat.prompts import Template
from kochat.records import read_records

# ---- constants: override on the command line as --name=value ------------------------------------------
MODEL = ""                 # a 16-bit model folder of a real shape; required
DATA = ""                  # KoAlpaca-v1.1a rows (.jsonl), for real questions; required
OUT = ""                   # the result JSON; required
FORMATS = ["int4", "int8"]  # export formats to measure
BATCHES = "1,16"           # rows answered at once, comma-separated
WORK = "/tmp/bench-export"  # where the exported folders are written (and removed after)
CACHE_8BIT = "auto"        # gen()'s key/value cache in 8 bits: auto (where 16 bits would not fit), true, false
KERNELS = "batches"        # where the int4/int8 export's layers go as it loads (answering.onto_kernels): batches
                           # (humming's), one_row (dp4a for one row), both, or export (its own kernels)


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "MODEL", "DATA", "OUT")
    if KERNELS not in answering.KERNELS:
        raise UserError(f"--kernels={KERNELS}: one of {', '.join(answering.KERNELS)}")
    cache_8bit = cli.auto_or_bool("CACHE_8BIT", CACHE_8BIT)
    results = {"device": torch.cuda.get_device_name(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "versions": runs.versions(), "model": MODEL,
               "command": " ".join(["python3 -m bench.export_gpu", *argv])}
    model_dir = Path(MODEL)
    if not (model_dir / runs.TEMPLATE_FILE).exists():  # a bare model folder: answered in the KoAlpaca form
        runs.write_json(model_dir / runs.TEMPLATE_FILE, Template.load("koalpaca").to_dict())
    rows = list(read_records(DATA))
    questions = [r.get("instruction") or r["text"].split("### 답변:")[0] for r in rows[:16]]

    def save():
        Path(OUT).write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    for fmt in FORMATS:
        out = Path(WORK) / fmt
        shutil.rmtree(out, ignore_errors=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

        def export():
            start = time.perf_counter()
            quantized.write_quantized(model_dir, out, fmt)
            return {"seconds": round(time.perf_counter() - start, 1),
                    "gib_on_disk": round(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / estimate.GIB, 2),
                    "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / estimate.GIB, 2)}
        attempt(results, f"{fmt} export", export)
        save()
        torch.cuda.empty_cache()
        start = time.perf_counter()
        run, tokenizer, model = answering.load_for_answering(str(out), kernels=KERNELS)
        results[f"{fmt} kernel"] = mode_line(model, fast=True)
        results[f"{fmt} load seconds"] = round(time.perf_counter() - start, 1)  # with humming: the move too
        print(f"{fmt} loaded in {results[f'{fmt} load seconds']} s: {results[f'{fmt} kernel']}", flush=True)
        for batch in [int(b) for b in BATCHES.split(",")]:
            torch.cuda.empty_cache()

            def measure():
                figures = gen_speed(model, tokenizer, run.template, questions[:batch], name=f"{fmt} fast", fast=True,
                                    cache_8bit=cache_8bit)
                return {**figures, "cache_8bit": CACHE_8BIT}
            attempt(results, f"{fmt} fast, batch {batch}", measure)
            save()
        del model
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(cli.run(main))
