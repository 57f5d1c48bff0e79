"""The one gen(): answer questions with the template the model was trained on.

Used by the training demo, and by chat and serving. Prompts are encoded exactly as in training,
left-padded into one batch, generated until end of text or max_new_tokens, and only the new tokens
are decoded. No token_type_ids ever reach generate() (GPT-NeoX rejects them).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from transformers.generation.streamers import BaseStreamer

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


class TextStream(BaseStreamer):
    """Hands the answer's text to `on_text` piece by piece as tokens arrive. A Korean syllable can span
    several byte-level tokens: text that ends in an unfinished character waits for the next token."""

    def __init__(self, tokenizer, on_text):
        self.tokenizer, self.on_text = tokenizer, on_text
        self.ids: list[int] = []
        self.sent = 0
        self.prompt_seen = False

    def put(self, value):
        if not self.prompt_seen:  # generate() first puts the prompt
            self.prompt_seen = True
            return
        self.ids += [t for t in value.flatten().tolist() if t != self.tokenizer.eos_token_id]
        self.flush(final=False)

    def end(self):
        self.flush(final=True)

    def flush(self, final: bool):
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True).lstrip()
        if not final and text.endswith("\ufffd"):
            return
        if len(text) > self.sent:
            self.on_text(text[self.sent:])
            self.sent = len(text)


def render(template: Template | None, item) -> tuple[str, str, str]:
    """(prompt text, question, input) for one item: a question, a (question, input) pair, a conversation
    (a list of {"role", "content"} messages), or, with no template, a raw prompt to continue."""
    if template is None:
        return item, item, ""
    if isinstance(item, list):
        return template.chat(item), item[-1]["content"], ""
    question, extra = (item, "") if isinstance(item, str) else item
    return template.prompt(question, extra), question, extra


def gen(model, tokenizer, template: Template | None, questions, *, max_new_tokens: int = 256,
        temperature: float = 0.0, top_p: float = 1.0, fast: bool = False, min_new_tokens: int = 0,
        stream=None) -> list[Answer]:
    """Answer each question: a string, a (question, input) pair, or a conversation (a list of messages).
    template None: each item is a raw prompt to continue. temperature 0 = greedy.

    fast: a static KV cache, which transformers compiles into CUDA graphs on a GPU (for models not in
    4-bit: load them with four_bit=False, or merge the adapter into a 16-bit base). The first call with
    a new batch size or length compiles; later ones replay. Same greedy tokens as the default path.
    min_new_tokens: end of text is not allowed before this many tokens (benchmarks force full length).
    stream: called with each new piece of the answer's text as it is generated (one question only)."""
    single = isinstance(questions, (str, tuple)) or (isinstance(questions, list) and questions
                                                      and isinstance(questions[0], dict))
    items = [questions] if single else list(questions)
    if stream is not None and len(items) != 1:
        raise ValueError("stream answers one question at a time")
    rendered = [render(template, item) for item in items]
    pairs = [(q, i) for _, q, i in rendered]
    prompts = [encode_prompt(tokenizer, text) for text, _, _ in rendered]
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
                             cache_implementation="static" if fast else None,
                             streamer=TextStream(tokenizer, stream) if stream else None, **sampling)
    seconds = time.perf_counter() - start

    answers = []
    for (q, i), row in zip(pairs, out[:, width:].tolist()):
        stopped = eos in row
        tokens = row[: row.index(eos)] if stopped else row
        text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        answers.append(Answer(q, i, text, len(tokens) + int(stopped), seconds, "stop" if stopped else "length"))
    return answers
