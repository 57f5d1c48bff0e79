"""kochat.export.modelfile: the Ollama Modelfile's Go template renders, by Ollama's own rules (Go's text/template),
the prompt kochat's template renders, for the KoAlpaca form and a ChatML chat template; a template it cannot say
is one line."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kochat import modeling, tiny
from kochat.errors import UserError
from kochat.export import modelfile
from kochat.prompts import load_template

needs_go = pytest.mark.skipif(shutil.which("go") is None,
                              reason="Go not installed (Debian: apt-get install golang-go): Ollama's templates are Go's")

CONVERSATIONS = [
    [{"role": "user", "content": "한국의 수도는 어디인가요?"}],
    [{"role": "system", "content": "친절하게 답하세요."}, {"role": "user", "content": "연차는 며칠인가요?"}],
    [{"role": "user", "content": "김치는 무엇인가요?"}, {"role": "assistant", "content": "배추로 만든 발효 음식입니다."},
     {"role": "user", "content": "어떻게 만드나요?"}],
    [{"role": "system", "content": "짧게 답하세요."}, {"role": "user", "content": "첫 질문"},
     {"role": "assistant", "content": "첫 대답"}, {"role": "user", "content": "둘째 질문"},
     {"role": "assistant", "content": "둘째 대답"}, {"role": "user", "content": "셋째 질문"}],
]


def render_with_ollama_rules(template_text: str, conversations: list[list[dict]], tmp_path) -> list[str]:
    """Each conversation rendered by Go's text/template with the data Ollama gives a TEMPLATE (render_ollama.go)."""
    source = Path(__file__).with_name("render_ollama.go")
    binary = tmp_path / "render_ollama"
    subprocess.run(["go", "build", "-o", str(binary), str(source)], check=True, cwd=tmp_path,
                   env={**__import__("os").environ, "GOCACHE": str(tmp_path / "go-cache"), "GOFLAGS": "-mod=mod",
                        "GO111MODULE": "off"})
    jobs = [{"template": template_text, "messages": c} for c in conversations]
    done = subprocess.run([str(binary)], input=json.dumps(jobs), capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def modelfile_template_of(modelfile: Path) -> str:
    return modelfile.read_text(encoding="utf-8").split('TEMPLATE """', 1)[1].split('"""', 1)[0]


@needs_go
def test_the_modelfile_renders_the_prompt_of_the_koalpaca_template(tiny_f16, tiny_merged, tiny_merged_template,
                                                                     tmp_path):
    tokenizer = modeling.load_tokenizer(str(tiny_merged))
    written = modelfile.write_modelfile(tiny_f16, tiny_merged_template, tokenizer, tiny_f16.parent)
    text = written.read_text(encoding="utf-8")
    assert f"FROM ./{tiny_f16.name}\n" in text and 'PARAMETER stop "<|endoftext|>"' in text
    assert "PARAMETER num_ctx 1024" in text
    rendered = render_with_ollama_rules(modelfile_template_of(written), CONVERSATIONS, tmp_path)
    assert rendered == [tiny_merged_template.chat(c) for c in CONVERSATIONS]


@needs_go
def test_the_modelfile_renders_the_prompt_of_a_chatml_chat_template(tmp_path, tiny_f16):
    tokenizer = modeling.load_tokenizer(tiny.CHAT_MODEL_ID)
    template = load_template("auto", tokenizer)
    written = modelfile.write_modelfile(tiny_f16, template, tokenizer, tmp_path)
    assert f"FROM {tiny_f16.resolve()}\n" in written.read_text(encoding="utf-8")
    assert 'PARAMETER stop "<|im_end|>"' in written.read_text(encoding="utf-8")
    rendered = render_with_ollama_rules(modelfile_template_of(written), CONVERSATIONS, tmp_path)
    assert rendered == [template.chat(c) for c in CONVERSATIONS]


def test_a_chat_template_with_logic_beyond_fixed_markers_is_one_line():
    """Qwen2.5's kind: a default system message when the conversation has none."""
    tokenizer = modeling.load_tokenizer(tiny.CHAT_MODEL_ID)
    tokenizer.chat_template = ("{%- if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n기본 지시<|im_end|>\\n' }}"
                               "{%- endif %}" + tiny.CHAT_TEMPLATE)
    template = load_template("auto", tokenizer)
    with pytest.raises(UserError, match="cannot be written as an Ollama TEMPLATE"):
        modelfile.modelfile_template(template)
