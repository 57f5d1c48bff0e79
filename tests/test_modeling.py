import json

import pytest
import torch

from kochat import modeling, tiny
from kochat.errors import UserError
from kochat.known_models import KNOWN_MODELS
from support import POLYGLOT_12P8B_CONFIG, needs_shared_data


def test_polyglot_end_of_text_is_resolved_by_string_not_by_its_files(polyglot_tokenizer):
    # its tokenizer files say eos = <eos> (id 1); the released model ends text with <|endoftext|> (id 2)
    assert polyglot_tokenizer.eos_token == "<|endoftext|>" and polyglot_tokenizer.eos_token_id == 2
    assert polyglot_tokenizer.pad_token_id == 0


def test_tiny_tokenizer_has_the_same_misleading_layout_and_the_same_resolution(tiny_tokenizer):
    saved = json.loads((tiny.ensure_built() / "tokenizer_config.json").read_text())
    assert saved["eos_token"] == "<eos>"
    assert tiny_tokenizer.eos_token_id == 2 and tiny_tokenizer.pad_token_id == 0


def test_tiny_model_is_built_once(tiny_tokenizer):
    folder = tiny.ensure_built()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert tiny.ensure_built() == folder and (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_load_model_in_4bit_nf4_with_double_quant(tiny_tokenizer):
    import bitsandbytes as bnb

    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=True)
    qkv = model.gpt_neox.layers[0].attention.query_key_value
    assert isinstance(qkv, bnb.nn.Linear4bit)
    assert qkv.weight.quant_state.quant_type == "nf4" and qkv.weight.quant_state.nested
    assert not isinstance(model.get_output_embeddings(), bnb.nn.Linear4bit)  # the head stays in 16/32-bit
    assert model.generation_config.eos_token_id == 2  # not the config's 0


def test_the_quantization_config_the_recipe_writes_out_is_the_loaders_default_and_is_used(tiny_tokenizer):
    from transformers import BitsAndBytesConfig

    written_out = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4",
                                     bnb_4bit_compute_dtype=modeling.compute_dtype())  # finetune_ko.py step 4
    assert written_out.to_dict() == modeling.nf4_config(modeling.compute_dtype()).to_dict()
    single = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_compute_dtype=torch.float32)
    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, quantization_config=single)
    state = model.gpt_neox.layers[0].attention.query_key_value.weight.quant_state
    assert state.quant_type == "fp4" and not state.nested


def test_lora_targets_the_model_lacks_are_one_line_naming_those_it_has():
    config = modeling.load_config(tiny.MODEL_ID)
    assert modeling.lora_targets(config, ["query_key_value"]) == ["query_key_value"]
    assert modeling.lora_targets(config, "attention.dense,dense_h_to_4h") == ["attention.dense", "dense_h_to_4h"]
    assert modeling.lora_targets(config, "all-linear") == "all-linear"
    with pytest.raises(UserError) as e:
        modeling.lora_targets(config, ["q_proj", "query_key_value"])
    assert str(e.value) == ("--lora_targets: gpt_neox has no linear layer named 'q_proj'; its linear layers are named "
                            "query_key_value, dense, dense_h_to_4h, dense_4h_to_h, lm_head (or pass auto or all-linear)")
    with pytest.raises(UserError, match="no linear layer named \\(none given\\)"):
        modeling.lora_targets(config, [])


def test_missing_model_folder_and_unreachable_hub_id_are_clear():
    with pytest.raises(UserError, match="model folder ./nowhere not found"):
        modeling.load_config("./nowhere")
    with pytest.raises(UserError) as e:
        modeling.load_config("EleutherAI/polyglot-ko-5.8b")
    assert "hf download EleutherAI/polyglot-ko-5.8b --local-dir /models/polyglot-ko-5.8b" in str(e.value)
    assert "HF_HUB_OFFLINE=1 is honoured" in str(e.value)
    assert modeling.load_config("EleutherAI/polyglot-ko-5.8b", use_known_table=True).hidden_size == 4096


