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
    ids = torch.randint(3, 300, (2, 7))
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
    assert torch.allclose(after, before, atol=1e-5)
    assert handed_on == [(2, 4, 7, 32)] * 2  # the prompt, in each of the 2 layers
    # each new token: batch 2, the 2 key/value heads, each with its 2 query heads as rows, the cache unwidened
    assert len(packed) == 5 * 2 and all(q == (2, 2, 2, 32) and k[1] == 2 for q, k in packed)  # 5 tokens, 2 layers


def test_gen_switches_where_it_compiles_and_answers_as_before(monkeypatch):
    model, tokenizer = qwen3(), modeling.load_tokenizer(tiny.CHAT_MODEL_ID)
    template = load_template("auto", tokenizer)
    before = [a.text for a in gen(model, tokenizer, template, QUESTIONS, max_new_tokens=24, fast=True)]
    assert model.config._attn_implementation == "sdpa"  # not where it does not compile (this CPU)
    monkeypatch.setattr(generation, "compiles", lambda core: True)  # as on a GPU; captured, not lowered
    model.generation_config.compile_config = CompileConfig(backend="aot_eager", fullgraph=True)
    after = [a.text for a in gen(model, tokenizer, template, QUESTIONS, max_new_tokens=24, fast=True)]
    assert after == before and all(before)
    assert model.config._attn_implementation == decode_attention.NAME


def test_models_without_grouped_heads_keep_sdpa(tiny_tokenizer):
    neox = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False)
    assert not decode_attention.use_for_decoding(neox)
    assert neox.config._attn_implementation == "sdpa"
