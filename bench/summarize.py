"""Fold a speed run's raw JSON (bench.speed --part=train and --part=gen) and the recipe run's log
(bench/recipe_gpu.sh: model load and start to first step) into bench/results/latest.json.
    python3 -m bench.summarize --train=RUN/speed-train.json --gen=RUN/speed-gen.json --recipe_log=RUN/recipe/recipe.log
--cold_log: the output of a finetune_ko.py run started with an empty torch.compile cache (a fresh machine);
its start-to-first-step becomes first_step_s, and the recipe's (cache filled by earlier runs)
first_step_s_warm_cache. Without it, the recipe log's figure is first_step_s.
--more: other raw results, each recognised by what it holds: bench.export_gpu's JSON (gen_int4_*, gen_int8_*;
gen_int4_cache8_* where it answered with --cache_8bit=true; a later file's formats replace an earlier one's),
bench.quant_kernels' saved (an int8 or int4 export as chat_ko.py or serve_ko.py loads it, on humming's kernel or one
row on the dp4a kernel: gen_int8_*, gen_int4_*; a 16-bit model so loaded, one row on kochat's bf16 kernel: gen_batch*,
gen_peak_gib; batch 1 and 16 may come from different files; a batch size
measured several times in one file gives the mean of its runs, and the largest peak),
bench.quant_kernels' tinygemm with --cache_8bit=true (the int4 export's kernel: gen_int4_cache8_*; batch 1 and 16
may then come from different files), its mslk4plain and mslk4fp8 (serve_ko.py's batch kernels for int4 on Hopper:
gen_int4_mslk_*, gen_int4_mslk_fp8_*), bench.serve_load's at int4 (serve_*_clients_tok_s),
bench.eval_speed's (kobest_test_estimate_s) and bench.gguf_cpu's (gguf_q4_k_m_gib, gguf_q4_k_m_cpu_tok_s: llama.cpp on
a CPU at the 1.3b shape).
Another base model's results are given as NAME=PATH (e.g. qwen3_8b=RUN/int4.json) and land under keys that start
with NAME_, beside polyglot-ko-12.8b's: those files above, bench.quant_kernels' bf16 (the merged 16-bit model:
NAME_gen_batch1_tok_s, NAME_gen_batch16_tok_s, NAME_gen_peak_gib) and finetune_ko.py's log
(NAME_train_real_tok_s, NAME_train_peak_gib).
"""
import json
import re
import sys
from pathlib import Path

from bench.speed import NAMES
from kochat import cli
from kochat.errors import UserError

# ---- constants: override on the command line as --name=value ------------------------------------------
TRAIN = ""          # bench.speed's JSON of --part=train; required
GEN = ""            # bench.speed's JSON of --part=gen; required
RECIPE_LOG = ""     # bench/recipe_gpu.sh's recipe.log; required
COLD_LOG = ""       # a finetune_ko.py log from a fresh machine (empty compile cache); "" = none
MORE = []           # export_gpu, serve_load, eval_speed and gguf_cpu JSON files, in the order they were measured;
                    # another model's as NAME=PATH


def first_step_s(log: str) -> float:
    return float(re.search(r"first training step done ([\d.]+) s after start", log).group(1))


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "TRAIN", "GEN", "RECIPE_LOG")
    latest = summarize(TRAIN, GEN, RECIPE_LOG, COLD_LOG or None, *MORE)
    out = Path(__file__).resolve().parent / "results" / "latest.json"
    out.write_text(json.dumps(latest, indent=2) + "\n")
    print(json.dumps(latest, indent=2))


def defaults_entry(train: dict) -> dict:
    """The measurement of finetune_ko.py's defaults, whatever the checkpointed share was called when it ran."""
    return next(v for k, v in train["train"].items() if k.endswith("(finetune_ko.py's defaults)"))


