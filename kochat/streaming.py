"""When each row of a generated batch is done, and what of its text may be streamed yet.

gen() hands every step's tokens to a RowTracker. Per row it decides: end of text, the row's own token
limit, one of its stop strings (the text is cut before it), or its caller gone (cancelled). Streamed
text never shows what may still turn into a stop string, half of a Korean syllable whose bytes span
tokens, or spaces that may yet end the answer (it is stripped): the pieces add up to the answer. The tracker
knows tokens and text only, never the model or the GPU.
"""
from __future__ import annotations


class RowTracker:
    """Per row of a batch: its tokens, and when it is done: end of text, its own token limit, a stop
    string, or cancelled by its caller.

    Without streaming, stop strings or cancellation (`per_step` False) the tokens are read once, at the
    end (`finish`). Otherwise each step's tokens are read (`see`); only rows that stream or have stop
    strings are decoded as they go. Streamed text holds back what could still turn out to be the start of
    a stop string, and a Korean syllable split across byte-level tokens (decoded as U+FFFD) until its last byte."""

    def __init__(self, tokenizer, limits: list[int], stops: list[list[str]], stream, cancelled):
        self.tokenizer, self.limits, self.stops = tokenizer, limits, stops
        self.stream, self.cancelled = stream, cancelled
        self.per_step = stream is not None or cancelled is not None or any(stops)
        n = len(limits)
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.tokens, self.sent = [0] * n, [0] * n
        self.cut: list[str | None] = [None] * n  # the text, once a stop string ended it
        self.reason: list[str | None] = [None] * n

    def see(self, tokens: list[int]) -> list[int]:
        """One step's token of every row; returns the rows that a stop string or cancellation just ended."""
        ended = []
        for row, token in enumerate(tokens):
            if self.reason[row] is not None:
                continue
            self.add(row, token)
            if self.stream is not None or self.stops[row]:
                self.follow(row)
            if self.reason[row] is None and self.cancelled is not None and self.cancelled(row):
                self.reason[row] = "cancelled"
            if self.reason[row] == "cancelled" or self.cut[row] is not None:
                ended.append(row)  # the GPU knows end of text and limits; these it must be told
            if self.reason[row] is not None and self.stream is not None:
                self.emit(row, self.text(row).rstrip(), final=True)  # the answer's own end, as gen() strips it
        return ended

    @property
    def all_done(self) -> bool:
        return all(r is not None for r in self.reason)

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
        """Read the rows' tokens at the end, when they were not read step by step."""
        if not self.per_step:
            for row, ids in enumerate(new_ids):
                for token in ids:
                    self.add(row, token)

    def text(self, row: int) -> str:
        if self.cut[row] is not None:
            return self.cut[row]
        # its end kept: a stop string may be whitespace ("\n"); the answer and what is streamed drop it
        return self.tokenizer.decode(self.ids[row], skip_special_tokens=True).lstrip()

    def follow(self, row: int) -> None:
        """Decode the row so far: end it at a stop string, and stream what is certain."""
        text = self.text(row)
        at = min((text.find(s) for s in self.stops[row] if s and s in text), default=-1)
        if at >= 0:
            self.cut[row], self.reason[row] = text[:at].rstrip(), "stop"
        elif self.reason[row] is None:
            self.emit(row, text, final=False)

    def emit(self, row: int, text: str, final: bool) -> None:
        if self.stream is None:
            return
        if not final:  # held back: half a syllable, and spaces at the end (the answer's end is stripped)
            text = text.rstrip("\ufffd").rstrip()
            hold = max((len(s) - 1 for s in self.stops[row] if s), default=0)
            for k in range(min(hold, len(text)), 0, -1):  # keep back a tail that may begin a stop string
                if any(s.startswith(text[-k:]) for s in self.stops[row] if s):
                    text = text[:-k].rstrip()  # and the space before it, which a stop there would take off
                    break
        if len(text) > self.sent[row]:
            self.stream(row, text[self.sent[row]:])
            self.sent[row] = len(text)
