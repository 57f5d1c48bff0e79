"""kochat/one_row_attention.py: one row's new token attends its static cache through kochat's kernel. On the CPU:
which calls go to it, that decode_attention hands them over as they come and gives back what sdpa gives (the
kernel stood in for by its reference, itself checked against a softmax by hand), and that a kernel that failed its
check is one logged line; on an NVIDIA GPU with cuda-bindings (the device run): the kernel itself, against
PyTorch's attention, several splits, windows, inside a CUDA graph, and a model answering through it."""
import logging

import pytest
import torch

from kochat import decode_attention, dp4a_kernel, modeling, one_row_attention, tiny
from kochat.generation import gen

ON_GPU = pytest.mark.skipif(not torch.cuda.is_available() or not dp4a_kernel.installed(),
                            reason="the kernel runs on an NVIDIA GPU with cuda-bindings installed (the device run)")


def one_row(heads=8, kv_heads=2, slots=40, dim=32, dtype=torch.bfloat16, device="cpu", written=11):
    generator = torch.Generator(device).manual_seed(0)
    query = torch.randn(1, heads, 1, dim, generator=generator, device=device).to(dtype)
    key, value = (torch.randn(1, kv_heads, slots, dim, generator=generator, device=device).to(dtype)
                  for _ in range(2))
    mask = torch.zeros(1, 1, 1, slots, dtype=torch.bool, device=device)
    mask[..., :written] = True  # a static cache: the first slots written, the rest not yet
    return query, key, value, mask


def test_only_one_row_of_bf16_on_a_static_cache_fits():
    query, key, value, mask = one_row()
    assert one_row_attention.fits(query, key, value, mask, 0.0, {})
    two = [t.expand(2, *t.shape[1:]) for t in (query, key, value, mask)]
    refused = {
        "two rows": (*two, 0.0, {}),
        "a prompt of 3 tokens": (query.expand(1, 8, 3, 32), key, value, mask, 0.0, {}),
        "fp16": (query.half(), key.half(), value.half(), mask, 0.0, {}),
        "float32": (query.float(), key.float(), value.float(), mask, 0.0, {}),
        "head size 48": one_row(dim=48) + (0.0, {}),
        "heads not a multiple of kv heads": one_row(heads=6, kv_heads=4) + (0.0, {}),
        "a cache not contiguous": (query, key.transpose(1, 2).contiguous().transpose(1, 2), value, mask, 0.0, {}),
        "no mask": (query, key, value, None, 0.0, {}),
        "a float mask": (query, key, value, mask.to(torch.bfloat16), 0.0, {}),
        "a mask per head": (query, key, value, mask.expand(1, 8, 1, 40), 0.0, {}),
        "dropout": (query, key, value, mask, 0.1, {}),
        "a soft cap": (query, key, value, mask, 0.0, {"softcap": 50.0}),
        "sinks": (query, key, value, mask, 0.0, {"s_aux": torch.zeros(8)}),
    }
    assert [why for why, call in refused.items() if one_row_attention.fits(*call)] == []
    assert not one_row_attention.takes(query, key, value, mask, 0.0, {})  # on the CPU: never


def test_the_reference_is_a_softmax_over_the_written_slots_of_each_heads_own_cache():
    query, key, value, mask = one_row()
    mask[..., 3:6] = False  # a hole, as outside a sliding window
    out = one_row_attention.reference(query[0, :, 0], key[0], value[0], mask[0, 0, 0], 0.25)
    for head in range(8):
        kv = head // 4  # repeat_kv's order: 8 query heads, 2 key/value heads
        keys, values = key[0, kv].float()[mask[0, 0, 0]], value[0, kv].float()[mask[0, 0, 0]]
        weights = torch.softmax(keys @ query[0, head, 0].float() * 0.25, -1)
        assert torch.allclose(out[head].float(), weights @ values, atol=0.02)


def test_decode_attention_hands_one_row_over_and_gives_back_what_sdpa_gives(monkeypatch):
    query, key, value, mask = one_row()
    module = type("Attention", (), {"num_key_value_groups": 4})()
    expected, _ = decode_attention.attention(module, query, key, value, mask, scaling=0.25)
    handed = []
    monkeypatch.setattr(one_row_attention, "takes", lambda *args: True)
    monkeypatch.setattr(one_row_attention, "attend", lambda q, k, v, written, scale: handed.append(
        (q.shape, k.shape, written.tolist(), scale)) or one_row_attention.reference(q, k, v, written, scale))
    out, _ = decode_attention.attention(module, query, key, value, mask, scaling=0.25)
    assert handed == [((8, 32), (2, 40, 32), [True] * 11 + [False] * 29, 0.25)]
    assert out.shape == expected.shape == (1, 1, 8, 32)
    assert torch.allclose(out.float(), expected.float(), atol=0.02)


