"""Examples of (text, trained) pieces to input ids and labels: the mask is built, not searched.

Each piece (kochat/conversations.py: prompt, answer and its end of turn, the next prompt, …) is tokenized
on its own and the ids joined. Labels are -100 over the untrained pieces (unless training on the prompt
too), so exactly the answers and their end-of-turn tokens are trained on, whatever BPE would have merged
across a boundary. The first piece is the text generation feeds for the first answer, so the model sees the
same tokens in both. Padding of labels is done separately with -100, so the end-of-text label survives even
where pad id = EOS id.
"""
from __future__ import annotations

from datasets import Dataset
from transformers import DataCollatorForSeq2Seq

IGNORE = -100  # the label value the loss skips


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt, exactly as training saw it (no special tokens, no token_type_ids)."""
    return tokenizer(prompt, add_special_tokens=False, return_token_type_ids=False)["input_ids"]


def tokenize_examples(examples: Dataset, tokenizer, train_on_prompt: bool = False) -> Dataset:
    """Add input_ids / attention_mask / labels, and prompt_len (the tokens before the first trained piece, whatever
    train_on_prompt: what the eval split is checked by), to a dataset of examples with columns "texts" and
    "trained" (the pieces), batched; other columns are kept."""

    def tokenize_batch(batch):
        flat = [text for texts in batch["texts"] for text in texts]
        ids_of = iter(tokenizer(flat, add_special_tokens=False, return_token_type_ids=False)["input_ids"])
        out = {"input_ids": [], "attention_mask": [], "labels": [], "prompt_len": []}
        for texts, trained in zip(batch["texts"], batch["trained"]):
            ids, labels, prompt_len = [], [], None
            for is_trained in trained:
                piece = next(ids_of)
                if is_trained and prompt_len is None:
                    prompt_len = len(ids)
                ids += piece
                labels += piece if is_trained or train_on_prompt else [IGNORE] * len(piece)
            out["input_ids"].append(ids)
            out["attention_mask"].append([1] * len(ids))
            out["labels"].append(labels)
            out["prompt_len"].append(len(ids) if prompt_len is None else prompt_len)
        return out

    return examples.map(tokenize_batch, batched=True, remove_columns=["texts", "trained"], desc="tokenizing")


def drop_too_long(tokenized: Dataset, max_len: int) -> tuple[Dataset, set[int]]:
    """Examples longer than max_len tokens are dropped, not truncated (a cut example loses its EOS label), with
    every other example of the same data row ("row" column: a conversation a template trains as one example per
    answer is skipped whole, never half trained). Returns the examples kept and the rows dropped."""
    too_long = {row for row, ids in zip(tokenized["row"], tokenized["input_ids"]) if len(ids) > max_len}
    if not too_long:
        return tokenized, too_long
    kept = tokenized.filter(lambda rows: [row not in too_long for row in rows], input_columns="row", batched=True,
                            desc=f"dropping rows over {max_len} tokens")
    return kept, too_long


def make_collator(tokenizer) -> DataCollatorForSeq2Seq:
    """Pads input_ids with the pad id and labels with -100, to a multiple of 8 for tensor cores."""
    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE, pad_to_multiple_of=8, padding=True)


def show_trained_span(example: dict, tokenizer) -> str:
    """One tokenized row as text with the trained-on tokens inside ⟦ ⟧: evidence the mask is right."""
    pieces, run, trained = [], [], None
    for tid, label in zip(example["input_ids"], example["labels"]):
        is_trained = label != IGNORE
        if trained is not None and is_trained != trained:
            pieces.append((trained, run))
            run = []
        run.append(tid)
        trained = is_trained
    if run:
        pieces.append((trained, run))
    text = ""
    for is_trained, ids in pieces:
        chunk = tokenizer.decode(ids, skip_special_tokens=False)
        text += f"⟦{chunk}⟧" if is_trained else chunk
    return text
