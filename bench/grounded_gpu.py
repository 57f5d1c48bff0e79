"""Time to first token of a grounded answer at polyglot-ko-12.8b's shape, against the same question asked
without documents: how much the retrieved passages cost in prompt tokens and in waiting.
Two steps from the repository root, since retrieval (Kiwi) stays on the CPU and the GPU machine lacks it:

    # 1. here, on the CPU: index the sample documents, ground each question as chat_ko.py and serve_ko.py do
    #    (their TOP_K and MIN_RELEVANCE, prompts cut to 2048 - their MAX_NEW_TOKENS, finetune_ko.py's
    #    template) and save the prompts with their token counts
    python3 -m bench.grounded_gpu --step=prepare --tokenizer=../shared/data/polyglot-ko-tokenizer \
        --prompts=.gpu-grounded/prompts.json
    # 2. on one GPU, with a random-weight model of the 12.8b shape (bench/random_model.py):
    python3 -m bench.grounded_gpu --step=measure --prompts=.gpu-grounded/prompts.json \
        --model=/tmp/random-polyglot-ko-12.8b --out=OUT/grounded.json [--parts=4bit-1,4bit-n,fast]

measure: the base in 4-bit NF4 through kochat.modeling.load_model plus a LoRA adapter of finetune_ko.py's
shape (both matrices random), answering through kochat.generation.gen exactly as chat does (greedy). For
each prompt: time to first token (gen with max_new_tokens=1: prefill + the first token, synchronized,
median of REPEATS after warm-up) and a 128-token answer (min_new_tokens, so random weights run full
length); batch 1, then all covered prompts in one batch; then the same with the adapter merged into a
16-bit base and gen(fast=True), each new batch size warmed up (compiled) before it is timed. A third kind
of prompt, filled to the token budget (TOP_K raised to LONG_TOP_K), is timed to its first token only.
Results are rewritten to OUT after every measurement, so a run that is cut off keeps what it had.
Random weights: speed only, never answer quality.
"""
import json
import statistics
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import finetune_ko as recipe_defaults  # the adapter's shape and the template: finetune_ko.py's constants
from kochat import cli
from kochat.errors import UserError

# ---- constants: edit here, or override on the command line as --name=value -------------------
STEP = ""                       # prepare (CPU: index, ground, save the prompts) or measure (GPU); required
DOCS = "data/company_docs"      # prepare: the documents to index (index_ko.py's defaults for the index)
TOKENIZER = ""                  # prepare: the polyglot-ko tokenizer folder, to count prompt tokens
PROMPTS = ""                    # the prompts JSON: written by prepare, read by measure; required
MODEL = ""                      # measure: a model folder (bench/random_model.py writes one of a real shape)
OUT = ""                        # measure: the result JSON
PARTS = ["4bit-1", "4bit-n", "fast"]  # 4-bit + LoRA one at a time / all in one batch; fast: merged 16-bit, gen(fast)
REPEATS = 3                     # timed first tokens per prompt (the median is reported)
ANSWER_TOKENS = 128             # length of each timed answer
LONG_TOP_K = 20                 # passages asked for the prompts filled to the token budget (first token only)
LIMIT = 0                       # measure only the first N covered prompts (0 = all; smoke tests)
CONTEXT = 2048                  # polyglot-ko's context: prompts are cut to CONTEXT - chat_ko.py's MAX_NEW_TOKENS
QUESTIONS = [                   # the 2nd and 4th are not covered at MIN_RELEVANCE 0.3; the 3rd and 5th are, reworded
    "입사 1년차 직원의 연차휴가는 며칠인가요?",
    "출장 갈 때 숙박비는 하루에 얼마까지 지원되나요?",
    "국내 출장 숙박비는 1박에 얼마까지 나오나요?",
    "비밀번호는 어떤 규칙으로 만들어야 하고 얼마마다 바꿔야 하나요?",
    "비밀번호 변경 주기와 최소 길이는 어떻게 정해져 있나요?",
    "본인 결혼 때 경조사비는 얼마를 받을 수 있나요?",
    "회의실은 어떻게 예약하고 최대 몇 시간까지 쓸 수 있나요?",
    "재택근무할 때 VPN은 어떻게 접속하나요?",
    "자기계발비는 1년에 얼마까지 지원되고 어떻게 신청하나요?",
    "병가는 며칠까지 쓸 수 있고 진단서가 필요한가요?",
]

