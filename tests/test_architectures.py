"""Each architecture kochat names (Gemma 3 also as the vision-language model gemma-3-12b-pt loads as), as a tiny
random model through the project's own paths on the CPU: the 4-bit loader, LoRA "auto" (the language model's
layers only), packed rows (their loss equals the rows run one by one), the chunked loss, gen() (greedy tokens equal
generate()'s, fast mode equal to the default, with its 8-bit cache too), and partial checkpointing."""
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from kochat import modeling, packing, tiny
from kochat.generation import gen
from kochat.loss import chunked_loss
from kochat.prompts import load_template
from kochat.tokenization import IGNORE, encode_prompt

SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=512, tie_word_embeddings=False)
ARCHITECTURES = {  # model_type -> what differs from SMALL
    "llama": {}, "qwen2": {}, "qwen3": {}, "exaone4": {"sliding_window": 16, "sliding_window_pattern": 2},
    "gemma2": {"sliding_window": 16, "query_pre_attn_scalar": 16},
    "gemma3_text": {"sliding_window": 16, "query_pre_attn_scalar": 16},
    "gemma3": {"sliding_window": 16, "query_pre_attn_scalar": 16},  # as gemma-3-12b-pt loads: a vision tower beside
}
# gemma3's vision tower, small (its language model's sizes are its text_config's)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
              patch_size=14, vision_use_head=False)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def tiny_model(request, tmp_path_factory):
    """(folder, tokenizer): a random 2-layer model of the architecture with the tiny chat tokenizer."""
    tokenizer = modeling.load_tokenizer(tiny.CHAT_MODEL_ID)
    sizes = dict(vocab_size=2048, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                 bos_token_id=tokenizer.pad_token_id, **{**SMALL, **ARCHITECTURES[request.param]})
    if request.param == "gemma3":
        config = AutoConfig.for_model("gemma3", text_config=sizes, vision_config=VISION, mm_tokens_per_image=4,
                                      tie_word_embeddings=False)
    else:
        config = AutoConfig.for_model(request.param, **sizes)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder), modeling.load_tokenizer(str(folder))


def test_lora_auto_adapts_every_attention_and_mlp_layer_of_the_language_model(tiny_model):
    """Each decoder layer's seven linear layers, and nothing else (Gemma 3's vision tower has linear layers too)."""
    from peft.tuners.lora import LoraLayer

    folder, tokenizer = tiny_model
    model = modeling.load_model(folder, tokenizer, four_bit=False)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=modeling.lora_targets(model.config, "auto")))
    language = modeling.language_layers(model)
    adapted = [[name for name, m in layer.named_modules() if isinstance(m, LoraLayer)] for layer in language]
    assert len(language) == 2 and [sorted(name.rsplit(".", 1)[-1] for name in names) for names in adapted] == [
        sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])] * 2
    assert sum(isinstance(m, LoraLayer) for m in model.modules()) == 7 * len(language)


def test_packed_rows_in_4bit_have_the_loss_of_the_rows_alone_and_the_chunked_loss_is_the_same(tiny_model):
    folder, tokenizer = tiny_model
    model = modeling.load_model(folder, tokenizer, four_bit=True, trainable=True)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=modeling.lora_targets(model.config, "auto"),
                                             init_lora_weights=False)).eval()
    torch.manual_seed(1)
    rows = [torch.randint(10, 1900, (n,)).tolist() for n in (20, 33, 11)]
    examples = [{"input_ids": ids, "labels": [IGNORE] * 5 + ids[5:]} for ids in rows]
    from datasets import Dataset

    packed = packing.pack_rows(Dataset.from_list(examples), 80)
    batch = packing.PackedCollator(tokenizer.pad_token_id, 80)(list(packed))
    with torch.no_grad():
        packed_loss = model(**batch, use_cache=False).loss
        total = count = 0
        for ex in examples:
            labels = torch.tensor([ex["labels"]])
            loss = model(input_ids=torch.tensor([ex["input_ids"]]), labels=labels, use_cache=False).loss
            n = int((labels[:, 1:] != IGNORE).sum())
            total, count = total + loss * n, count + n
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        ours = chunked_loss(model, inputs, batch["labels"], chunk=16)
    assert torch.allclose(packed_loss, total / count, rtol=1e-4)
    assert torch.allclose(ours, packed_loss, rtol=1e-4)


def test_gen_gives_generates_greedy_tokens_and_fast_mode_the_same(tiny_model):
    folder, tokenizer = tiny_model
    template = load_template("auto", tokenizer)  # the tiny chat tokenizer's ChatML
    model = modeling.load_model(folder, tokenizer, four_bit=False).eval()
    conversation = [{"role": "user", "content": "한국의 수도는 어디인가요?"}]
    ids = torch.tensor([encode_prompt(tokenizer, template.chat(conversation))])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, min_new_tokens=12,
                         do_sample=False, pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
    default = gen(model, tokenizer, template, conversation, max_new_tokens=12, min_new_tokens=12)[0]
    fast = gen(model, tokenizer, template, conversation, max_new_tokens=12, min_new_tokens=12, fast=True)[0]
    assert default.text == tokenizer.decode(out, skip_special_tokens=True).strip() == fast.text
    # the 8-bit cache (its sliding-window layers, where the model has them, stay in the model's dtype)
    eight = gen(model, tokenizer, template, conversation, max_new_tokens=12, min_new_tokens=12, fast=True,
                cache_8bit=True)[0]
    assert eight.text == fast.text


def test_checkpointing_a_share_of_layers_keeps_the_gradients_and_compiled_layers_switch_off(tiny_model):
    """As finetune_ko.py prepares each architecture (4-bit, kbit preparation, LoRA auto): checkpointing none, half
    or all of the decoder layers gives the same gradients, and the compiled layers are switched off for answering."""
    from peft import prepare_model_for_kbit_training

    folder, tokenizer = tiny_model
    ids = torch.randint(10, 1900, (1, 24), generator=torch.Generator().manual_seed(2))
    grads = {}
    for share in (0.0, 0.5, 1.0):
        torch.manual_seed(0)  # the same LoRA weights each time (init_lora_weights=False: B not zero, A gets gradients)
        model = modeling.load_model(folder, tokenizer, four_bit=True, trainable=True)
        model = prepare_model_for_kbit_training(model, gradient_checkpointing_kwargs={"use_reentrant": False})
        model = get_peft_model(model, LoraConfig(r=4, target_modules=modeling.lora_targets(model.config, "auto"),
                                                 init_lora_weights=False))
        assert modeling.checkpoint_layers(model, share) == round(2 * share)
        assert [layer.gradient_checkpointing for layer in modeling.language_layers(model)] == \
               [i < round(2 * share) for i in range(2)]
        model.train()
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        grads[share] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert grads[0.0].abs().sum() > 0
    assert torch.allclose(grads[0.0], grads[0.5], atol=1e-6) and torch.allclose(grads[0.0], grads[1.0], atol=1e-6)
    modeling.compile_layers(model)  # compiles lazily, at the first call: nothing runs here
    assert all(layer._compiled_call_impl is not None for layer in modeling.language_layers(model))
    modeling.compile_layers(model, on=False)
    assert all(layer._compiled_call_impl is None for layer in modeling.language_layers(model))
