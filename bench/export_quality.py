"""Quality of each export format against the merged model, on the CPU: the mean loss on held-out KoAlpaca
rows and greedy agreement, through kochat's own export (the functions export_ko.py calls, in its order). From the
repository root, with a trained run (`python3 finetune_ko.py --preset tiny` writes outputs/tiny):

    python3 -m bench.export_quality --run=outputs/tiny --out=RESULT.json

Held out: ROWS rows of KoAlpaca-v1.1a (../shared/data), the first after a shuffle with SEED of those that fit the
model's context. The tiny run never trained on KoAlpaca (it trains on data/ko_tiny_qa.jsonl), so every such row is
held out; for a run trained on KoAlpaca, pass rows it did not see with --data. Rows are read, rendered and labelled
by the recipe itself (kochat.recipe.prepare), so the loss is over exactly the tokens training learns: each answer and
its end of text. Every format is fed the same token ids.

Agreement: the first QUESTIONS of those rows' prompts (the recipe's rendering) answered greedily, NEW_TOKENS at most,
by gen() for transformers folders and by llama.cpp (kochat.export.llamacpp.llama_greedy) for GGUF files, each answer
compared with the merged model's as the token ids of its text: the share identical, and the mean share of tokens
equal up to the first difference.

int8_one_row and int4_one_row: the same exports loaded as chat_ko.py loads them (answering.load_for_answering,
kernels="one_row") and each question answered alone, so that on a GPU every step's row goes through the dp4a kernel
(kochat/dp4a_kernel.py: the row rounded to int8; the loss, of whole rows at once, multiplies the same levels written
out in bf16); on a CPU nothing moves. Each transformers format records the line
saying how it answered. The reference is the merged model as chat_ko.py answers with it: in its base's own dtype
(16-bit for polyglot-ko, fp32 for the tiny model), computed in fp32 on a CPU. int4 is made and run by a CUDA
kernel: without an NVIDIA GPU its entry says so instead of figures. A model with random weights
(bench/random_model.py) gives a loss that means nothing: measure a trained run.
"""
import json
import random
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
import torch.nn.functional as F

import finetune_ko
from bench.gguf_cpu import machine
from kochat import answering, cli, modeling, recipe, runs
from kochat.errors import UserError
from kochat.export import gguf, llamacpp, quantized
from kochat.generation import gen, mode_line
from kochat.kv_cache import static_cache
from kochat.tokenization import IGNORE, encode_prompt

# ---- constants: override on the command line as --name=value ------------------------------------------
RUN = "outputs/tiny"                   # a trained run folder from finetune_ko.py
DATA = "../shared/data/koalpaca/KoAlpaca_v1.1a_textonly_1k.jsonl"  # rows the run did not train on
WORK = "/tmp/export-quality"           # where the exports are written (overwritten on each run)
OUT = ""                               # the result JSON, rewritten after each format; required
FORMATS = "merged,merged_cache8,int8,int4,f16,q8_0,q4_k_m"  # merged, int8/int4 (torchao), GGUF quants
                                       # (llama.cpp); merged_cache8: merged, with the 8-bit key/value cache;
                                       # int8_one_row, int4_one_row: loaded as chat_ko.py loads them, each
                                       # question answered alone (on a GPU one row on the dp4a kernel)
ROWS = 200                             # held-out rows the loss is measured on
QUESTIONS = 40                         # of those rows, the prompts answered for agreement
NEW_TOKENS = 64                        # greedy tokens per answer, at most
SEED = 0                               # the shuffle that picks the held-out rows
THREADS = 0                            # llama.cpp's threads; 0 = every core

ONE_ROW = {"int8_one_row": "int8", "int4_one_row": "int4"}  # these formats: which export each loads


def held_out_rows(tokenizer, template, context: int) -> list[dict]:
    """ROWS rows of DATA as training labels them (input_ids, labels), picked with SEED among those that fit."""
    prepared = recipe.prepare(DATA, tokenizer, template, max_chars=finetune_ko.MAX_CHARS, max_len=context)
    order = list(range(len(prepared.train)))
    random.Random(SEED).shuffle(order)
    if len(order) < ROWS:
        raise UserError(f"{DATA} has {len(order)} usable rows that fit {context} tokens; {cli.flag('ROWS')} asks "
                        f"for {ROWS}")
    return [prepared.train[i] for i in order[:ROWS]]


