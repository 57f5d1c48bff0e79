import copy

import pytest

from kochat import data, recipe
from kochat.prompts import load_template
from kochat.tokenization import (
    IGNORE,
    drop_too_long,
    encode_prompt,
    make_collator,
    show_trained_span,
    tokenize_examples,
)

ROWS = [{"prompt": "### 질문: 한국의 수도는 어디인가요?\n\n### 답변:", "answer": " 대한민국의 수도는 서울입니다.",
         "row": {"instruction": "한국의 수도는 어디인가요?", "output": "대한민국의 수도는 서울입니다."}},
        {"prompt": "### 질문: 반대말을 쓰세요.\n\n크다\n\n### 답변:", "answer": " 작다",
         "row": {"instruction": "반대말을 쓰세요.", "input": "크다", "output": "작다"}}]


def tokenized(tokenizer, train_on_prompt=False):
    """The rows through the recipe's own steps 2 and 3 (render with the koalpaca template, tokenize)."""
    template = load_template("koalpaca", tokenizer)
    rows = [{"instruction": "", "input": "", "output": "", "text": "", "messages": [], **r["row"]} for r in ROWS]
    return recipe.tokenize(recipe.render(rows, template, data.SkipReport()), tokenizer, 10_000, train_on_prompt,
                           data.SkipReport())


@pytest.fixture(params=["tiny", "polyglot"])
def tokenizer(request):
    return request.getfixturevalue(f"{request.param}_tokenizer")


def test_mask_covers_exactly_the_answer_and_its_end_of_text(tokenizer):
    for row, ex in zip(ROWS, tokenized(tokenizer)):
        prompt_ids = encode_prompt(tokenizer, row["prompt"])
        answer_ids = tokenizer(row["answer"], add_special_tokens=False)["input_ids"]
        assert ex["input_ids"] == prompt_ids + answer_ids + [tokenizer.eos_token_id]
        trained = [t for t, label in zip(ex["input_ids"], ex["labels"]) if label != IGNORE]
        assert trained == answer_ids + [tokenizer.eos_token_id]
        assert ex["labels"][: len(prompt_ids)] == [IGNORE] * len(prompt_ids)
        assert ex["labels"][-1] == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")


def test_prompt_tokens_equal_what_generation_feeds(tokenizer):
    ex = tokenized(tokenizer)[0]
    prompt_ids = encode_prompt(tokenizer, ROWS[0]["prompt"])
    assert ex["input_ids"][: len(prompt_ids)] == prompt_ids


def test_train_on_prompt_labels_every_token(tiny_tokenizer):
    ex = tokenized(tiny_tokenizer, train_on_prompt=True)[0]
    assert ex["labels"] == ex["input_ids"]


def test_end_of_text_label_survives_padding_even_when_pad_is_eos(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.pad_token = tok.eos_token  # the classic failure: pad = EOS, and padding masks every EOS label
    assert tok.pad_token_id == tok.eos_token_id
    rows = tokenized(tok)
    batch = make_collator(tok)([{k: v for k, v in r.items() if k not in ("prompt_key", "prompt_len")} for r in rows])
    width = batch["input_ids"].shape[1]
    assert width % 8 == 0
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        labels = batch["labels"][i].tolist()
        assert labels[n - 1] == tok.eos_token_id  # the real end of text is trained on
        assert labels[n:] == [IGNORE] * (width - n)  # padding is not
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (width - n)


def test_rows_over_max_len_are_dropped_not_truncated(tiny_tokenizer):
    template = load_template("koalpaca", tiny_tokenizer)
    rows = [{"instruction": "", "input": "", "output": "", "text": "", "messages": [], **r["row"]} for r in ROWS]
    examples = tokenize_examples(recipe.render(rows, template, data.SkipReport()), tiny_tokenizer)
    short = min(len(ids) for ids in examples["input_ids"])
    kept, dropped = drop_too_long(examples, short)
    assert (len(kept), dropped) == (1, {0})  # the first row, the longer, dropped whole
    assert kept[0]["labels"][-1] == tiny_tokenizer.eos_token_id


def test_show_trained_span_marks_the_answer(tiny_tokenizer):
    shown = show_trained_span(tokenized(tiny_tokenizer)[1], tiny_tokenizer)
    assert shown == "### 질문: 반대말을 쓰세요.\n\n크다\n\n### 답변:⟦ 작다<|endoftext|>⟧"
