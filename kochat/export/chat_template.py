"""A run's Template (the KoAlpaca form, prompts/*.json) as a Jinja chat template, for the engines that render
chats themselves: vLLM (`vllm serve FOLDER --chat-template FOLDER/template.jinja`), llama.cpp and
llama-cpp-python (written into the GGUF as tokenizer.chat_template). It renders a conversation exactly as
`Template.chat` does; a tokenizer's own chat template (a ChatTemplate run) is already one and travels with the
tokenizer. Saved beside the model as FILE, not as chat_template.jinja, which transformers would load into the
tokenizer, where kochat reads the end of text from the template instead (modeling.load_tokenizer).
"""
from __future__ import annotations

import json

from ..prompts import TURN_SEPARATOR, Template

FILE = "template.jinja"


def literal(text: str) -> str:
    """A Jinja string literal (JSON's escapes are Jinja's)."""
    return json.dumps(text, ensure_ascii=False)


def jinja_template(template: Template) -> str:
    """Template.render in Jinja: the system messages' text joined by line breaks, then each question in the
    prompt form and each answer after it ended by the end of text, turns apart by TURN_SEPARATOR, every message
    stripped; an assistant message with no question before it is left out. A question's prompt already ends
    with the answer marker, so add_generation_prompt changes nothing (as in Template.render)."""
    prefix, suffix, before, after = template.pieces()
    return "".join([
        "{{- ", literal(template.begin), " -}}",
        '{%- set ns = namespace(system="", started=false, asked=false) -%}',
        '{%- for m in messages if m["role"] == "system" -%}',
        '{%- set ns.system = ns.system + ("\\n" if not loop.first else "") + (m["content"] | trim) -%}',
        "{%- endfor -%}",
        "{%- if ns.system -%}{{ ns.system + ", literal(TURN_SEPARATOR), " }}{%- endif -%}",
        "{%- for m in messages -%}",
        '{%- if m["role"] == "user" -%}',
        "{%- if ns.started -%}{{ ", literal(TURN_SEPARATOR), " }}{%- endif -%}",
        "{{ ", literal(prefix), ' + (m["content"] | trim) + ', literal(suffix), " }}",
        "{%- set ns.started = true -%}{%- set ns.asked = true -%}",
        '{%- elif m["role"] == "assistant" and ns.asked -%}',
        "{{ ", literal(before), ' + (m["content"] | trim) + ', literal(after + template.end_of_turn), " }}",
        "{%- set ns.asked = false -%}",
        "{%- endif -%}",
        "{%- endfor -%}",
    ])