PRESETS = {}
FLAGS = {}


def long_kind():
    return f"grounded, top_k {LONG_TOP_K}"


def prepare():
    import chat_ko
    import index_ko
    from kochat import modeling
    from kochat.documents import grounding, indexing, store
    from kochat.documents.retrieval import Searcher
    from kochat.prompts import load_template
    from kochat.tokenization import encode_prompt

    top_k, min_relevance, budget = chat_ko.TOP_K, chat_ko.MIN_RELEVANCE, CONTEXT - chat_ko.MAX_NEW_TOKENS
    tokenizer = modeling.load_tokenizer(TOKENIZER)
    template = load_template(recipe_defaults.TEMPLATE, tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(Path(tmp) / "index")
        report = indexing.update_index(DOCS, folder, chunk_chars=index_ko.CHUNK_CHARS,
                                       overlap_chars=index_ko.OVERLAP_CHARS, k1=index_ko.BM25_K1, b=index_ko.BM25_B,
                                       max_file_bytes=int(index_ko.MAX_FILE_MB * 1_000_000))
        searcher = Searcher(store.open_index(folder))
        items = []
        for q in QUESTIONS:
            messages = [{"role": "user", "content": q}]
            grounded, found = grounding.ground(searcher, messages, top_k=top_k, min_relevance=min_relevance,
                                               tokenizer=tokenizer, template=template, max_prompt_tokens=budget)
            plain = template.chat(messages)
            item = {"question": q, "covered": found.covered,
                    "sources": [{"where": h.where, "relevance": round(h.relevance, 3)} for h in found.hits],
                    "messages": messages, "prompt": plain, "prompt_tokens": len(encode_prompt(tokenizer, plain))}
            if found.covered:
                text = template.chat(grounded)
                item.update(grounded_messages=grounded, grounded_prompt=text,
                            grounded_prompt_tokens=len(encode_prompt(tokenizer, text)))
            # the longest prompt chat would send: LONG_TOP_K passages, cut to the budget (first token only)
            long, found_long = grounding.ground(searcher, messages, top_k=LONG_TOP_K, min_relevance=min_relevance,
                                                tokenizer=tokenizer, template=template, max_prompt_tokens=budget)
            if found_long.covered:
                text = template.chat(long)
                item.update(long_messages=long, long_passages=len(found_long.hits),
                            long_prompt_tokens=len(encode_prompt(tokenizer, text)))
            items.append(item)
            print(f"{q}  covered={found.covered}  tokens {item['prompt_tokens']} -> "
                  f"{item.get('grounded_prompt_tokens')} (top_k {LONG_TOP_K}: {item.get('long_prompt_tokens')})  "
                  f"{[s['where'] for s in item['sources']]}")
    out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "docs": DOCS,
           "index": {"files": report.read, "passages": report.passages, "report": report.lines()},
           "template": recipe_defaults.TEMPLATE, "top_k": top_k, "min_relevance": min_relevance,
           "long_top_k": LONG_TOP_K, "max_prompt_tokens": budget, "items": items}
    Path(PROMPTS).parent.mkdir(parents=True, exist_ok=True)
    Path(PROMPTS).write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(items)} questions, {sum(i['covered'] for i in items)} covered -> {PROMPTS}")


