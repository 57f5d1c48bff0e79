"""The generative report: base and adapter answer every question with the same settings, through gen(), and
judge-free figures per model say how the answers look.

Figures (per model, over all its answers):
- `ended`: share of answers that ended with end of text (gen()'s finish_reason "stop"), not cut at the limit;
- `mean_chars`, `mean_tokens`: mean answer length;
- `repeated_4gram_rate`: share of each answer's token 4-grams that repeat an earlier 4-gram of the same answer
  (1 − unique/total, the "seq-rep-4" of Welleck et al. 2019): a model that loops scores high;
- `hangul_share`: Hangul characters among the non-space characters: a model that drifted out of Korean drops;
- `tokens_per_s`: new tokens over the generation time (each batch's time shared by its answers).
Answers are appended to a JSONL cache as each batch finishes, keyed by model, question and settings, so an
interrupted report continues where it stopped.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from ..generation import gen
from .questions import Question

NGRAM = 4


def is_hangul(ch: str) -> bool:
    code = ord(ch)
    return 0xAC00 <= code <= 0xD7A3 or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F


def hangul_share(texts: list[str]) -> float:
    chars = [c for t in texts for c in t if not c.isspace()]
    return sum(map(is_hangul, chars)) / len(chars) if chars else 0.0


def repeated_ngram_rate(token_lists: list[list[int]], n: int = NGRAM) -> float:
    total = repeated = 0
    for ids in token_lists:
        grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
        total += len(grams)
        repeated += len(grams) - len(set(grams))
    return repeated / total if total else 0.0


def figures(records: list[dict], tokenizer) -> dict:
    if not records:
        return {}
    texts = [r["text"] for r in records]
    seconds = sum(r["seconds_share"] for r in records)
    tokens = sum(r["new_tokens"] for r in records)
    found = {
        "answers": len(records),
        "ended": sum(r["finish_reason"] == "stop" for r in records) / len(records),
        "mean_chars": sum(map(len, texts)) / len(records),
        "mean_tokens": tokens / len(records),
        "repeated_4gram_rate": repeated_ngram_rate([tokenizer.encode(t, add_special_tokens=False) for t in texts]),
        "hangul_share": hangul_share(texts),
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
    }
    judged = [r["judge"]["score"] for r in records if (r.get("judge") or {}).get("score") is not None]
    if judged:
        found["judge_mean"] = sum(judged) / len(judged)
        found["judged"] = len(judged)
    return found


def key(model_name: str, q: Question, settings: dict) -> str:
    raw = json.dumps([model_name, q.question, q.input, sorted(settings.items())], ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def read_cache(path: Path) -> dict[str, dict]:
    found = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                found[record["key"]] = record
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut by an interruption
    return found


def answer_all(model, tokenizer, template, questions: list[Question], *, model_name: str, cache: Path,
               settings: dict, batch_size: int, seed: int = 0, progress=None) -> list[dict]:
    """Every question answered by this model (cached ones read back), in the questions' order. An answer is read
    back only if it was made with the same settings, seed and template (the prompt's form)."""
    done = read_cache(cache)
    made_with = {**settings, "seed": seed, "template": json.dumps(template.to_dict(), sort_keys=True, ensure_ascii=False)}
    keys = [key(model_name, q, made_with) for q in questions]
    todo = [(k, q) for k, q in zip(keys, questions) if k not in done]
    cache.parent.mkdir(parents=True, exist_ok=True)
    if progress is not None:
        progress.update(len(questions) - len(todo))
    with open(cache, "a", encoding="utf-8") as out:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            answers = gen(model, tokenizer, template, [(q.question, q.input) for _, q in batch], **settings)
            for (k, q), a in zip(batch, answers):
                record = {"key": k, "model": model_name, "id": q.id, **a.to_dict(),
                          "seconds_share": a.seconds / len(batch)}
                done[k] = record
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            if progress is not None:
                progress.update(len(batch))
    return [done[k] for k in keys]


def answer_base_and_adapter(model, tokenizer, run, questions, *, cache_dir: Path, names: dict, settings: dict,
                            batch_size: int, seed: int) -> dict[str, list[dict]]:
    """{"base": records, "adapter": records} (base inside disable_adapter(), same load), or {"model": …} for a
    merged folder. Same settings and seed for both."""
    import torch
    from tqdm.auto import tqdm

    plan = [("base", model.disable_adapter()), ("adapter", contextlib.nullcontext())] if run.adapter else \
        [("model", contextlib.nullcontext())]
    found = {}
    with tqdm(total=len(plan) * len(questions), desc="answering", unit="answer") as bar:
        for label, context in plan:
            torch.manual_seed(seed)
            with context:
                found[label] = answer_all(model, tokenizer, run.template, questions, model_name=names[label],
                                          cache=cache_dir / f"answers-{names[label]}.jsonl", settings=settings,
                                          batch_size=batch_size, seed=seed, progress=bar)
    return found
