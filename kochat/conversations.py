"""Conversations in training data, and what training makes of any row: pieces of text, trained or not.

Rows come as question/answer columns, as rendered text, or as conversations: OpenAI `messages`
({"role": "system" | "user" | "assistant", "content"}) or ShareGPT `conversations` ({"from": "system" |
"human" | "gpt", "value"}). A conversation is checked turn by turn; a bad one is skipped with its reason.

The mask is built, not searched. Each answer's span comes from two renders of the conversation's prefixes
with the run's template: the prompt for that answer (the conversation up to it, with the generation prompt)
and the conversation including it. The difference is the answer plus the template's end-of-turn token; what
the template writes after that token (a newline) is not trained on. Where a template renders an earlier answer
differently once more turns follow (Qwen3 drops the thinking block from earlier answers), the prefixes do not
line up with the whole conversation; such a conversation becomes one example per answer, each trained on its
last answer exactly as it will be prompted, and is counted.
"""
from __future__ import annotations

from .prompts import ROLES

COLUMNS = ("messages", "conversations")  # the columns a conversation is read from, OpenAI's and ShareGPT's
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}


def parse(turns) -> list[dict] | str:
    """A conversation's turns (OpenAI or ShareGPT form) as checked messages, or the reason it is skipped."""
    if isinstance(turns, str):
        return "a conversation that is text, not a list of turns (in a CSV cell? write conversations as JSONL)"
    if not isinstance(turns, list):
        return "a conversation that is not a list of turns"
    if not turns:
        return "an empty conversation"
    messages = []
    for turn in turns:
        if not isinstance(turn, dict):
            return "a turn that is not an object"
        if turn.get("role") is None and turn.get("from") is not None:  # ShareGPT
            role, content = SHAREGPT_ROLES.get(turn["from"], turn["from"]), turn.get("value")
        else:
            role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            return f"unknown role {role!r} (use {', '.join(ROLES)}; ShareGPT: human, gpt, system)"
        if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                             and isinstance(p.get("text"), str) for p in content):
            content = "\n".join(p["text"] for p in content)  # OpenAI's content parts, joined as the server joins them
        if not isinstance(content, str):
            return "a turn whose content is not text (or OpenAI text parts)"
        if not content.strip():
            return "an empty turn"
        messages.append({"role": role, "content": content.strip()})
    return check_order(messages)


def check_order(messages: list[dict]) -> list[dict] | str:
    """An optional system message first, then user and assistant turns in turn, ending with an answer."""
    body = messages[1:] if messages[0]["role"] == "system" else messages
    for i, m in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] == "system":
            return "a system message after the first turn"
        if m["role"] != expected:
            return "starts with an answer" if i == 0 else f"two {m['role']} turns in a row"
    if not body:
        return "a system message and no turns"
    if body[-1]["role"] != "assistant":
        return "ends on a user turn (nothing to learn from it)"
    return messages


def of_row(row: dict) -> list[dict]:
    """A validated row's conversation: its messages, or its question (and input) and answer as one turn."""
    if row.get("messages"):
        return row["messages"]
    return [{"role": "user", "content": row["instruction"], "context": row.get("input", "")},
            {"role": "assistant", "content": row["output"]}]


def examples(template, row: dict) -> tuple[list[list[tuple[str, bool]]], bool]:
    """The examples a validated row trains as, each a list of (text, trained) pieces, and whether a
    conversation had to become one example per answer (see the module doc)."""
    if row.get("text"):  # already rendered in the template's form
        return [template.rendered_row(row["text"])], False
    messages = of_row(row)
    whole = template.render(messages, add_generation_prompt=False)
    spans = []  # (answer start, answer end, the render they were measured in)
    for k, m in enumerate(messages):
        if m["role"] == "assistant":
            prompt = template.render(messages[:k], add_generation_prompt=True)
            upto = template.render(messages[:k + 1], add_generation_prompt=False)
            if not upto.startswith(prompt):
                raise ValueError("the template renders an answer's turn unlike the prompt it gives for it")
            end = upto.rfind(template.end_of_turn, len(prompt)) if template.end_of_turn else -1
            spans.append((len(prompt), end + len(template.end_of_turn) if end >= 0 else len(upto), upto))
    if all(whole.startswith(upto) for _, _, upto in spans):
        pieces, at = [], 0
        for start, end, _ in spans:
            pieces += [(whole[at:start], False), (whole[start:end], True)]
            at = end
        return [[p for p in pieces if p[0]]], False
    return [[p for p in ((upto[:start], False), (upto[start:end], True)) if p[0]] for start, end, upto in spans], True


def prompt_key(pieces: list[tuple[str, bool]]) -> str:
    """What identifies an example's prompt for the eval split: the text before its first trained piece
    (system message, first question and its input), whitespace-normalised."""
    first = pieces[0][0] if pieces and not pieces[0][1] else ""
    return " ".join(first.split())