def measure(argv):
    import torch
    from peft import LoraConfig, get_peft_model

    from kochat import modeling, runs
    from kochat.generation import gen
    from kochat.prompts import load_template

    parts = PARTS
    prepared = json.loads(Path(PROMPTS).read_text(encoding="utf-8"))
    items = [i for i in prepared["items"] if i["covered"]][:LIMIT or None]
    results = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": runs.versions(),
               "model": MODEL, "command": " ".join(["python3 -m bench.grounded_gpu", *argv]),
               "prompts": PROMPTS, "repeats": REPEATS, "answer_tokens": ANSWER_TOKENS}
    out = Path(OUT)

    def save():
        out.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    def attempt(key, fn):
        try:
            results[key] = fn()
        except Exception as e:  # a benchmark records its failure and goes on
            results[key] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
        print(f"{key}: {json.dumps(results[key], ensure_ascii=False)[:400]}", flush=True)
        save()

    cuda = torch.cuda.is_available()  # the CPU only for a smoke test of this script on a tiny model

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def peak_gib():
        return round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None

    def timed(model, convs, fast, **kw):
        sync()
        start = time.perf_counter()
        answers = gen(model, tokenizer, template, convs, fast=fast, **kw)
        sync()
        return time.perf_counter() - start, answers

    def one_by_one(model, key, fast):
        """Batch 1: each prompt's time to first token (median of repeats) and its 128-token answer."""
        rows = []
        for it in items:
            for kind, convs, expected in (("grounded", it["grounded_messages"], it["grounded_prompt_tokens"]),
                                          ("ungrounded", it["messages"], it["prompt_tokens"]),
                                          (long_kind(), it.get("long_messages"), it.get("long_prompt_tokens"))):
                if convs is None:
                    continue
                ttfts = []
                for _ in range(REPEATS):
                    s, answers = timed(model, [convs], fast, max_new_tokens=1)
                    ttfts.append(s)
                ttft = statistics.median(ttfts)
                row = {"question": it["question"], "kind": kind, "prompt_tokens": answers[0].prompt_tokens,
                       "prompt_tokens_prepared": expected, "ttft_s": round(ttft, 4),
                       "ttft_all_s": [round(x, 4) for x in ttfts]}
                if kind != long_kind():
                    s, answers = timed(model, [convs], fast, max_new_tokens=ANSWER_TOKENS, min_new_tokens=ANSWER_TOKENS)
                    new = answers[0].new_tokens
                    row.update(answer_s=round(s, 3), new_tokens=new, tok_s=round(new / s, 2),
                               decode_tok_s=round((new - 1) / (s - ttft), 2))
                rows.append(row)
                print(f"  {key} {kind:18} {row['prompt_tokens']:5} tokens  ttft {ttft * 1000:7.1f} ms  "
                      f"{row.get('tok_s', '-')} tok/s", flush=True)
        summary = {}
        for kind in ("grounded", "ungrounded", long_kind()):
            r = [x for x in rows if x["kind"] == kind]
            if not r:
                continue
            t = sorted(x["ttft_s"] for x in r)
            tokens = [x["prompt_tokens"] for x in r]
            summary[kind] = {"prompts": len(r), "prompt_tokens_median": statistics.median(tokens),
                             "prompt_tokens_min_max": [min(tokens), max(tokens)],
                             "ttft_p50_s": round(statistics.median(t), 4), "ttft_max_s": round(t[-1], 4)}
            if kind != long_kind():
                summary[kind].update(tok_s_median=round(statistics.median(x["tok_s"] for x in r), 2),
                                     decode_tok_s_median=round(statistics.median(x["decode_tok_s"] for x in r), 2))
        return {"summary": summary, "rows": rows, "peak_gib": peak_gib()}

    def batched(model, fast, field="grounded_messages", answer=True):
        """All covered prompts in one batch (left-padded to the longest): time to first token, 128-token answers."""
        convs = [it[field] for it in items]
        if fast:  # a new batch size compiles: once, before timing
            gen(model, tokenizer, template, convs, max_new_tokens=ANSWER_TOKENS if answer else 1,
                min_new_tokens=ANSWER_TOKENS if answer else 0, fast=fast)
        ttfts = []
        for _ in range(REPEATS):
            s, answers = timed(model, convs, fast, max_new_tokens=1)
            ttfts.append(s)
        ttft = statistics.median(ttfts)
        row = {"batch": len(convs), "prompt_tokens": [a.prompt_tokens for a in answers],
               "ttft_s": round(ttft, 4), "ttft_all_s": [round(x, 4) for x in ttfts]}
        if answer:
            s, answers = timed(model, convs, fast, max_new_tokens=ANSWER_TOKENS, min_new_tokens=ANSWER_TOKENS)
            new = sum(a.new_tokens for a in answers)
            row.update(answer_s=round(s, 3), new_tokens=new, tok_s=round(new / s, 1),
                       per_answer_tok_s=round(new / len(convs) / s, 2))
        return {**row, "peak_gib": peak_gib()}

    def warm_up(model, fast):
        """The longest and the shortest grounded prompt, answered in full: in fast mode, a static cache of a new
        size (prompt + answer, rounded up to 256 tokens) compiles once more, then sizes are dynamic."""
        longest = max(items, key=lambda it: it.get("long_prompt_tokens", 0))["long_messages"]
        shortest = min(items, key=lambda it: it["grounded_prompt_tokens"])["grounded_messages"]
        for convs in (longest, shortest):
            gen(model, tokenizer, template, [convs], max_new_tokens=ANSWER_TOKENS, min_new_tokens=ANSWER_TOKENS,
                fast=fast)
        gen(model, tokenizer, template, [longest], max_new_tokens=1, fast=fast)

    t0 = time.perf_counter()
    tokenizer = modeling.load_tokenizer(MODEL)
    template = load_template(prepared["template"], tokenizer)
    model = modeling.load_model(MODEL, tokenizer, four_bit=True)
    sync()
    results["model_load_s"] = round(time.perf_counter() - t0, 1)
    # an adapter of finetune_ko.py's shape, both matrices random (a trained adapter is never all zero)
    model = get_peft_model(model, LoraConfig(r=recipe_defaults.LORA_R, lora_alpha=recipe_defaults.LORA_ALPHA,
                                             lora_dropout=0.0,  # answering only: dropout is off in eval mode
                                             target_modules=modeling.lora_targets(model.config,
                                                                                  recipe_defaults.LORA_TARGETS),
                                             init_lora_weights=False,
                                             task_type="CAUSAL_LM")).eval()
    model.config.use_cache = True
    adapter = Path(tempfile.mkdtemp()) / "adapter"
    model.save_pretrained(adapter)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    warm_up(model, False)
    results["warm_up_s"] = round(time.perf_counter() - t0, 1)
    save()
    if "4bit-1" in parts:
        attempt("4-bit + LoRA, batch 1", lambda: one_by_one(model, "4bit", False))
    if "4bit-n" in parts:
        attempt(f"4-bit + LoRA, batch {len(items)} grounded", lambda: batched(model, False))
        attempt(f"4-bit + LoRA, batch {len(items)} ungrounded", lambda: batched(model, False, "messages"))
        attempt(f"4-bit + LoRA, batch {len(items)} {long_kind()}",
                lambda: batched(model, False, "long_messages", answer=False))
    if "fast" not in parts:
        return
    model = None  # frees the 4-bit model before the 16-bit one loads
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    merged = modeling.load_model(MODEL, tokenizer, four_bit=False, adapter=str(adapter), merge=True).eval()
    results["merged_load_s"] = round(time.perf_counter() - t0, 1)

    def compile_fast():
        t0 = time.perf_counter()
        warm_up(merged, True)
        return {"compile_s": round(time.perf_counter() - t0, 1)}

    attempt("merged bf16 fast: warm-up", compile_fast)
    attempt("merged bf16 fast, batch 1", lambda: one_by_one(merged, "fast", True))
    attempt(f"merged bf16 fast, batch {len(items)} grounded", lambda: batched(merged, True))
    attempt(f"merged bf16 fast, batch {len(items)} {long_kind()}",
            lambda: batched(merged, True, "long_messages", answer=False))


def main(argv):
    cli.apply_command_line(globals(), argv, PRESETS, FLAGS, Path(__file__), __doc__)
    if STEP == "prepare":
        cli.require(globals(), "TOKENIZER", "PROMPTS")
        return prepare()
    if STEP == "measure":
        cli.require(globals(), "PROMPTS", "MODEL", "OUT")
        unknown = set(PARTS) - {"4bit-1", "4bit-n", "fast"}
        if unknown:
            raise UserError(f"unknown part(s) {sorted(unknown)}: 4bit-1, 4bit-n, fast")
        return measure(argv)
    raise UserError(f"--step is prepare or measure (got {STEP!r})")


if __name__ == "__main__":
    sys.exit(cli.run(main))
