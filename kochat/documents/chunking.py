"""Sections of a document into passages: the unit that is indexed, retrieved and shown as a source.

A passage is a run of whole Korean sentences (Kiwi's boundaries, not a character count) of at most
`chunk_chars` characters, within one section (a PDF page, a heading's text, an FAQ row), so it keeps that
section's page or heading path. Consecutive passages share up to `overlap_chars` of trailing sentences, so
a rule split across two passages is whole in one of them. A sentence longer than `chunk_chars` (a
flattened table, say) is cut at the limit. Each passage's search terms include its document title and
heading path: "제12조 연차휴가" names what the sentences under it are about.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import korean
from .readers import Section


@dataclass(frozen=True)
class Passage:
    source: str            # the file, relative to the documents folder
    page: int | None       # PDF page
    heading: str           # heading path, " > " between levels
    row: int | None        # FAQ row
    start: int             # character span in the section's text
    end: int
    text: str
    terms: tuple[str, ...]  # content morphemes of title, heading and text: what BM25 matches

    def to_dict(self) -> dict:
        """The stored form, without terms (kept apart: only an update reads them)."""
        return {"source": self.source, "page": self.page, "heading": self.heading, "row": self.row,
                "start": self.start, "end": self.end, "text": self.text}


def chunk(source: str, title: str, sections: list[Section], chunk_chars: int, overlap_chars: int) -> list[Passage]:
    """The passages of one document, in reading order."""
    title_terms = korean.terms(title)
    passages = []
    for section in sections:
        heading = "" if section.heading in section.text[:len(section.heading) + 1] else section.heading  # FAQ rows
        context = tuple(title_terms + korean.terms(heading))                         # start with their question
        for start, end, terms in spans(section.text, chunk_chars, overlap_chars):
            passages.append(Passage(source, section.page, section.heading, section.row, start, end,
                                    section.text[start:end], context + terms))
    return passages


def spans(text: str, chunk_chars: int, overlap_chars: int) -> list[tuple[int, int, tuple[str, ...]]]:
    """(start, end, terms) of each passage of one section's text."""
    pieces = []  # sentences, long ones cut at chunk_chars
    for s in korean.sentences(text):
        if s.end - s.start <= chunk_chars:
            pieces.append((s.start, s.end, s.terms))
            continue
        for cut in range(s.start, s.end, chunk_chars):
            end = min(cut + chunk_chars, s.end)
            pieces.append((cut, end, tuple(korean.terms(text[cut:end]))))
    out, first = [], 0
    while first < len(pieces):
        last = first
        while last + 1 < len(pieces) and pieces[last + 1][1] - pieces[first][0] <= chunk_chars:
            last += 1
        out.append((pieces[first][0], pieces[last][1], tuple(t for p in pieces[first:last + 1] for t in p[2])))
        if last + 1 == len(pieces):
            break
        nxt = last + 1  # the next passage starts with trailing sentences of this one: up to overlap_chars,
        while (nxt - 1 > first and pieces[last][1] - pieces[nxt - 1][0] <= overlap_chars  # leaving room for
               and pieces[last + 1][1] - pieces[nxt - 1][0] <= chunk_chars):             # a new sentence
            nxt -= 1
        first = nxt
    return out
