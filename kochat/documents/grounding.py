"""Grounded answering: the passages retrieved for a conversation go into its prompt, numbered, so the answer
can cite them as [1], [2]; when nothing relevant is found, the answer says so instead of inventing one.

Grounding is a prompt, not a second model path: the passages enter as the last question's input through
the run's own template (kochat.prompts.Template.chat), so chat, serving and evaluation render it alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..tokenization import encode_prompt
from .retrieval import Hit, Searcher, covers

HISTORY_TURNS = 2  # earlier user questions that shape the search for a follow-up ("그럼 2년차는요?")
INSTRUCTION = "다음 문서에 근거해 답하고, 근거로 삼은 문서의 번호를 [1]처럼 적으세요."
NOT_COVERED = "제공된 문서에서 이 질문에 대한 내용을 찾지 못했습니다. 담당 부서에 문의해 주세요."


@dataclass
class Grounding:
    hits: list[Hit] = field(default_factory=list)  # the passages given to the model, numbered from 1
    covered: bool = False                          # False: answer NOT_COVERED without the model
    too_long: bool = False                         # relevant passages found, but the conversation leaves no room

    def sources(self) -> list[dict]:
        return [h.to_dict() for h in self.hits]


def search_query(messages: list[dict]) -> tuple[str, list[str]]:
    """(the question, the earlier user questions that give it context) from an OpenAI-style conversation."""
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return (users[-1] if users else ""), users[-1 - HISTORY_TURNS:-1]


def context(hits: list[Hit]) -> str:
    """The passages as the question's input: the instruction, then "[n] source · heading" and the text."""
    blocks = [f"[{h.n}] {h.where}\n{h.text}" for h in hits]
    return INSTRUCTION + "\n\n" + "\n\n".join(blocks)


def ground(searcher: Searcher, messages: list[dict], *, top_k: int, min_relevance: float,
           tokenizer=None, template=None, max_prompt_tokens: int | None = None) -> tuple[list[dict], Grounding]:
    """Retrieve for the conversation and return it with the passages attached to its last message; not
    covered when no passage reaches min_relevance.

    With a tokenizer, template and max_prompt_tokens, the lowest-ranked passages are left out until the
    rendered prompt fits (the answer needs the rest of the context)."""
    question, history = search_query(messages)
    hits = searcher.search(question, top_k=top_k, history=history)
    if not covers(hits, min_relevance):
        return messages, Grounding(hits=[], covered=False)
    hits = [h for h in hits if h.relevance > 0]  # passages that share no topic word with the question go
    for n, h in enumerate(hits, start=1):        # (they matched only "어떻게", "되나요"…), the rest renumbered
        h.n = n
    while hits:
        grounded = [*messages[:-1], {**messages[-1], "context": context(hits)}]
        if max_prompt_tokens is None or len(encode_prompt(tokenizer, template.chat(grounded))) <= max_prompt_tokens:
            return grounded, Grounding(hits=hits, covered=True)
        hits = hits[:-1]
    return messages, Grounding(hits=[], covered=False, too_long=True)
