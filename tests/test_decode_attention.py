import pytest
import torch
from transformers import CompileConfig
from transformers.integrations import sdpa_attention

from kochat import decode_attention, generation, modeling, tiny
from kochat.generation import gen
from kochat.prompts import load_template

QUESTIONS = [[{"role": "user", "content": "연차는 며칠인가요?"}],
             [{"role": "system", "content": "짧게 답하세요."},
              {"role": "user", "content": "한국의 수도는?"}]]


def qwen3():  # the tiny_chat preset's model: 4 query heads, 2 key/value heads
    return modeling.load_model(tiny.CHAT_MODEL_ID, modeling.load_tokenizer(tiny.CHAT_MODEL_ID), four_bit=False).eval()


def greedy_logits(model, ids, mask):
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                         cache_implementation="static", output_logits=True, return_dict_in_generate=True)
    return torch.stack(out.logits)


def test_one_token_attends_the_cache_unwidened_with_the_same_logits(monkeypatch):
    model = qwen3()
    ids = torch.randint(3, 300, (2, 7), device=model.device)  # the device test run puts the model on a GPU
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding: the mask must still hide it
    with torch.inference_mode():
        before = greedy_logits(model, ids, mask)
        assert decode_attention.use_for_decoding(model)
        packed, handed_on = [], []
        sdpa, sdpa_forward = torch.nn.functional.scaled_dot_product_attention, sdpa_attention.sdpa_attention_forward

        def packing(query, key, *args, **kwargs):  # decode_attention's own call
            packed.append((tuple(query.shape), tuple(key.shape)))
            return sdpa(query, key, *args, **kwargs)

        def handing_on(module, query, *args, **kwargs):  # what it leaves to transformers' sdpa
            handed_on.append(tuple(query.shape))
            with monkeypatch.context() as inside:  # transformers' own call is not decode_attention's
                inside.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa)
                return sdpa_forward(module, query, *args, **kwargs)
        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", packing)
        monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", handing_on)
        after = greedy_logits(model, ids, mask)
    rounding = 1e-5 if before.dtype == torch.float32 else 0.05  # a GPU's bf16: two kernels' rounding apart
    assert torch.allclose(after, before, atol=rounding)
    assert handed_on == [(2, 4, 7, 32)] * 2  # the prompt, in each of the 2 layers
    # each new token: batch 2, the 2 key/value heads, each with its 2 query heads as rows, the cache unwidened
    assert len(packed) == 5 * 2 and all(q == (2, 2, 2, 32) and k[1] == 2 for q, k in packed)  # 5 tokens, 2 layers


def test_gen_switches_and_answers_as_the_default_path_compiled_or_not(monkeypatch):
    model, tokenizer = qwen3(), modeling.load_tokenizer(tiny.CHAT_MODEL_ID)
    template = load_template("auto", tokenizer)
    default = [a.text for a in gen(model, tokenizer, template, QUESTIONS, max_new_tokens=24)]
    assert model.config._attn_implementation == "sdpa"
    fast = [a.text for a in gen(model, tokenizer, template, QUESTIONS, max_new_tokens=24, fast=True)]
    assert model.config._attn_implementation == decode_attention.NAME  # a batch's pooled cache needs it
    monkeypatch.setattr(generation, "compiles", lambda core: True)  # as on a GPU; captured, not lowered
    model.generation_config.compile_config = CompileConfig(backend="aot_eager", fullgraph=True)
    compiled = [a.text for a in gen(model, tokenizer, template, QUESTIONS, max_new_tokens=24, fast=True)]
    assert compiled == fast == default and all(default)


GPU = torch.device("cuda") if torch.cuda.is_available() else None


@pytest.mark.parametrize("kernel, device, dtype", [
    ("products", torch.device("cpu"), torch.float32),
    pytest.param("flash", GPU, torch.bfloat16, marks=pytest.mark.skipif(
        GPU is None or not decode_attention.flash_runs(torch.zeros(1, 1, 1, 16, device=GPU, dtype=torch.bfloat16)),
        reason="FlashAttention's kernel needs an NVIDIA GPU of compute capability 8.0 or more"))])
@pytest.mark.parametrize("heads, kv_heads, dim, slots, rows", [
    (8, 2, 16, 40, [(0, 7), (9, 19), (19, 33)]),  # each row's first and one-past-last written slot: a gap, a tail
    (32, 8, 128, 1056, [(0, 300), (500, 1056)])],  # Qwen3-8B's heads, a pool of many key blocks, a row at its end
    ids=["small", "long"])
def test_a_pooled_step_attends_each_rows_own_slots_as_eager_attention_does(kernel, device, dtype, heads, kv_heads,
                                                                           dim, slots, rows):
    from transformers.integrations.sdpa_attention import repeat_kv
    batch = len(rows)
    query = torch.randn(batch, heads, 1, dim, device=device, dtype=dtype)
    keys, values = (torch.randn(kv_heads, slots, dim, device=device, dtype=dtype) for _ in range(2))
    written = torch.zeros(batch, slots, dtype=torch.bool, device=device)
    for row, (first, end) in enumerate(rows):
        written[row, first:end] = True
    assert decode_attention.flash_runs(query) == (kernel == "flash")  # pooled() takes this kernel here
    out = decode_attention.pooled(query, keys, values, written, dim ** -0.5)
    assert out.shape == (batch, 1, heads, dim)
    for row, (first, end) in enumerate(rows):  # each row alone, its own keys widened to every query head
        k, v = (repeat_kv(t[None, :, first:end].float(), heads // kv_heads) for t in (keys, values))
        alone = torch.nn.functional.scaled_dot_product_attention(query[row:row + 1].float(), k, v)
        assert torch.allclose(out[row].float(), alone.transpose(1, 2)[0], atol=1e-5 if dtype == torch.float32 else 2e-2)


def test_a_model_without_grouped_heads_switches_with_its_other_attention_left_to_sdpa(tiny_tokenizer):
    neox = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval()
    ids = torch.randint(3, 300, (2, 7), device=neox.device)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.inference_mode():
        before = greedy_logits(neox, ids, mask)
        assert decode_attention.use_for_decoding(neox) and decode_attention.use_for_decoding(neox)  # once
        after = greedy_logits(neox, ids, mask)
    assert neox.config._attn_implementation == decode_attention.NAME
    assert torch.equal(after, before)  # a static cache's steps and the prompt: transformers' sdpa, as before
