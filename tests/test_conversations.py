"""Conversations: the per-turn mask on each chat-template family, multi-turn data, duplicates and the eval split."""
import json
from pathlib import Path

import pytest

from kochat import data, modeling, recipe, tiny
from kochat.errors import UserError
from kochat.prompts import load_template
from kochat.tokenization import IGNORE, encode_prompt

# as the model repositories ship them (exaone4: written for these tests, see its head)
TEMPLATES = Path(__file__).parent / "fixtures" / "chat_templates"
# each family's special tokens, and the BOS its template prints
FAMILIES = {"qwen2_5": (["<|im_start|>", "<|im_end|>"], None),
            "qwen3": (["<|im_start|>", "<|im_end|>", "<think>", "</think>"], None),
            "llama3_1": (["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                         "<|begin_of_text|>"),
            "gemma2": (["<bos>", "<start_of_turn>", "<end_of_turn>"], "<bos>"),
            "gemma3": (["<bos>", "<start_of_turn>", "<end_of_turn>"], "<bos>"),
            "exaone3_5": (["[|system|]", "[|user|]", "[|assistant|]", "[|endofturn|]"], None),
            "exaone4": (["[|system|]", "[|user|]", "[|assistant|]", "[|endofturn|]"], None)}
END_OF_TURN = {"qwen2_5": "<|im_end|>", "qwen3": "<|im_end|>", "llama3_1": "<|eot_id|>", "gemma2": "<end_of_turn>",
               "gemma3": "<end_of_turn>", "exaone3_5": "[|endofturn|]", "exaone4": "[|endofturn|]"}
TURNS = [{"role": "user", "content": "한국의 수도는 어디인가요?"}, {"role": "assistant", "content": "서울입니다."},
         {"role": "user", "content": "그럼 일본은요?"}, {"role": "assistant", "content": "도쿄입니다."},
         {"role": "user", "content": "둘 중 어디가 더 북쪽이죠?"}, {"role": "assistant", "content": "서울이 조금 더 북쪽입니다."}]
SYSTEM = {"role": "system", "content": "짧고 정확하게 답하세요."}


def family_tokenizer(family: str):
    """The tiny chat tokenizer taught a real template family's special tokens and template."""
    tokenizer = modeling.load_tokenizer(tiny.CHAT_MODEL_ID)
    specials, bos = FAMILIES[family]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    if bos:
        tokenizer.bos_token = bos
    tokenizer.chat_template = (TEMPLATES / f"{family}.jinja").read_text(encoding="utf-8")
    return tokenizer


def rows_of(*conversations):
    return [{"instruction": "", "input": "", "output": "", "text": "", "messages": m} for m in conversations]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("system", [False, True], ids=["no-system", "system"])
def test_exactly_the_answers_and_their_end_of_turn_are_trained_on(family, system):
    tokenizer = family_tokenizer(family)
    template = load_template("auto", tokenizer)
    assert template.end_of_turn == END_OF_TURN[family] == tokenizer.eos_token
    messages = ([SYSTEM] if system else []) + TURNS
    report = data.SkipReport()
    if system and family == "gemma2":  # its template refuses a system message: the row is skipped, saying why
        with pytest.raises(UserError, match="the template refused every row; .*System role not supported"):
            recipe.render(rows_of(messages), template, report)
        return
    tokenized = recipe.tokenize(recipe.render(rows_of(messages), template, report), tokenizer, 4096, False, report)
    trained = [t for row in tokenized for t, label in zip(row["input_ids"], row["labels"]) if label != IGNORE]
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    expected = [t for a in answers for t in tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]]
    assert trained == expected
    # the tokens before the first answer are exactly what generation feeds for the first question
    first = tokenized[0]
    start = next(i for i, label in enumerate(first["labels"]) if label != IGNORE)
    assert first["input_ids"][:start] == encode_prompt(tokenizer, template.chat(messages[:2 if system else 1]))
    # Qwen3 writes earlier answers without the thinking block its prompt ends with: one example per answer
    assert (len(tokenized), report.counts["split per answer"]) == ((3, 1) if family == "qwen3" else (1, 0))


def test_a_template_that_ends_answers_with_no_special_token_is_one_line():
    tokenizer = modeling.load_tokenizer(tiny.CHAT_MODEL_ID)
    tokenizer.chat_template = (TEMPLATES / "solar.jinja").read_text(encoding="utf-8")  # SOLAR-10.7B-Instruct's
    with pytest.raises(UserError, match="writes no special token after an answer .* use --template=koalpaca"):
        load_template("auto", tokenizer)
    assert load_template("koalpaca", tokenizer).name == "koalpaca"


def test_auto_is_koalpaca_for_a_tokenizer_without_a_chat_template(tiny_tokenizer):
    template = load_template("auto", tiny_tokenizer)
    assert (template.name, template.end_of_turn) == ("koalpaca", "<|endoftext|>")
    chat = modeling.load_tokenizer(tiny.CHAT_MODEL_ID)
    assert chat.eos_token == "<|im_end|>"  # <|endoftext|> is its pad, not its end: no override for chat tokenizers
    with pytest.raises(UserError, match="the tokenizer has no chat template"):
        load_template("chat_template", tiny_tokenizer)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_messages_and_sharegpt_rows_load_and_bad_ones_are_skipped_with_reasons(tmp_path):
    template = load_template("auto", modeling.load_tokenizer(tiny.CHAT_MODEL_ID))
    good = [SYSTEM] + TURNS[:2]
    sharegpt = [{"from": "system", "value": "친절하게."}, {"from": "human", "value": "안녕?"},
                {"from": "gpt", "value": "안녕하세요!"}, {"from": "human", "value": "이름이 뭐예요?"},
                {"from": "gpt", "value": "도우미입니다."}]
    rows = [{"messages": good}, {"conversations": sharegpt}, {"messages": good},  # the third repeats the first
            {"messages": [{"role": "robot", "content": "삐"}, {"role": "assistant", "content": "네"}]},
            {"messages": [TURNS[0], TURNS[2], TURNS[1]]},
            {"messages": [TURNS[0], {"role": "assistant", "content": "  "}]},
            {"messages": TURNS[:3]},
            {"messages": [TURNS[0], TURNS[1], SYSTEM, TURNS[2], TURNS[3]]},
            {"conversations": "not a list"}, {"messages": []}, {"messages": {"role": "user"}},
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "안녕?"}]},  # OpenAI's text parts
                          {"role": "assistant", "content": [{"type": "text", "text": "안녕하세요."}]}]},
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                          TURNS[1]]},
            # the same faults in ShareGPT's form
            {"conversations": [{"from": "bot", "value": "삐"}, {"from": "gpt", "value": "네"}]},
            {"conversations": [{"from": "human", "value": "안녕?"}, {"from": "human", "value": "거기요?"},
                               {"from": "gpt", "value": "네."}]},
            {"conversations": [{"from": "human", "value": "안녕?"}, {"from": "gpt", "value": " "}]},
            {"conversations": sharegpt[1:4]}]
    loaded, report = data.load_rows(write_jsonl(tmp_path / "chat.jsonl", rows), data.Columns(), template, 20_000)
    assert [r["messages"][1]["content"] for r in loaded] == ["한국의 수도는 어디인가요?", "안녕?", "안녕하세요."]
    assert loaded[1]["messages"][0] == {"role": "system", "content": "친절하게."}
    assert dict(report.reasons) == {
        "exact duplicate of an earlier row": 1,
        "unknown role 'robot' (use system, user, assistant; ShareGPT: human, gpt, system)": 1,
        "unknown role 'bot' (use system, user, assistant; ShareGPT: human, gpt, system)": 1,
        "two user turns in a row": 2, "an empty turn": 2, "ends on a user turn (nothing to learn from it)": 2,
        "a system message after the first turn": 1,
        "a conversation that is text, not a list of turns (in a CSV cell? write conversations as JSONL)": 1,
        "an empty conversation": 1, "a conversation that is not a list of turns": 1,
        "a turn whose content is not text (or OpenAI text parts)": 1}
    recipe.render(loaded, template, report)  # what the rows hold is counted as they are rendered
    assert (report.counts["conversations"], report.counts["multi-turn"], report.counts["with a system message"],
            report.counts["answers"]) == (3, 1, 2, 4)
    assert "conversations: 3 (1 with several answers, 2 with a system message); answers: 4" in report.lines()


