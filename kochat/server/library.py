"""The document indexes a server answers from, and which of them each API key may use.

Indexes are served by name (`serve_ko.py --index hr=outputs/index-hr --index it=outputs/index-it`). A key
may be limited to some of them (a key file line `KEY hr,it`); a key without a list may use them all. A chat
request retrieves from the index it names (`"index": "hr"`), else from the first its key may use, unless it
says `"retrieval": false`. An index the key may not use answers exactly as one that does not exist, so a key
learns nothing of the others. The retrieved passages go into the prompt through the run's template
(kochat.documents.grounding), and the answer carries them as `sources`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..documents import grounding
from ..documents.retrieval import Searcher
from .schemas import ApiError, ChatRequest


@dataclass
class Library:
    searchers: dict[str, Searcher]   # name -> open index, in the order given
    top_k: int = 3
    min_relevance: float = 0.3
    not_covered: str = grounding.NOT_COVERED

    def allowed(self, scope: frozenset | None) -> list[str]:
        """The index names a key may use (scope None: every one)."""
        return [name for name in self.searchers if scope is None or name in scope]

    def describe(self, scope: frozenset | None) -> list[dict]:
        out = []
        for name in self.allowed(scope):
            settings = self.searchers[name].index.settings
            skipped = settings.get("skipped", 0)  # counted among its files (they are tried again on each update)
            out.append({"name": name, "object": "index", "files": settings.get("files", 0) - skipped,
                        "skipped": skipped, "passages": settings.get("passages", 0),
                        "updated": settings.get("updated")})
        return out

    def choose(self, body: ChatRequest, scope: frozenset | None) -> Searcher | None:
        """The index this request retrieves from, or None for none. An index it names must be one the key
        may use, even with retrieval off: a typo is reported, not answered without documents."""
        allowed = self.allowed(scope)
        if body.index is not None and body.index not in allowed:
            raise index_not_found(body.index, allowed)
        if not body.retrieval:
            return None
        if body.index is None:
            return self.searchers[allowed[0]] if allowed else None
        return self.searchers[body.index]

    def ground(self, searcher: Searcher, messages: list[dict], tokenizer, template, max_prompt_tokens: int):
        return grounding.ground(searcher, messages, top_k=self.top_k, min_relevance=self.min_relevance,
                                tokenizer=tokenizer, template=template, max_prompt_tokens=max_prompt_tokens)


def index_not_found(name: str, allowed: list[str]) -> ApiError:
    """The same answer for an index that does not exist and one the key may not use."""
    return ApiError(404, f"index '{name}' not found" + (f"; this key may use: {', '.join(allowed)}" if allowed else ""),
                    code="index_not_found", param="index")