def prompt_of(row: dict, tokenizer) -> str:
    """The prompt of a labelled row: its text up to the first trained token, as generation is fed it."""
    first = next(i for i, label in enumerate(row["labels"]) if label != IGNORE)
    return tokenizer.decode(row["input_ids"][:first])


def answer_loss(logits: torch.Tensor, labels: list[int]) -> tuple[float, int]:
    """(summed cross-entropy, count) of the trained tokens, each predicted from the logits one position before."""
    targets = torch.tensor(labels[1:])
    loss = F.cross_entropy(logits[:-1].float(), targets, ignore_index=IGNORE, reduction="sum")
    return loss.item(), int((targets != IGNORE).sum())


def measure_transformers(folder: Path, rows: list[dict], prompts: list[str], cache_8bit: bool = False,
                         one_row: bool = False) -> tuple[list, list[str], str]:
    """Per row (loss sum, count), the greedy answers, and the line that says how they were made, from a folder
    loaded for answering. cache_8bit: every row's attention reads its keys and values back from gen()'s 8-bit
    cache, as each answering step does, and the answers come from gen()'s fast mode (on a CPU its cache gives the
    default path's greedy tokens; on a GPU it is also compiled, so agreement there carries the compiled step's
    rounding too). one_row: loaded as chat_ko.py loads it, each question answered alone."""
    loaded = answering.load_for_answering(str(folder), four_bit=False, kernels="one_row" if one_row else "batches")
    model = loaded.model
    device = model.get_input_embeddings().weight.device
    with torch.inference_mode():
        losses = []
        for r in rows:
            cache = static_cache(model, 1, len(r["input_ids"]), True) if cache_8bit else None
            logits = model(input_ids=torch.tensor([r["input_ids"]], device=device), past_key_values=cache,
                           use_cache=cache_8bit).logits[0]
            losses.append(answer_loss(logits.cpu(), r["labels"]))
    if one_row:
        answers = [gen(model, loaded.tokenizer, None, prompt, max_new_tokens=NEW_TOKENS, fast=True)[0]
                   for prompt in prompts]  # as chat_ko.py answers on a GPU
    else:  # fast: its 8-bit cache (pooled for a batch), greedy as the default
        answers = gen(model, loaded.tokenizer, None, prompts, max_new_tokens=NEW_TOKENS, fast=cache_8bit,
                      cache_8bit=cache_8bit)
    return losses, [a.text for a in answers], mode_line(model, fast=cache_8bit or one_row)


def measure_gguf(file: Path, rows: list[dict], prompts: list[str], tokenizer) -> tuple[list, list[str]]:
    """Per row (loss sum, count) from llama.cpp's logits at every position (logits_all), and its greedy answers
    decoded as gen() decodes its own."""
    model = llamacpp.llama_with_logits(file, max(len(r["input_ids"]) for r in rows), THREADS)
    losses = []
    try:
        for row in rows:
            model.reset()
            model.eval(row["input_ids"])
            losses.append(answer_loss(torch.from_numpy(model.scores[:len(row["input_ids"])]), row["labels"]))
    finally:
        model.close()
    answers = llamacpp.llama_greedy(file, prompts, NEW_TOKENS)
    return losses, [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in answers]


def agreement(reference: list[str], answers: list[str], tokenizer) -> dict:
    """Answers against the reference's, as the token ids of each text: the share identical, and the mean share of
    tokens equal up to the first difference (of the longer answer)."""
    identical, prefix_shares = 0, []
    for expected, got in zip(reference, answers):
        a, b = encode_prompt(tokenizer, expected), encode_prompt(tokenizer, got)
        same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        identical += a == b
        prefix_shares.append(1.0 if a == b else same / max(len(a), len(b)))
    return {"identical_answers": identical, "identical_share": round(identical / len(reference), 4),
            "prefix_share": round(sum(prefix_shares) / len(reference), 4)}


