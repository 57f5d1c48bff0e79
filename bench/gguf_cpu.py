"""GGUF on the CPU: file size and llama.cpp's answering speed at batch 1, at a real shape with random weights,
through kochat's own export (kochat/export/gguf.py: f16 written by kochat, q8_0 and q4_k_m by llama.cpp's quantizer).
From the repository root:

    python3 -m bench.gguf_cpu --tokenizer=../shared/data/polyglot-ko-tokenizer --out=RESULT.json

Speed does not depend on the weights' values, so a random model of polyglot-ko-1.3b's shape (bench/random_model.py)
stands in for the real one. Each file answers one KoAlpaca-form prompt with NEW_TOKENS greedy tokens, the end of
text ignored so that every run decodes the same number; the first token (reading the prompt) is timed apart from the
others (decoding), as a user feels them.
"""
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import bench.random_model
from kochat import cli, modeling
from kochat.export import gguf, llamacpp
from kochat.prompts import load_template

# ---- constants: override on the command line as --name=value ------------------------------------------
MODEL = "EleutherAI/polyglot-ko-1.3b"  # a name in kochat.known_models, or a folder with config.json
TOKENIZER = ""                         # a folder with polyglot-ko's tokenizer.json; required
WORK = "/tmp/gguf-cpu-bench"           # where the random model and its GGUF files are written (~8 GB at 1.3b)
OUT = ""                               # the result JSON; required
QUANTS = "f16,q8_0,q4_k_m"             # the GGUF files to write and time
NEW_TOKENS = 128                       # tokens answered per run, at batch 1
RUNS = 2                               # timed runs per file (the best is kept), after one untimed warm-up
THREADS = 0                            # llama.cpp's threads; 0 = every core
QUESTION = "한국의 전통 음식인 김치는 어떻게 만드나요?"  # the prompt, in the KoAlpaca form


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory_kib / 2**20, 1),
            "system": platform.platform()}


def answer_speed(gguf_file: Path, prompt: str) -> dict:
    """Load time, then the best of RUNS runs: time to the first token and decoding tokens/s after it."""
    start = time.perf_counter()
    model = llamacpp.open_llama(gguf_file, "measuring a GGUF file", n_ctx=512, n_threads=THREADS or os.cpu_count(),
                                seed=0, verbose=False)
    load_s = time.perf_counter() - start
    prompt_ids = model.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    runs = []
    for _ in range(RUNS + 1):
        model.reset()
        times = []
        start = time.perf_counter()
        for token in model.generate(prompt_ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            times.append(time.perf_counter())
            if len(times) == NEW_TOKENS:
                break
        runs.append({"first_token_s": times[0] - start, "decode_tok_s": (len(times) - 1) / (times[-1] - times[0])})
    model.close()
    best = max(runs[1:], key=lambda r: r["decode_tok_s"])
    return {"file": gguf_file.name, "size_bytes": gguf_file.stat().st_size,
            "size_gib": round(gguf_file.stat().st_size / 2**30, 3), "load_s": round(load_s, 2),
            "prompt_tokens": len(prompt_ids), "new_tokens": NEW_TOKENS,
            "first_token_s": round(best["first_token_s"], 3), "decode_tok_s": round(best["decode_tok_s"], 2),
            "runs": [{k: round(v, 3) for k, v in r.items()} for r in runs[1:]]}


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "TOKENIZER", "OUT")
    work = Path(WORK)
    model_dir, quants = work / "random-model", QUANTS.split(",")
    if not (model_dir / "config.json").is_file():
        bench.random_model.main([f"--model={MODEL}", f"--tokenizer={TOKENIZER}", f"--out={model_dir}"])
    tokenizer = modeling.load_tokenizer(str(model_dir))
    template = load_template("koalpaca", tokenizer)
    start = time.perf_counter()
    files = gguf.write_gguf(model_dir, work / "gguf", quants, template)
    export_s = time.perf_counter() - start
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
               "versions": {"python": platform.python_version(),
                            **{p: version(p) for p in ("llama-cpp-python", "gguf", "torch", "transformers")}},
               "model": MODEL, "parameters": modeling.parameter_count(modeling.load_config(str(model_dir))),
               "weights": "random (speed does not depend on their values)",
               "command": " ".join(["python3 -m bench.gguf_cpu", *argv]), "export_all_s": round(export_s, 1),
               "threads": THREADS or os.cpu_count(), "formats": {}}
    for quant, file in zip([q for q in gguf.QUANTS if q in quants], files):  # write_gguf's order
        results["formats"][quant] = answer_speed(file, template.prompt(QUESTION))
        print(quant, json.dumps(results["formats"][quant]), flush=True)
    Path(OUT).parent.mkdir(parents=True, exist_ok=True)
    Path(OUT).write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
