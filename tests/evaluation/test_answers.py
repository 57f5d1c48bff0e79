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


def test_a_cached_answer_is_read_back_only_for_the_same_settings_seed_and_template(tmp_path, monkeypatch,
                                                                                    koalpaca_template):
    """A second run with another seed (sampling) or another prompt form answers again instead of reporting the
    first run's answers under the new settings."""
    from kochat.evaluation.questions import Question
    from kochat.generation import Answer
    from kochat.prompts import Template

    calls = []

    def fake_gen(model, tokenizer, template, items, **settings):
        calls.append(len(items))
        return [Answer(q, i, f"answer {len(calls)}", 3, 0.1, "stop") for q, i in items]

    monkeypatch.setattr(answers, "gen", fake_gen)
    questions = [Question(id="1", question="한국의 수도는?", input="")]
    cache = tmp_path / "answers.jsonl"

    def run(template, seed):
        return answers.answer_all(None, None, template, questions, model_name="m", cache=cache, seed=seed,
                                  settings={"max_new_tokens": 8, "temperature": 0.7, "top_p": 0.9}, batch_size=4)

    first = run(koalpaca_template, seed=1)
    assert run(koalpaca_template, seed=1) == first and calls == [1]  # the same: read back
    assert run(koalpaca_template, seed=2)[0]["text"] == "answer 2"  # another seed: answered again
    assert run(Template.load("alpaca_ko"), seed=1)[0]["text"] == "answer 3"  # another prompt form: again