def summarize(train_path: str, gen_path: str, recipe_path: str, cold_path: str | None = None, *more: str) -> dict:
    train, gen = json.loads(Path(train_path).read_text()), json.loads(Path(gen_path).read_text())
    log = Path(recipe_path).read_text(encoding="utf-8")
    recipe_load_s = float(re.search(r"\[4\] loaded .* in 4-bit in ([\d.]+) s", log).group(1))
    latest = {
        "device": train["device"], "date": train["date"], "gen_date": gen["date"], "versions": train["versions"],
        "seed_train_real_tok_s": train["train"][NAMES["seed"]]["real_tok_s"],
        "train_real_tok_s": defaults_entry(train)["real_tok_s"],
        "train_peak_gib": defaults_entry(train)["peak_gib"],
        "gen_batch1_tok_s": gen["generation"]["merged bf16 fast, batch 1"]["tok_s"],
        "gen_batch16_tok_s": gen["generation"]["merged bf16 fast, batch 16"]["tok_s"],
        "model_load_s": train["model_load_s"],
        "first_step_s": first_step_s(Path(cold_path).read_text(encoding="utf-8") if cold_path else log),
        "recipe_model_load_s": recipe_load_s,
        "raw": [train_path, gen_path, recipe_path] + ([cold_path] if cold_path else []),
    }
    if cold_path:
        latest["first_step_s_warm_cache"] = first_step_s(log)
    for entry in more:
        name, _, path = entry.rpartition("=")  # NAME=PATH: another base model's figures, under NAME_
        text = Path(path).read_text(encoding="utf-8")
        if path.endswith(".log"):  # finetune_ko.py's: only another model's (polyglot-ko's come from bench.speed)
            found = training_figures(text) if name else {}
        else:
            found = figures(json.loads(text), bf16=bool(name))
        if not found:
            raise UserError(f"{path} is not a result of bench.export_gpu, bench.quant_kernels, bench.serve_load, "
                            "bench.eval_speed or bench.gguf_cpu (nor, given as NAME=PATH, a finetune_ko.py log)")
        latest.update({f"{name}_{key}" if name else key: value for key, value in found.items()})
        latest["raw"].append(entry)
    return latest


def training_figures(log: str) -> dict:
    """finetune_ko.py's own figures from its log: real tokens/s after the first step and the peak GPU memory."""
    done = re.search(r"trained \d+ steps, .*?, ([\d,.]+) real tokens/s after the first step, "
                     r"peak GPU memory ([\d.]+) GiB", log)
    if not done:
        return {}
    return {"train_real_tok_s": float(done.group(1).replace(",", "")), "train_peak_gib": float(done.group(2))}


def figures(raw: dict, bf16: bool = False) -> dict:
    """The latest.json keys a bench.export_gpu, bench.quant_kernels, bench.serve_load, bench.eval_speed or
    bench.gguf_cpu result gives; with bf16, also bench.quant_kernels' merged 16-bit model's (gen_batch*: for another
    base model, whose bench.speed run latest.json does not hold)."""
    if "levels" in raw:  # serve_load, through the HTTP server
        return {f"serve_{level['clients']}_clients_tok_s": level["tokens_per_s"] for level in raw["levels"]}
    if "tasks" in raw:  # eval_speed
        return {"kobest_test_estimate_s": raw["test_split_estimate_s"]}
    if "export_all_s" in raw:  # gguf_cpu: llama.cpp on a CPU at the 1.3b shape
        q4 = raw["formats"]["q4_k_m"]
        return {"gguf_q4_k_m_gib": q4["size_gib"], "gguf_q4_k_m_cpu_tok_s": q4["decode_tok_s"]}
    out = {}
    # export_gpu's formats; quant_kernels' tinygemm (the int4 export's kernel, quantized in memory) only for the
    # 8-bit cache, where gen_int4_cache8_* would otherwise have no source: gen_int4_* stay the export's; its mslk
    # kernels, which serve_ko.py moves an int4 export onto (kochat/batch_kernels.py); its saved (an export loaded as
    # chat_ko.py loads it), by the format its line of how it answered names
    answering = raw.get("saved quantize", {}).get("answering", "")  # as chat_ko.py and serve_ko.py answer: on
    fast = "through humming's kernel" in answering or "through the dp4a kernel" in answering  # humming's or dp4a
    saved = [("saved", "int8" if "Int8" in answering else "int4")] if fast else []
    sixteen = bf16 and "through kochat's bf16 kernel" in answering  # a 16-bit model as chat_ko.py loads it
    if sixteen:  # another model's merged figures (the 12.8b's stay bench.speed's), before cuBLAS's in the same file
        saved = [("saved", "")]
    merged = [("bf16", "")] if bf16 and not sixteen else []
    for name, fmt in [("int4", "int4"), ("int8", "int8"), ("tinygemm", "int4"), ("mslk4plain", "int4_mslk"),
                      ("mslk4fp8", "int4_mslk_fp8")] + saved + merged:
        for batch in (1, 16):
            label = f"{name} fast, batch {batch}"  # measured more than once (--batches=1,1): ", run N" after it
            entries = [e for k, e in raw.items() if (k == label or k.startswith(label + ", run ")) and "tok_s" in e]
            cache8 = any(e.get("cache_8bit") == "true" for e in entries)  # forced on; auto's choice is not recorded
            if not entries or (name == "tinygemm" and not cache8):
                continue
            key = "gen" if not fmt else f"gen_{fmt}_cache8" if cache8 else f"gen_{fmt}"
            out[f"{key}_batch{batch}_tok_s"] = round(sum(e["tok_s"] for e in entries) / len(entries), 1)  # the mean
            if batch == 16:
                out[f"{key}_peak_gib"] = max(e["peak_gpu_gib"] for e in entries)
    return out


if __name__ == "__main__":
    sys.exit(cli.run(main))
