"""The one gen(): answer questions with the template the model was trained on.

Used by the training demo, and by chat and serving. Prompts are encoded exactly as in training,
left-padded into one batch, generated until end of text or max_new_tokens, and only the new tokens
are decoded. No token_type_ids ever reach generate() (GPT-NeoX rejects them).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from .prompts import Template
from .tokenization import encode_prompt


@dataclass
class Answer:
    question: str
    input: str
    text: str
    new_tokens: int
    seconds: float
    finish_reason: str  # "stop": ended at end of text; "length": hit max_new_tokens

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 2)}


def gen(model, tokenizer, template: Template, questions, *, max_new_tokens: int = 256,
        temperature: float = 0.0, top_p: float = 1.0, fast: bool = False, min_new_tokens: int = 0) -> list[Answer]:
    """Answer each question: a string, or a (question, input) pair. temperature 0 = greedy.

    fast: a static KV cache, which transformers compiles into CUDA graphs on a GPU (for models not in
    4-bit: load them with four_bit=False, or merge the adapter into a 16-bit base). The first call with
    a new batch size or length compiles; later ones replay. Same greedy tokens as the default path.
    min_new_tokens: end of text is not allowed before this many tokens (benchmarks force full length)."""
    items = [questions] if isinstance(questions, (str, tuple)) else list(questions)
    pairs = [(q, "") if isinstance(q, str) else (q[0], q[1]) for q in items]
    prompts = [encode_prompt(tokenizer, template.prompt(q, i)) for q, i in pairs]
    width = max(len(p) for p in prompts)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    device = model.get_input_embeddings().weight.device
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}

    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                             min_new_tokens=min_new_tokens, eos_token_id=eos, pad_token_id=pad, use_cache=True,
                             cache_implementation="static" if fast else None, **sampling)
    seconds = time.perf_counter() - start

    answers = []
    for (q, i), row in zip(pairs, out[:, width:].tolist()):
        stopped = eos in row
        tokens = row[: row.index(eos)] if stopped else row
        text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        answers.append(Answer(q, i, text, len(tokens) + int(stopped), seconds, "stop" if stopped else "length"))
    return answers