def test_a_kernel_that_fails_its_check_is_one_logged_line_and_the_model_attends_as_before(monkeypatch, caplog):
    """As a model first decodes fast (decode_attention.use_for_decoding), where the kernel applies: a kernel that
    fails its check is one line for the process, however often gen() switches, and takes() refuses it."""
    model = modeling.load_model(tiny.CHAT_MODEL_ID, modeling.load_tokenizer(tiny.CHAT_MODEL_ID), four_bit=False)
    monkeypatch.setattr(one_row_attention, "_CHECKED", {})
    monkeypatch.setattr(one_row_attention, "applies", lambda model: True)  # as on a GPU with cuda-bindings

    def no_compiler(dim):
        raise RuntimeError("NVRTC could not compile the kernels: no libnvrtc")
    monkeypatch.setattr(one_row_attention, "kernel_for", no_compiler)
    with caplog.at_level(logging.WARNING):
        assert decode_attention.use_for_decoding(model) and decode_attention.use_for_decoding(model)
    line = ("one row's attention stays on PyTorch's: kochat's kernel failed (RuntimeError: NVRTC could not compile "
            "the kernels: no libnvrtc)")
    assert [r.getMessage() for r in caplog.records if "kernel" in r.getMessage()] == [line]
    assert not one_row_attention.check(model)
    assert one_row_attention._CHECKED == {(32, model.device.index): line}  # takes() refuses: not ""


@ON_GPU
@pytest.mark.parametrize("dim", one_row_attention.DIMS)
def test_the_kernel_attends_as_pytorch_over_splits_windows_and_in_a_cuda_graph(dim):
    for heads, kv_heads in ((4, 4), (32, 8)):
        for slots, written in ((40, 40), (128, 1), (700, 513), (1300, 1300)):
            query, key, value, mask = one_row(heads, kv_heads, slots, dim, device="cuda", written=written)
            if slots > 600:
                mask[..., : slots // 3] = False  # a sliding window: the first splits not attended
            args = (query[0, :, 0], key[0], value[0], mask[0, 0, 0], dim ** -0.5)
            expected = one_row_attention.reference(*args)
            for _ in range(2):  # the atomic counts are back to zero after each launch
                got = one_row_attention.attend(*args)
                distance = (got.float() - expected.float()).norm() / expected.float().norm()
                assert distance < 0.01, (heads, kv_heads, slots, written, distance.item())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = one_row_attention.attend(*args)
    for written in (1300, 700, 2):  # the mask changed in place, as a static cache's is each token
        mask.zero_()
        mask[..., :written] = True
        graph.replay()
        expected = one_row_attention.reference(*args)
        assert (captured.float() - expected.float()).norm() / expected.float().norm() < 0.01


@ON_GPU
@pytest.mark.parametrize("model_id", ["tiny-gpt-neox", tiny.CHAT_MODEL_ID])
def test_a_model_answers_one_row_through_the_kernel_as_through_sdpa(model_id, monkeypatch):
    """The model's check passes, each layer's one-row attention goes to the kernel, and gen()'s compiled loop gives
    the answer sdpa's gives (a tiny model's wide margins between its top tokens)."""
    torch._dynamo.reset()  # compiled here with the kernel and without: the later tests' compiles start from none
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 64)
    tokenizer = modeling.load_tokenizer(model_id)
    model = modeling.load_model(model_id, tokenizer, four_bit=False).eval()
    assert model.dtype == torch.bfloat16 and one_row_attention.check(model)
    assert one_row_attention._CHECKED[(32, model.device.index)] == ""
    attended = []
    attend = one_row_attention.attend
    monkeypatch.setattr(one_row_attention, "attend", lambda *args: attended.append(1) or attend(*args))
    ours = [a.text for a in gen(model, tokenizer, None, ["한국의 수도는"], max_new_tokens=12, fast=True)]
    assert attended  # traced into the compiled step at least once a layer
    monkeypatch.setattr(one_row_attention, "takes", lambda *args: False)
    torch._dynamo.reset()
    sdpa = [a.text for a in gen(model, tokenizer, None, ["한국의 수도는"], max_new_tokens=12, fast=True)]
    torch._dynamo.reset()
    assert ours == sdpa
