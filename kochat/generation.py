"""The one gen(): answer questions with the template the model was trained on.

Used by the training demo, chat and serving. Prompts are encoded exactly as in training, left-padded
into one batch and generated together; only new tokens are decoded. No token_type_ids ever reach
generate() (GPT-NeoX rejects them). Each row of a batch has its own token limit, stop strings, stream
and cancellation: one tracker, called by generate() after every token, decides per row when it is
done, so a batch of different requests behaves as if each ran alone.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .prompts import Template
from .tokenization import encode_prompt


GREEDY_BELOW = 1e-3  # temperatures under this are greedy: dividing logits by 1e-311 overflows them to inf


@dataclass
class Answer:
    question: str
    input: str
    text: str
    new_tokens: int
    seconds: float
    finish_reason: str  # "stop": end of text or a stop string; "length": the token limit; "cancelled"
    prompt_tokens: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 2)}


def render(template: Template | None, item) -> tuple[str, str, str]:
    """(prompt text, question, input) for one item: a question, a (question, input) pair, a conversation
    (a list of {"role", "content"} messages), or, with no template, a raw prompt to continue."""
    if template is None:
        return item, item, ""
    if isinstance(item, list):
        return template.chat(item), item[-1]["content"], ""
    question, extra = (item, "") if isinstance(item, str) else item
    return template.prompt(question, extra), question, extra


class RowTracker(StoppingCriteria):
    """After each generated token, say per row whether it is done: its own token limit (end of text is
    generate()'s own check), a stop string, or cancelled by its caller.

    Without streaming, stop strings or cancellation nothing leaves the GPU between steps (the limits are
    compared there), so the GPU never waits for Python; `finish` reads the answers once, at the end.
    Otherwise each step reads the newest token of every row; only rows that stream or have stop strings
    are decoded as they go. Streamed text holds back what could still turn out to be the start of a stop
    string, and a Korean syllable split across byte-level tokens (decoded as U+FFFD) until its last byte."""

    def __init__(self, tokenizer, limits: list[int], stops: list[list[str]], stream, cancelled, device):
        self.tokenizer, self.limits, self.stops = tokenizer, limits, stops
        self.stream, self.cancelled = stream, cancelled
        self.per_step = stream is not None or cancelled is not None or any(stops)
        self.limit_tensor = torch.tensor(limits, device=device)
        self.step = 0
        n = len(limits)
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.tokens, self.sent = [0] * n, [0] * n
        self.cut: list[str | None] = [None] * n  # the text, once a stop string ended it
        self.reason: list[str | None] = [None] * n

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        self.step += 1
        done = self.limit_tensor <= self.step
        if not self.per_step:
            return done
        for row, token in enumerate(input_ids[:, -1].tolist()):
            self.add(row, token)
            if self.stream is not None or self.stops[row]:
                self.follow(row)
            if self.reason[row] is None and self.cancelled is not None and self.cancelled(row):
                self.reason[row] = "cancelled"
            if self.reason[row] is not None and self.stream is not None:
                self.emit(row, self.text(row), final=True)
        return done | torch.tensor([r is not None for r in self.reason], device=input_ids.device)

    def add(self, row: int, token: int) -> None:
        if self.reason[row] is not None:
            return
        self.tokens[row] += 1
        if token == self.tokenizer.eos_token_id:
            self.reason[row] = "stop"
        else:
            self.ids[row].append(token)
        if self.reason[row] is None and self.tokens[row] >= self.limits[row]:
            self.reason[row] = "length"

    def finish(self, new_ids: list[list[int]]) -> None:
        """Read the rows' tokens from generate()'s output, when they were not read step by step."""
        if not self.per_step:
            for row, ids in enumerate(new_ids):
                for token in ids:
                    self.add(row, token)

    def text(self, row: int) -> str:
        if self.cut[row] is not None:
            return self.cut[row]
        return self.tokenizer.decode(self.ids[row], skip_special_tokens=True).lstrip()

    def follow(self, row: int) -> None:
        """Decode the row so far: end it at a stop string, and stream what is certain."""
        text = self.text(row)
        at = min((text.find(s) for s in self.stops[row] if s and s in text), default=-1)
        if at >= 0:
            self.cut[row], self.reason[row] = text[:at], "stop"
        elif self.reason[row] is None:
            self.emit(row, text, final=False)

    def emit(self, row: int, text: str, final: bool) -> None:
        if self.stream is None:
            return
        if not final:
            text = text.rstrip("\ufffd")
            hold = max((len(s) - 1 for s in self.stops[row] if s), default=0)
            for k in range(min(hold, len(text)), 0, -1):  # keep back a tail that may begin a stop string
                if any(s.startswith(text[-k:]) for s in self.stops[row] if s):
                    text = text[:-k]
                    break
        if len(text) > self.sent[row]:
            self.stream(row, text[self.sent[row]:])
            self.sent[row] = len(text)


def gen(model, tokenizer, template: Template | None, questions, *, max_new_tokens=256, temperature: float = 0.0,
        top_p: float = 1.0, fast: bool = False, min_new_tokens: int = 0, stop=None, stream=None,
        cancelled=None) -> list[Answer]:
    """Answer each question: a string, a (question, input) pair, or a conversation (a list of messages).
    template None: each item is a raw prompt to continue. temperature 0 (or under GREEDY_BELOW) = greedy.

    max_new_tokens: one limit, or one per question. stop: strings that end an answer (not included), for
    all questions or a list per question. stream(i, text): called with each new piece of answer i.
    cancelled(i): True once question i's caller is gone; its row stops (finish_reason "cancelled").
    fast: a static KV cache, which transformers compiles into CUDA graphs on a GPU (for models not in
    4-bit: load them with four_bit=False, or merge the adapter into a 16-bit base). The first call with
    a new batch size, or a longer prompt plus answer than any before (in steps of 256 tokens), compiles
    (about a minute at 12.8b); later ones replay. Same greedy tokens as the default path.
    min_new_tokens: end of text is not allowed before this many tokens (benchmarks force full length)."""
    single = isinstance(questions, (str, tuple)) or (isinstance(questions, list) and questions
                                                      and isinstance(questions[0], dict))
    items = [questions] if single else list(questions)
    rendered = [render(template, item) for item in items]
    prompts = [encode_prompt(tokenizer, text) for text, _, _ in rendered]
    limits = list(max_new_tokens) if isinstance(max_new_tokens, (list, tuple)) else [max_new_tokens] * len(items)
    stops = [list(s) for s in stop] if stop and isinstance(stop[0], (list, tuple)) else [list(stop or [])] * len(items)
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id
    device = model.get_input_embeddings().weight.device
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    sampling = ({"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature >= GREEDY_BELOW
                else {"do_sample": False})
    tracker = RowTracker(tokenizer, limits, stops, stream, cancelled, device)
    cache = {}
    if fast and hasattr(model.generation_config, "max_cache_len"):  # where this transformers has it (5.23 does)
        # static caches sized in steps of 256 tokens: calls of nearby lengths replay one compiled graph
        cache["max_cache_len"] = -(-(width + max(limits)) // 256) * 256

    start = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max(limits),
                                min_new_tokens=min_new_tokens, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad,
                                use_cache=True, cache_implementation="static" if fast else None,
                                stopping_criteria=StoppingCriteriaList([tracker]), **cache, **sampling)
    tracker.finish(output[:, width:].tolist())
    seconds = time.perf_counter() - start
    return [Answer(q, i, tracker.text(row).strip(), tracker.tokens[row], seconds, tracker.reason[row] or "length",
                   len(prompts[row]))
            for row, (_, q, i) in enumerate(rendered)]
