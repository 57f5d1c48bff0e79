"""Training rows that teach the model to answer from given passages, as grounded answering will ask it to.

A row whose input is a passage (the gold: the text that holds its answer) gets, instead of that bare input,
the same numbered context block chat and serving build from retrieved passages (grounding.context): the
gold among `distractors` other passages at a seeded random place. Distractors are the passages an index
retrieves for the row's question (hard negatives: about the same words, without the answer), or, without
an index, other rows' inputs. Rows without an input, and rows already rendered as text, stay as they are.
Off by default in finetune_ko.py (GROUNDED_ROWS).
"""
from __future__ import annotations

import random

from . import grounding
from .retrieval import Hit, Searcher

GIVEN = "제공된 자료"  # every passage's label in a training row: a file name on distractors alone would tell the
                     # model which passage is the answer


def _passage(text: str, source: str) -> Hit:
    return Hit(0, source, None, "", None, 0, len(text), text, 0.0, 1.0)


def ground_rows(rows: list[dict], distractors: int, seed: int, searcher: Searcher | None = None
                ) -> tuple[list[dict], int]:
    """(the rows, those with an input grounded as described above; how many were grounded)."""
    rng = random.Random(seed)
    inputs = [r["input"] for r in rows if r.get("input")]
    out, grounded = [], 0
    for row in rows:
        gold = row.get("input", "")
        if not gold:  # no passage to answer from (rows already rendered as text have none either)
            out.append(row)
            continue
        if searcher is not None:
            hits = searcher.search(row["instruction"], top_k=distractors + 1)
            others = [_passage(h.text, GIVEN) for h in hits if gold.strip() not in h.text][:distractors]
        else:
            pool = [x for x in rng.sample(inputs, min(len(inputs), distractors + 1)) if x != gold][:distractors]
            others = [_passage(x, GIVEN) for x in pool]
        passages = others[:]
        passages.insert(rng.randint(0, len(others)), _passage(gold, GIVEN))
        for n, p in enumerate(passages, start=1):
            p.n = n
        out.append({**row, "input": grounding.context(passages)})
        grounded += 1
    return out, grounded
