"""`python finetune_ko.py --preset tiny_chat` end to end: a chat model trained through its own chat template on
multi-turn conversations, then answered by stock PEFT, by gen() and by the server, all through that template."""
import json

import pytest
import torch

from support import Served


@pytest.fixture(scope="module")
def tiny_chat_run(tmp_path_factory, run_script):
    work = tmp_path_factory.mktemp("work")
    result = run_script("finetune_ko.py", "--preset", "tiny_chat", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "outputs" / "tiny_chat", result


def test_the_run_trained_on_conversations_through_the_chat_template(tiny_chat_run):
    run, result = tiny_chat_run
    config = json.loads((run / "run_config.json").read_text(encoding="utf-8"))
    assert config["constants"]["TEMPLATE"] == "auto" and config["constants"]["LORA_TARGETS"] == "auto"
    assert config["lora_targets"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    report = config["data_report"]
    assert report["conversations"] == report["kept"] >= 60 and report["answers"] > report["conversations"]
    assert json.loads((run / "template.json").read_text(encoding="utf-8"))["name"] == "chat_template"
    assert "<|im_start|>" in (run / "chat_template.jinja").read_text(encoding="utf-8")
    assert json.loads((run / "tokenizer_config.json").read_text(encoding="utf-8"))["eos_token"] == "<|im_end|>"
    assert "[0] model tiny-qwen3-chat (qwen3)" in result.stdout and "template chat_template" in result.stdout
    assert "<|im_start|>assistant\n⟦" in result.stdout  # the trained-on tokens start right after the assistant header
    assert "0 eval prompts also in training" in result.stdout
    demo = [json.loads(line) for line in (run / "demo.jsonl").read_text(encoding="utf-8").splitlines()]
    assert demo and all(d["text"] for d in demo) and any(d["finish_reason"] == "stop" for d in demo)
    assert "base model's own chat template" in (run / "README.md").read_text(encoding="utf-8")


def test_stock_peft_loads_the_adapter_and_answers_like_gen(tiny_chat_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kochat import answering, tiny
    from kochat.generation import gen

    run, _ = tiny_chat_run
    tokenizer = AutoTokenizer.from_pretrained(run)  # the run folder's own, chat template included
    base = AutoModelForCausalLM.from_pretrained(tiny.ensure_built(tiny.CHAT_MODEL_ID), dtype=torch.float32)
    plain = PeftModel.from_pretrained(base, str(run)).eval()
    loaded = answering.load_for_answering(str(run), four_bit=False)
    conversation = [{"role": "system", "content": "짧게 답하세요."}, {"role": "user", "content": "한글날은 언제예요?"}]
    ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    out = plain.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False,
                         eos_token_id=end, pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
    expected = tokenizer.decode(out[: out.index(end)] if end in out else out, skip_special_tokens=True).strip()
    assert expected and gen(loaded.model, loaded.tokenizer, loaded.run.template, conversation,
                            max_new_tokens=24)[0].text == expected


def test_the_server_answers_messages_through_the_chat_template(tiny_chat_run):
    from kochat.tokenization import encode_prompt

    run, _ = tiny_chat_run
    served = Served(run, keys=[])
    try:
        messages = [{"role": "user", "content": "서울에서 부산까지 KTX로 얼마나 걸려요?"},
                    {"role": "assistant", "content": "약 2시간 30분 걸립니다."}, {"role": "user", "content": "그럼 비행기는요?"}]
        reply = served.client().chat.completions.create(model="tiny", messages=messages, temperature=0, max_tokens=24)
        assert reply.choices[0].message.content == served.greedy(messages, max_tokens=24).text
        prompt = served.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert reply.usage.prompt_tokens == len(encode_prompt(served.tokenizer, prompt))
    finally:
        served.stop()


def test_a_chat_template_run_exports_merged_and_int8_and_answers_through_its_template(tiny_chat_run, run_script,
                                                                                      tmp_path):
    """export_ko.py on a Qwen3 run (the other tests of it use GPT-NeoX's): the merged folder keeps the chat
    template (for vLLM and chat_ko.py) and answers as the adapter does; the int8 folder answers through it too,
    in gen() and from the server."""
    from kochat import answering
    from kochat.generation import gen

    run, _ = tiny_chat_run
    conversation = [{"role": "system", "content": "짧게 답하세요."}, {"role": "user", "content": "한글날은 언제예요?"}]
    adapter = answering.load_for_answering(str(run), four_bit=False)
    expected = gen(adapter.model, adapter.tokenizer, adapter.run.template, conversation, max_new_tokens=16)[0].text
    for fmt in ("merged", "int8"):
        out = tmp_path / f"tiny_chat-{fmt}"
        result = run_script("export_ko.py", f"--adapter={run}", f"--format={fmt}", f"--out={out}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "<|im_start|>" in (out / "chat_template.jinja").read_text(encoding="utf-8")
        loaded = answering.load_for_answering(str(out))
        assert loaded.run.template.name == "chat_template"
        answer = gen(loaded.model, loaded.tokenizer, loaded.run.template, conversation, max_new_tokens=16)[0].text
        assert answer == expected if fmt == "merged" else answer
    served = Served(out, keys=[])  # the int8 folder served: the OpenAI endpoint answers through the same template
    try:
        reply = served.client().chat.completions.create(model="tiny", messages=conversation, temperature=0,
                                                        max_tokens=16)
        assert reply.choices[0].message.content == answer
    finally:
        served.stop()


def test_chat_ko_holds_a_conversation_through_the_chat_template(tiny_chat_run, run_script, tmp_path):
    """chat_ko.py on the run, a system message and two turns on its stdin: each answer is gen()'s on the whole
    conversation so far, rendered by the base's chat template (earlier answers included)."""
    from kochat import answering
    from kochat.generation import gen

    run, _ = tiny_chat_run
    system, first, second = "짧게 답하세요.", "한글날은 언제예요?", "그날은 쉬는 날인가요?"
    result = run_script("chat_ko.py", f"--adapter={run}", f"--system={system}", "--temperature=0",
                        "--max_new_tokens=16", cwd=tmp_path, stdin=f"{first}\n{second}\n/exit\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{run} (the tokenizer's chat template, with a system message)." in result.stdout
    answers = [part.split("\n")[0] for part in result.stdout.split("답변> ")[1:]]
    loaded = answering.load_for_answering(str(run))  # as chat_ko.py loads it (FOUR_BIT auto: a run's base in 4-bit)
    conversation = [{"role": "system", "content": system}, {"role": "user", "content": first}]
    expected = gen(loaded.model, loaded.tokenizer, loaded.run.template, conversation, max_new_tokens=16)[0].text
    conversation += [{"role": "assistant", "content": expected}, {"role": "user", "content": second}]
    follow_up = gen(loaded.model, loaded.tokenizer, loaded.run.template, conversation, max_new_tokens=16)[0].text
    assert answers == [expected, follow_up] and expected
