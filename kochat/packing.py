"""Token-budget batches: whole rows packed into sequences of a fixed number of tokens, never attending
to each other.

Padding a batch to its longest row wastes compute, and a new shape every step costs time too. Here
whole rows (never split: a cut row would lose its end of text) are placed into bins of at most `budget`
tokens, best fit first, longest rows first, and each bin is padded to exactly `budget` tokens, so every
step has the same shape. position_ids restart at 0 for each row and no attention_mask is passed: from
the restarts transformers builds a block-diagonal causal mask (masking_utils.find_packed_sequence_indices),
so each row attends only to itself, with its own rotary positions. The label of each row's first token
is -100, so no loss crosses a row boundary. Same tokens, same labels: the same loss as padded batches.

Why not the libraries that do this: TRL's `pack_dataset(strategy="bfd")` is the same best-fit-decreasing
packer, but TRL is not a dependency (a training framework for these 25 lines) and it cuts a row longer than
the budget (truncated or split, by strategy), where the recipe drops such rows before packing and counts them
(a cut row loses its end of text). transformers' `DataCollatorWithFlattening` joins a batch into one row of whatever length the batch
has, a new shape every step (each one recompiles the compiled layers and rebuilds flex attention's block
mask); PackedCollator pads every bin to the budget, so all steps share one shape.
"""
from __future__ import annotations

import bisect

import torch
from datasets import Dataset

from .tokenization import IGNORE


def pack_rows(tokenized: Dataset, budget: int) -> Dataset:
    """Bins of whole rows, each at most `budget` tokens: columns input_ids, labels, position_ids."""
    lengths = [len(ids) for ids in tokenized["input_ids"]]
    too_long = max(lengths, default=0)
    if too_long > budget:
        raise ValueError(f"a row of {too_long} tokens does not fit a bin of {budget}: drop rows over the budget first")
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (tokens left, bin index), sorted: the best fit is the first that fits
    for row in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        at = bisect.bisect_left(free, (lengths[row], -1))
        if at < len(free):
            left, b = free.pop(at)
        else:
            left, b = budget, len(bins)
            bins.append([])
        bins[b].append(row)
        bisect.insort(free, (left - lengths[row], b))

    input_ids, labels, position_ids = [], [], []
    for rows in bins:
        ids, lab, pos = [], [], []
        for row in sorted(rows):  # keep the dataset's order inside a bin
            example = tokenized[row]
            ids += example["input_ids"]
            lab += [IGNORE] + example["labels"][1:]  # the first token would be predicted from the previous row
            pos += range(len(example["input_ids"]))
        input_ids.append(ids)
        labels.append(lab)
        position_ids.append(pos)
    return Dataset.from_dict({"input_ids": input_ids, "labels": labels, "position_ids": position_ids})


class PackedCollator:
    """Pads packed bins to exactly `budget` tokens: pad ids, labels -100, and positions that restart, so
    the padding is a sequence of its own that no row attends to. No attention_mask, by design."""

    def __init__(self, pad_id: int, budget: int):
        self.pad_id, self.budget = pad_id, budget

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = {"input_ids": [], "labels": [], "position_ids": []}
        for f in features:
            n = self.budget - len(f["input_ids"])
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad_id] * n)
            batch["labels"].append(list(f["labels"]) + [IGNORE] * n)
            batch["position_ids"].append(list(f["position_ids"]) + list(range(n)))
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