def test_a_run_or_a_gguf_export_given_as_a_model_says_what_to_pass(tmp_path):
    """A new user's trial: --model_id=outputs/tiny_chat said only that config.json lacked a model_type."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match=f"{run} is a training run .*--adapter={run}.*--format=merged"):
        modeling.load_config(str(run))
    gguf = tmp_path / "gguf"
    gguf.mkdir()
    (gguf / "model-q4_k_m.gguf").write_bytes(b"GGUF")
    with pytest.raises(UserError, match="is a GGUF export, for llama.cpp and Ollama; pass the base model"):
        modeling.load_config(str(gguf))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_a_real_size_model_is_refused_on_a_cpu():
    config = modeling.load_config("EleutherAI/polyglot-ko-12.8b", use_known_table=True)
    with pytest.raises(UserError, match="12.9 B parameters and this machine has no CUDA GPU; run `--preset tiny`"):
        modeling.check_machine_can_run(config)
    with pytest.raises(UserError, match="no CUDA GPU; answer with it on a machine with a CUDA GPU; on a CPU, a run "
                                        "of the tiny preset answers"):
        modeling.check_machine_can_run(config, answering=True)
    modeling.check_machine_can_run(modeling.load_config(tiny.MODEL_ID))  # the tiny one is fine


@needs_shared_data
def test_known_12p8b_config_matches_the_real_one():
    real = json.loads((POLYGLOT_12P8B_CONFIG / "config.json").read_text())
    known = KNOWN_MODELS["EleutherAI/polyglot-ko-12.8b"].config
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
                "max_position_embeddings", "rotary_pct", "layer_norm_eps", "hidden_act", "tie_word_embeddings"):
        assert known[key] == real[key], key


def test_a_tokenizer_from_another_model_is_refused(polyglot_tokenizer):
    config = modeling.load_config(tiny.MODEL_ID)
    with pytest.raises(UserError, match="the tokenizer has 30,003 tokens but the model only 2,048 embedding rows"):
        modeling.check_tokenizer_fits(polyglot_tokenizer, config)
    modeling.check_tokenizer_fits(polyglot_tokenizer, modeling.load_config("EleutherAI/polyglot-ko-12.8b", True))


def test_a_damaged_adapter_is_one_line(tiny_tokenizer, tmp_path):
    """A new user's trial: an adapter file cut short ended in safetensors' traceback in chat and eval."""
    from peft import LoraConfig, get_peft_model

    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False)
    get_peft_model(model, LoraConfig(r=4, target_modules=["query_key_value"])).save_pretrained(tmp_path / "run")
    weights = tmp_path / "run" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(UserError, match="the adapter in .*run is damaged .*copy it again, or train again"):
        modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False, adapter=str(tmp_path / "run"))


def test_a_merged_16bit_model_answers_like_the_unmerged_adapter(tiny_tokenizer, koalpaca_template, tmp_path):
    from peft import LoraConfig, get_peft_model

    from kochat.generation import gen

    base = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False)
    torch.manual_seed(1)
    adapter = get_peft_model(base, LoraConfig(r=8, lora_alpha=32, target_modules=["query_key_value"],
                                              init_lora_weights=False, task_type="CAUSAL_LM"))  # non-zero B
    adapter.save_pretrained(tmp_path)
    unmerged = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False, adapter=str(tmp_path)).eval()
    merged = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False, adapter=str(tmp_path),
                                 merge=True).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    questions = ["한국의 수도는 어디인가요?", "하늘은 왜 파란가요?"]
    plain = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval()
    a = [x.text for x in gen(unmerged, tiny_tokenizer, koalpaca_template, questions, max_new_tokens=24)]
    assert [x.text for x in gen(merged, tiny_tokenizer, koalpaca_template, questions, max_new_tokens=24)] == a
    assert [x.text for x in gen(plain, tiny_tokenizer, koalpaca_template, questions, max_new_tokens=24)] != a


def test_merging_into_4bit_weights_is_refused(tiny_tokenizer):
    with pytest.raises(UserError, match="never 4-bit weights"):
        modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=True, adapter="x", merge=True)


def test_checkpointing_a_share_of_layers_keeps_the_gradients(tiny_tokenizer):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    batch = tiny_tokenizer(["### 질문: 한국의 수도는?\n\n### 답변: 서울입니다."], return_tensors="pt",
                           return_token_type_ids=False)
    grads = {}
    for share in (0.0, 0.5, 1.0):
        torch.manual_seed(0)
        model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=True, trainable=True)
        model = prepare_model_for_kbit_training(model, gradient_checkpointing_kwargs={"use_reentrant": False})
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query_key_value"]))
        torch.manual_seed(1)
        for name, p in model.named_parameters():  # lora_B starts at zero: give it values so lora_A gets gradients
            if "lora_B" in name:
                p.data.normal_()
        assert modeling.checkpoint_layers(model, share) == round(2 * share)
        assert [layer.gradient_checkpointing for layer in modeling.language_layers(model)] == \
               [i < round(2 * share) for i in range(2)]
        model.train()
        model(**batch, labels=batch["input_ids"], use_cache=False).loss.backward()
        grads[share] = torch.cat([p.grad.flatten() for n, p in model.named_parameters() if p.grad is not None])
    assert torch.allclose(grads[0.0], grads[0.5], atol=1e-6) and torch.allclose(grads[0.0], grads[1.0], atol=1e-6)
    with pytest.raises(UserError, match="between 0 and 1"):
        modeling.checkpoint_layers(model, 1.5)


def test_compiled_layers_are_switched_off_for_answering(tiny_tokenizer):
    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False)
    modeling.compile_layers(model)  # compiles lazily, at the first call: nothing runs here
    assert all(layer._compiled_call_impl is not None for layer in modeling.language_layers(model))
    modeling.compile_layers(model, on=False)
    assert all(layer._compiled_call_impl is None for layer in modeling.language_layers(model))


def test_compiled_4bit_layers_trace_without_graph_breaks_in_bf16(tiny_tokenizer, monkeypatch):
    # bitsandbytes casts a 4-bit layer's float32 bias (from prepare_model_for_kbit_training) to bf16 on its
    # first forward by assigning .data; torch.compile breaks the graph there. On the H200 that break left the
    # compiled layers without their memory savings (22.7 GiB instead of 19.6). compile_layers casts first.
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    monkeypatch.setattr(modeling, "compute_dtype", lambda: torch.bfloat16)  # the GPU's compute dtype, on the CPU
    ids = torch.randint(3, 100, (1, 32))

    def prepared():  # as finetune_ko.py steps 4-5
        model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=True, trainable=True, attention="sdpa")
        model = prepare_model_for_kbit_training(model, gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["query_key_value"]))

    def data_mutations(model):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            explained = torch._dynamo.explain(model)(input_ids=ids, labels=ids)
        return sum("mutate tensor data" in str(b.reason) for b in explained.break_reasons)

    assert data_mutations(prepared()) > 0  # what the first training step met before
    model = prepared()
    modeling.compile_layers(model)
    modeling.compile_layers(model, on=False)  # the casts stay; explain traces the plain layers
    assert data_mutations(model) == 0


def test_a_model_that_needs_its_own_code_is_one_line_and_never_asks(tmp_path):
    config = {"model_type": "exaone", "architectures": ["ExaoneForCausalLM"],
              "auto_map": {"AutoConfig": "configuration_exaone.ExaoneConfig"}}  # EXAONE 3.5's layout
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="needs its own Python code \\(trust_remote_code\\), which kochat does not run"):
        modeling.load_config(str(tmp_path))


def test_the_context_length_is_the_configs_positions_or_polyglots_2048():
    from transformers import PretrainedConfig

    config = modeling.load_config(tiny.MODEL_ID)
    assert modeling.context_length(config) == config.max_position_embeddings
    assert modeling.context_length(PretrainedConfig()) == 2048  # a config that does not say
