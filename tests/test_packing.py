import pytest
import torch
from datasets import Dataset

from kochat import modeling, tiny
from kochat.packing import PackedCollator, pack_rows
from kochat.tokenization import IGNORE, tokenize_examples

ROWS = [{"prompt": f"### 질문: 질문 {i}번, {'가나다' * (i % 7)}\n\n### 답변:", "answer": f" 답 {'라마바' * (i % 5)}"}
        for i in range(14)]


def tokenized(tokenizer, train_on_prompt=False):
    examples = Dataset.from_dict({"texts": [[r["prompt"], r["answer"] + tokenizer.eos_token] for r in ROWS],
                                  "trained": [[False, True]] * len(ROWS)})
    return tokenize_examples(examples, tokenizer, train_on_prompt)


def test_bins_hold_every_row_once_whole_and_within_budget(tiny_tokenizer):
    rows = tokenized(tiny_tokenizer)
    packed = pack_rows(rows, 64)
    assert all(len(ids) <= 64 for ids in packed["input_ids"])
    assert len(packed) < len(rows)
    pieces = []
    for ids, pos in zip(packed["input_ids"], packed["position_ids"]):
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        pieces += [ids[a:b] for a, b in zip(starts, starts[1:])]
        assert all(pos[i] == pos[i - 1] + 1 for i in range(1, len(pos)) if i not in starts)
    assert sorted(map(tuple, pieces)) == sorted(map(tuple, rows["input_ids"]))


def test_no_label_crosses_a_row_boundary(tiny_tokenizer):
    packed = pack_rows(tokenized(tiny_tokenizer, train_on_prompt=True), 64)
    for labels, pos in zip(packed["labels"], packed["position_ids"]):
        assert all(label == IGNORE for label, p in zip(labels, pos) if p == 0)


def test_a_row_longer_than_the_budget_is_refused(tiny_tokenizer):
    with pytest.raises(ValueError, match="does not fit a bin of 8"):
        pack_rows(tokenized(tiny_tokenizer), 8)


def test_collator_pads_to_one_shape_with_no_attention_mask(tiny_tokenizer):
    packed = pack_rows(tokenized(tiny_tokenizer), 64)
    batch = PackedCollator(tiny_tokenizer.pad_token_id, 64)([packed[0], packed[len(packed) - 1]])
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert all(t.shape == (2, 64) for t in batch.values())
    n = len(packed[len(packed) - 1]["input_ids"])
    assert batch["labels"][1, n:].eq(IGNORE).all() and batch["input_ids"][1, n:].eq(0).all()
    assert batch["position_ids"][1, n:].tolist() == list(range(64 - n))


@pytest.mark.parametrize("four_bit", [True, False])
@pytest.mark.parametrize("train_on_prompt", [False, True])
def test_packed_loss_equals_the_rows_run_one_by_one(tiny_tokenizer, four_bit, train_on_prompt):
    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=four_bit, trainable=True).eval()
    rows = tokenized(tiny_tokenizer, train_on_prompt)
    packed = pack_rows(rows, 64)
    with torch.no_grad():
        packed_loss = model(**PackedCollator(tiny_tokenizer.pad_token_id, 64)(list(packed)), use_cache=False).loss
        total = count = 0
        for ex in rows:  # the loss is a mean over trained tokens, so rows weigh by their trained tokens
            labels = torch.tensor([ex["labels"]])
            loss = model(input_ids=torch.tensor([ex["input_ids"]]), labels=labels, use_cache=False).loss
            n = int((labels[:, 1:] != IGNORE).sum())
            total, count = total + loss.item() * n, count + n
    assert packed_loss.item() == pytest.approx(total / count, rel=1e-5)


def test_a_row_inside_a_pack_sees_only_itself(tiny_tokenizer):
    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval()
    bin_ = next(b for b in pack_rows(tokenized(tiny_tokenizer), 64) if b["position_ids"].count(0) >= 2)
    starts = [i for i, p in enumerate(bin_["position_ids"]) if p == 0] + [len(bin_["input_ids"])]
    a, b = starts[1], starts[2]
    with torch.no_grad():
        inside = model(input_ids=torch.tensor([bin_["input_ids"]]), position_ids=torch.tensor([bin_["position_ids"]]),
                       use_cache=False).logits[0, a:b]
        alone = model(input_ids=torch.tensor([bin_["input_ids"][a:b]]), use_cache=False).logits[0]
    assert torch.allclose(inside, alone, atol=1e-4)