def test_conversations_load_from_parquet_too(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    template = load_template("auto", modeling.load_tokenizer(tiny.CHAT_MODEL_ID))
    pq.write_table(pa.Table.from_pylist([{"messages": TURNS}, {"messages": [SYSTEM] + TURNS[:2]}]), tmp_path / "c.parquet")
    loaded, report = data.load_rows(str(tmp_path / "c.parquet"), data.Columns(), template, 20_000)
    recipe.render(loaded, template, report)
    assert len(loaded) == 2 and report.counts["answers"] == 4


def test_a_conversation_over_max_len_is_skipped_whole_even_when_trained_as_one_example_per_answer():
    """Qwen3's template trains a conversation of three answers as three examples; only the last one, which holds
    the whole conversation, is over the limit: the conversation is skipped whole and counted once, and what the
    kept rows hold no longer counts it."""
    tokenizer = family_tokenizer("qwen3")
    template = load_template("auto", tokenizer)
    long = TURNS[:4] + [TURNS[4], {"role": "assistant", "content": "아주 긴 대답 " * 200}]
    rows = rows_of(long) + rows_of(TURNS[:2])
    report = data.SkipReport(read=2)
    tokenized = recipe.tokenize(recipe.render(rows, template, report), tokenizer, 400, False, report)
    assert len(tokenized) == 1  # the short conversation's one example; none of the long one's three
    assert dict(report.reasons) == {"longer than MAX_LEN (400 tokens)": 1} and report.kept == 1
    assert (report.counts["conversations"], report.counts["answers"], report.counts["split per answer"]) == (1, 1, 0)


def test_the_eval_split_never_shares_a_prompt_with_training(tiny_tokenizer, koalpaca_template):
    # 30 questions, each answered three ways: a row-level split would put most questions on both sides
    rows = [{"instruction": f"질문 {q}번은 무엇인가요?", "input": "", "output": f"답 {q}-{a}", "text": "", "messages": []}
            for q in range(30) for a in range(3)]
    report = data.SkipReport()
    tokenized = recipe.tokenize(recipe.render(rows, koalpaca_template, report), tiny_tokenizer, 256, False, report)
    train, held_out = recipe.split(tokenized, 0.2, seed=1, report=report)
    assert len(train) + len(held_out) == 90 and len(held_out) >= 18 and len(held_out) % 3 == 0
    assert report.counts["eval prompts also trained on"] == 0
    for train_on_prompt in (False, True):  # whatever is trained on, the count sees prompts, not labels:
        fresh = data.SkipReport()
        again = recipe.tokenize(recipe.render(rows, koalpaca_template, fresh), tiny_tokenizer, 256, train_on_prompt,
                                fresh)
        recipe.split(again, 0.2, seed=1, report=fresh)  # none in the split by prompt (labels on every token too)
        assert fresh.counts["eval prompts also trained on"] == 0
        every_third = [i for i in range(90) if i % 3 == 0]  # a split by rows: one answer of each question held out
        assert recipe.overlap(again.select(sorted(set(range(90)) - set(every_third))), again.select(every_third)) == 30
    questions = [{tiny_tokenizer.decode(r["input_ids"]).split("### 답변:")[0] for r in part} for part in (train, held_out)]
    assert len(questions[0]) + len(questions[1]) == 30 and not questions[0] & questions[1]
    assert recipe.split(tokenized, 0.2, seed=1)[1]["input_ids"] == held_out["input_ids"]  # the seed decides


def test_the_tiny_chat_model_trains_through_its_chat_template(tmp_path):
    tokenizer = modeling.load_tokenizer(tiny.CHAT_MODEL_ID)
    template = load_template("auto", tokenizer)
    prepared = recipe.prepare(str(tiny.CHAT_DATA_FILE), tokenizer, template, max_chars=20_000, max_len=512)
    assert prepared.report.counts["conversations"] == prepared.report.kept >= 60
    assert prepared.report.counts["with a system message"] >= 10
    row = prepared.train[0]
    text = tokenizer.decode(row["input_ids"])
    assert text.startswith("<|im_start|>") and text.count("<|im_end|>") >= 2
    assert row["labels"][-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_a_prompt_with_many_rows_never_swallows_the_eval_split():
    from datasets import Dataset

    rows = Dataset.from_dict({"input_ids": [[1, 2]] * 1000, "labels": [[1, 2]] * 1000, "prompt_len": [1] * 1000,
                              "prompt_key": ["a"] * 999 + ["b"]})
    for seed in range(4):
        train, held_out = recipe.split(rows, 0.01, seed)
        assert len(train) == 999 and len(held_out) == 1


def test_columns_filled_with_nothing_by_a_shared_schema_are_not_conversations(koalpaca_template):
    assert data.validate_row({"instruction": "질문", "output": "답", "messages": None}, data.Columns(),
                             koalpaca_template, 20_000)["instruction"] == "질문"
    from kochat import conversations

    turns = [{"role": None, "content": None, "from": "human", "value": "안녕?"},
             {"role": None, "content": None, "from": "gpt", "value": "안녕하세요."}]
    assert conversations.parse(turns) == [{"role": "user", "content": "안녕?"},
                                          {"role": "assistant", "content": "안녕하세요."}]
