"""The judge-free figures of the generative report, on answers whose figures are known by hand."""
import pytest

from kochat.evaluation import answers


class CharTokenizer:
    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]


def record(text, reason="stop", tokens=10, seconds=1.0):
    return {"text": text, "finish_reason": reason, "new_tokens": tokens, "seconds_share": seconds}


def test_figures_by_hand():
    records = [record("가나다라가나다라"), record("abcd", reason="length", tokens=30, seconds=2.0)]
    found = answers.figures(records, CharTokenizer())
    assert found["answers"] == 2 and found["ended"] == 0.5
    assert found["mean_chars"] == 6 and found["mean_tokens"] == 20
    # 가나다라가나다라: 5 four-grams, 4 distinct (가나다라 twice) -> 1 repeated; abcd: 1, none repeated
    assert found["repeated_4gram_rate"] == pytest.approx(1 / 6)
    assert found["hangul_share"] == pytest.approx(8 / 12)
    assert found["tokens_per_s"] == pytest.approx(40 / 3)
    assert "judge_mean" not in found


def test_hangul_share_ignores_spaces_and_counts_jamo():
    assert answers.hangul_share(["한국 어 ok", "ㅋㅋ"]) == pytest.approx(5 / 7)


def test_an_interrupted_cache_line_is_skipped_and_answers_resume(tmp_path):
    cache = tmp_path / "answers.jsonl"
    cache.write_text('{"key": "a", "text": "x"}\n{"key": "b", "te', encoding="utf-8")
    assert list(answers.read_cache(cache)) == ["a"]
