"""The KoAlpaca-form template as a Jinja chat template: the engines that render chats themselves (vLLM through
transformers' apply_chat_template, llama.cpp and llama-cpp-python from the GGUF's tokenizer.chat_template) get
the prompt Template.chat gives, token for token the form training saw."""
import gguf as gguf_package
import pytest

from kochat.export.chat_template import jinja_template

CONVERSATIONS = [
    [{"role": "user", "content": " 한국의 수도는 어디인가요? "}],
    [{"role": "system", "content": "친절하게 답하세요."}, {"role": "user", "content": "연차는 며칠인가요?"}],
    [{"role": "user", "content": "김치는?"}, {"role": "assistant", "content": " 발효 음식입니다.\n"},
     {"role": "user", "content": "어떻게 만드나요?"}],
    [{"role": "system", "content": " "}, {"role": "system", "content": "짧게."}, {"role": "assistant", "content": "앞선 대답"},
     {"role": "user", "content": "첫 질문"}, {"role": "user", "content": "둘째 질문"}],  # unanswered question kept
]


def test_transformers_renders_the_jinja_form_as_the_template_does(tiny_merged_template, tiny_merged):
    """Every template in prompts/, and one whose fixed text holds literal braces ({{ }} in str.format)."""
    from kochat import modeling
    from kochat.prompts import TEMPLATE_DIR, Template, load_template

    tokenizer = modeling.load_tokenizer(str(tiny_merged))
    braces = Template.from_dict({**Template.load("koalpaca").to_dict(), "prompt_no_input": 'JSON {{"a": 1}} {{% x %}} '
                                 "### 질문: {instruction}\n\n### 답변:"}, name="braces").for_tokenizer(tokenizer)
    templates = [load_template(p.stem, tokenizer) for p in sorted(TEMPLATE_DIR.glob("*.json"))] + [braces]
    assert len(templates) >= 3
    for template in templates:
        jinja = jinja_template(template)
        for conversation in CONVERSATIONS:
            assert tokenizer.apply_chat_template(conversation, chat_template=jinja, tokenize=False,
                                                 add_generation_prompt=True) == template.chat(conversation)


def test_the_gguf_carries_it_and_llama_cpp_python_renders_it_as_the_template_does(tiny_f16, tiny_merged_template):
    chat_format = pytest.importorskip("llama_cpp.llama_chat_format")
    stored = gguf_package.GGUFReader(tiny_f16).get_field("tokenizer.chat_template").contents()
    assert stored == jinja_template(tiny_merged_template)
    formatter = chat_format.Jinja2ChatFormatter(stored, eos_token="<|endoftext|>", bos_token="")
    for conversation in CONVERSATIONS:
        assert formatter(messages=conversation).prompt == tiny_merged_template.chat(conversation)
