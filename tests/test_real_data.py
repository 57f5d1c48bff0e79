"""Steps 1-3 of the recipe on real third-party data with the real polyglot-ko tokenizer (../shared/data)."""
import pytest

from kochat import recipe, tokenization
from kochat.prompts import load_template
from support import KOALPACA_V10, KOALPACA_V11A, needs_shared_data

pytestmark = needs_shared_data


def steps_1_to_3(source, template, tokenizer, max_len=1024):
    """Steps 1-3 as finetune_ko.py runs them (no eval split): rows, texts, tokenized rows, report."""
    prepared = recipe.prepare(str(source), tokenizer, template, max_chars=20_000, max_len=max_len)
    return prepared.rows, prepared.texts, prepared.train, prepared.report


def test_all_koalpaca_v11a_text_rows(polyglot_tokenizer):
    template = load_template("koalpaca", polyglot_tokenizer)
    _, texts, tokenized, report = steps_1_to_3(KOALPACA_V11A, template, polyglot_tokenizer)
    print("\n".join(report.lines()))
    assert report.read == 1000
    assert report.kept == len(tokenized) and report.kept >= 990
    assert set(report.reasons) <= {"longer than MAX_LEN (1024 tokens)"}
    # rendered rows split back into exactly the recipe's text
    original = KOALPACA_V11A.read_text(encoding="utf-8").splitlines()[0]
    prompt, answer = texts[0]["texts"]
    assert prompt.startswith("### 질문: 양파는") and prompt.endswith("### 답변:")
    assert answer.startswith(" 양파는 잎이 아닌") and answer.endswith("<|endoftext|>")
    for ex in tokenized:
        assert ex["labels"][-1] == 2 and ex["input_ids"][-1] == 2
        assert 2 not in ex["input_ids"][:-1]  # the text's own <|endoftext|> string was not tokenized again
    lengths = sorted(len(ex["input_ids"]) for ex in tokenized)
    assert 200 < lengths[len(lengths) // 2] < 230  # median ~215 tokens, as measured for this data
    assert "<|endoftext|>" in original


@pytest.mark.parametrize("template_name", ["koalpaca", "alpaca_ko"])
def test_all_koalpaca_v10_rows_with_and_without_input(polyglot_tokenizer, template_name):
    template = load_template(template_name, polyglot_tokenizer)
    rows, texts, tokenized, report = steps_1_to_3(KOALPACA_V10, template, polyglot_tokenizer)
    print("\n".join(report.lines()))
    assert report.read == 11_421
    assert report.kept == len(tokenized) >= 11_300
    with_input = [(row, text) for row, text in zip(rows, texts) if row["input"]]
    assert 4_850 <= len(with_input) <= 4_888
    for row, text in with_input:
        assert text["texts"][0] == template.prompt(row["instruction"], row["input"])
        assert f"\n{row['input']}\n" in text["texts"][0]
    for ex in tokenized.select(range(0, len(tokenized), 97)):
        trained = [t for t, label in zip(ex["input_ids"], ex["labels"]) if label != tokenization.IGNORE]
        assert trained[-1] == 2 and len(trained) < len(ex["input_ids"])
