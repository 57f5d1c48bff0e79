"""The generative report's pages: a self-contained HTML page with the answers side by side (nothing loaded
from the internet), and a Markdown page with the figures per model and every answer below its question."""
from __future__ import annotations

import html
import re
from pathlib import Path

FIGURES = (("answers", "answers", "{:.0f}"), ("ended", "ended with end of text", "{:.0%}"),
           ("mean_chars", "mean length (characters)", "{:.0f}"), ("mean_tokens", "mean length (tokens)", "{:.1f}"),
           ("repeated_4gram_rate", "repeated 4-grams", "{:.1%}"), ("hangul_share", "Hangul share", "{:.1%}"),
           ("tokens_per_s", "tokens/s", "{:.1f}"), ("judge_mean", "judge score (1-10)", "{:.2f}"))


def figures_markdown(doc: dict) -> str:
    models = list(doc["figures"])
    lines = ["| figure | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for name, label, fmt in FIGURES:
        if any(name in doc["figures"][m] for m in models):
            cells = [fmt.format(doc["figures"][m][name]) if name in doc["figures"][m] else "" for m in models]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(doc: dict) -> str:
    """The figures per model, then each question with every model's answer, as the HTML page shows them. Inputs and
    answers are indented code blocks (shown as written, whatever Markdown they hold); the question is escaped."""
    head = [f"# {escaped(Path(doc['run']).name)}: answers to {escaped(Path(doc['questions']).name)}", "",
            f"{len(doc['items'])} questions, same settings for every model: " +
            ", ".join(f"{k}={v}" for k, v in doc["settings"].items()), "", ""]
    body = []
    for item in doc["items"]:
        body += ["", f"## {escaped(str(item['id']))}. {escaped(' '.join(item['question'].split()))}"]
        if item["input"]:
            body += ["", *(f"    {line}" for line in item["input"].splitlines())]
        for m, a in item["answers"].items():
            body += ["", f"**{escaped(m)}** ({meta(a)})", "", *(f"    {line}" for line in shown(a["text"]).splitlines())]
    return "\n".join(head) + figures_markdown(doc) + "\n".join(body) + "\n"


def escaped(text: str) -> str:
    """Text that Markdown shows as written: its punctuation that could mark up escaped with a backslash."""
    return re.sub(r"([\\`*_{}\[\]<>#|~!&$])", r"\\\1", text)


def shown(answer: str) -> str:
    return answer if answer.strip() else "(no answer)"


def meta(answer: dict, cut: str = "cut at the limit") -> str:
    """An answer's length, whether the token limit cut it, and its judge score: "12 tokens, cut at the limit"."""
    judged = (answer.get("judge") or {}).get("score")
    return f"{answer['new_tokens']} tokens" + (f", {cut}" if answer["finish_reason"] != "stop" else "") + \
        (f", judge {judged}/10" if judged is not None else "")


STYLE = """body{font-family:"Noto Sans CJK KR","Malgun Gothic",sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:.4em .6em;vertical-align:top}
th{background:#f3f3f3}.answers td{width:45%;white-space:pre-wrap}.q{background:#fafafa;font-weight:600}
.meta{color:#777;font-size:.85em;display:block;margin-top:.4em}.cut{color:#b00}"""


def page(doc: dict) -> str:
    e = html.escape
    models = list(doc["figures"])
    rows = "".join(f"<tr><th>{e(label)}</th>" + "".join(
        f"<td>{e(fmt.format(doc['figures'][m][name])) if name in doc['figures'][m] else ''}</td>" for m in models)
        + "</tr>" for name, label, fmt in FIGURES if any(name in doc["figures"][m] for m in models))
    items = []
    for item in doc["items"]:
        question = e(item["question"]) + (f"<br><small>{e(item['input'])}</small>" if item["input"] else "")
        cells = []
        for m in models:
            a = item["answers"][m]
            cells.append(f"<td>{e(shown(a['text']))}<span class=meta>"
                         f"{meta(a, '<span class=cut>cut at the limit</span>')}</span></td>")
        items.append(f"<tr><td class=q colspan={len(models)}>{e(str(item['id']))}. {question}</td></tr>"
                     f"<tr>{''.join(cells)}</tr>")
    settings = ", ".join(f"{k}={v}" for k, v in doc["settings"].items())
    return (f"<!doctype html><html lang=ko><head><meta charset=utf-8><title>{e(Path(doc['run']).name)} answers</title>"
            f"<style>{STYLE}</style></head><body><h1>{e(Path(doc['run']).name)}: {e(Path(doc['questions']).name)}</h1>"
            f"<p>{len(doc['items'])} questions; every model with the same settings: {e(settings)}. "
            f"Base model {e(doc['base_model'])}.</p><table><tr><th>figure</th>"
            + "".join(f"<th>{e(m)}</th>" for m in models) + f"</tr>{rows}</table>"
            f"<table class=answers><tr>{''.join(f'<th>{e(m)}</th>' for m in models)}</tr>{''.join(items)}</table>"
            "</body></html>\n")


def write(doc: dict, out: Path) -> tuple[Path, Path, Path]:
    from ..runs import write_json, write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, doc)
    md, page_file = out.with_suffix(".md"), out.with_suffix(".html")
    write_text(md, markdown(doc))
    write_text(page_file, page(doc))
    return out, md, page_file