def installed_version(package: str) -> str:
    """`package`'s version, or "-" where it is not installed (a GPU machine measuring only the torchao formats)."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def size_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "OUT")
    known = ("merged", "merged_cache8", *quantized.FORMATS, *ONE_ROW, *gguf.QUANTS)
    asked = FORMATS.split(",")
    if unknown := [f for f in asked if f not in known]:
        raise UserError(f"{cli.flag('FORMATS', FORMATS)}: {', '.join(unknown)} not among {', '.join(known)}")
    formats = ["merged", *[f for f in asked if f != "merged"]]  # merged first: it is the reference
    if not Path(DATA).is_file():
        raise UserError(f"{cli.flag('DATA', DATA)} is not a file (KoAlpaca rows: see ../shared/data/README.md)")
    runs.check_file_can_be_written(Path(OUT), "OUT")
    run = runs.open_run(RUN)
    if run.adapter is None:
        raise UserError(f"{RUN} is not a run folder with an adapter: pass the run its exports were made from")
    config = run.config
    rows = held_out_rows(run.tokenizer, run.template, config.max_position_embeddings)
    prompts = [prompt_of(row, run.tokenizer) for row in rows[:QUESTIONS]]
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
               "versions": {**runs.versions(), **{p: installed_version(p) for p in ("llama-cpp-python", "gguf")}},
               "command": " ".join(["python3 -m bench.export_quality", *argv]),
               "run": str(run.folder), "base_model": run.base_model, "parameters": modeling.parameter_count(config),
               "held_out": {"data": DATA, "rows": ROWS, "seed": SEED,
                            "answer_tokens": sum(label != IGNORE for r in rows for label in r["labels"]),
                            "longest_row_tokens": max(len(r["input_ids"]) for r in rows)},
               "questions": QUESTIONS, "new_tokens": NEW_TOKENS, "formats": {}}

    work = Path(WORK)
    merged = runs.save_merged(run.folder, str(work / "merged"), run.tokenizer, run.template)
    gguf_quants = [q for q in gguf.QUANTS if q in formats]
    gguf_files = {}  # written all at once: the quantized files are made from the f16 one
    if gguf_quants:
        gguf_files = dict(zip(gguf_quants, gguf.write_gguf(merged, work / "gguf", gguf_quants, run.template)))
    reference = None  # the merged model's (loss, answers)
    written = {}  # int8/int4 exports by format
    for fmt in formats:
        start = time.perf_counter()
        try:
            if fmt in gguf_files:
                path = gguf_files[fmt]
            elif fmt.startswith("merged"):
                path = merged
            else:  # an _one_row format measures the export of its own format, written once
                exported = ONE_ROW.get(fmt, fmt)
                if exported not in written:
                    written[exported] = quantized.write_quantized(merged, work / exported, exported)
                path = written[exported]
        except UserError as e:  # int4 on a machine without an NVIDIA GPU: the reason, in one line
            results["formats"][fmt] = {"not_measured": str(e)}
        else:
            how = {}
            if fmt in gguf_files:
                losses, answers = measure_gguf(path, rows, prompts, run.tokenizer)
            else:
                losses, answers, line = measure_transformers(path, rows, prompts, cache_8bit=fmt == "merged_cache8",
                                                             one_row=fmt in ONE_ROW)
                how = {"answering": line}
            loss = sum(total for total, _ in losses) / sum(count for _, count in losses)
            if reference is None:
                reference = (loss, answers)
            results["formats"][fmt] = {
                "loss": round(loss, 6), "loss_vs_merged": (loss - reference[0]) / reference[0],
                **agreement(reference[1], answers, run.tokenizer), "size_bytes": size_bytes(path),
                "seconds": round(time.perf_counter() - start, 1), **how}
        print(fmt, json.dumps(results["formats"][fmt], ensure_ascii=False), flush=True)
        Path(OUT).parent.mkdir(parents=True, exist_ok=True)
        runs.write_json(Path(OUT), results)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    sys.exit(cli.run(main))
