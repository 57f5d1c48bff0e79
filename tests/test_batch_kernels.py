"""serve_ko.py's batch kernels where no GPU is needed: what applies where, and failures as one line (the moves
themselves run on the device: tests/e2e/test_export_ko.py)."""
import importlib.metadata
import importlib.util
from types import SimpleNamespace

import pytest
import torch

from kochat import batch_kernels
from kochat.errors import UserError


def exported(quantization: str, device: str = "cuda", layers=()):
    """What onto_batch_kernel reads of a loaded export, without loading one: its `layers`."""
    return SimpleNamespace(device=torch.device(device), dtype=torch.bfloat16, modules=lambda: list(layers),
                           config=SimpleNamespace(quantization_config=quantization))


def int8_layer():
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    layer = torch.nn.Linear(64, 32)
    quantize_(layer, Int8WeightOnlyConfig(set_inductor_config=False))
    return layer


def test_nothing_moves_on_a_cpu_or_for_a_16_bit_model():
    assert batch_kernels.onto_batch_kernel(exported("Int8WeightOnlyConfig()", device="cpu"), "both") is None
    assert batch_kernels.onto_batch_kernel(exported(""), "both") is None


def test_a_gemlite_release_torchao_cannot_call_keeps_the_exports_kernel_in_one_line(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "gemlite" else find_spec(name, *a))
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.6.0.post2")
    assert batch_kernels.onto_batch_kernel(exported("Int8WeightOnlyConfig()", layers=[int8_layer()]), "both") == (
        "int8 stays on torchao's kernel: gemlite 0.6.0.post2 is installed, torchao 0.18 needs gemlite==0.5.1.post1")
    # where humming took every int8 layer, nothing is left to move and nothing is said
    assert batch_kernels.onto_batch_kernel(exported("Int8WeightOnlyConfig()"), "both") is None


def test_a_move_that_fails_midway_is_one_line_naming_the_way_out():
    with pytest.raises(UserError) as failed:
        with batch_kernels.moving("int4", "mslk's"):
            raise RuntimeError("CUTLASS cannot run this shape\nlong details")
    assert str(failed.value) == ("moving the int4 weights onto mslk's kernel failed (RuntimeError: CUTLASS cannot run "
                                 "this shape): --batch_kernel=false answers with the export's own kernels")


def test_a_layer_with_two_kernels_answers_one_row_with_the_first_and_more_with_the_second():
    """--batch_kernel=both: tinygemm's weights for one row, mslk's for more (plain tensors stand in for both)."""
    layer = torch.nn.Linear(4, 3)
    layer.batch_weight = torch.nn.Parameter(torch.randn(3, 4), requires_grad=False)
    layer.__class__ = batch_kernels.TwoKernelLinear
    one, two, prompt = torch.randn(1, 1, 4), torch.randn(2, 1, 4), torch.randn(1, 5, 4)  # a prompt's tokens: rows
    with torch.no_grad():
        assert torch.allclose(layer(one), one @ layer.weight.t() + layer.bias)
        for rows in (two, prompt):
            assert torch.allclose(layer(rows), rows @ layer.batch_weight.t() + layer.bias)


def twelve_b_layers(devices=("cuda:0",)):
    """polyglot-ko-12.8b's 160 int4 layers (what the check reads of them), spread over `devices` in order."""
    shapes = [(5120, 15360), (5120, 5120), (5120, 20480), (20480, 5120)] * 40
    return [SimpleNamespace(in_features=i, out_features=o,
                            weight=SimpleNamespace(device=torch.device(devices[n * len(devices) // len(shapes)])))
            for n, (i, o) in enumerate(shapes)]


def test_both_wants_room_for_a_full_batchs_cache_beside_the_second_copy(monkeypatch):
    """12.8b shape: the second copy 6.44 GiB (6.4, the server said on the H200), the move's scratch 0.98 (the
    widest layer's identity and weights in bf16), the 16-bit cache of 16 rows of 512 tokens 6.25 and its
    headroom 1: 14.7 GiB free, else exact."""
    from transformers import GPTNeoXConfig

    model = SimpleNamespace(dtype=torch.bfloat16, config=GPTNeoXConfig(
        hidden_size=5120, num_hidden_layers=40, num_attention_heads=40, intermediate_size=20480, vocab_size=30080))
    monkeypatch.setattr(batch_kernels.kv_cache, "free_bytes", lambda device: 15 * 2**30)
    assert batch_kernels.what_both_lacks(model, twelve_b_layers(), (16, 512)) == ""
    monkeypatch.setattr(batch_kernels.kv_cache, "free_bytes", lambda device: 14 * 2**30)
    assert batch_kernels.what_both_lacks(model, twelve_b_layers(), (16, 512)) == (
        "needs 14.7 GiB free on cuda:0 (the second copy, and the cache of 16 rows of 512 tokens), 14.0 here")
    assert batch_kernels.what_both_lacks(model, twelve_b_layers(), (4, 512)) == ""  # a smaller batch fits
    # over two GPUs, each wants its own layers' share: the second one is short
    monkeypatch.setattr(batch_kernels.kv_cache, "free_bytes", lambda device: (8 if device.index == 0 else 7) * 2**30)
    assert batch_kernels.what_both_lacks(model, twelve_b_layers(("cuda:0", "cuda:1")), (16, 512)).startswith(
        "needs 7.8 GiB free on cuda:1")


def test_a_failed_move_can_name_another_choice_first():
    with pytest.raises(UserError, match=r"failed \(MemoryError\): --batch_kernel=exact holds the int4 weights once, "
                                        r"--batch_kernel=false answers with the export's own kernels$"):
        with batch_kernels.moving("int4", "mslk's", "--batch_kernel=exact holds the int4 weights once, "):
            raise MemoryError()


def test_int8_left_on_torchaos_kernel_is_said_to_be_slow_for_batches_only_where_it_compiles(monkeypatch,
                                                                                            tiny_tokenizer):
    """serve_ko.py answers one request at a time where slow_for_batches has a line (its --max_batch default gives
    way): int8 weights still on torchao's kernel, compiled on a GPU; not on a CPU, not for other weights."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    from kochat import generation, modeling, tiny

    int8, plain = (modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False) for _ in range(2))
    quantize_(int8, Int8WeightOnlyConfig(set_inductor_config=False),
              filter_fn=lambda m, name: isinstance(m, torch.nn.Linear) and "embed" not in name)
    assert batch_kernels.slow_for_batches(int8) == ""  # a CPU: fast mode does not compile, batches are fine
    monkeypatch.setattr(generation, "compiles", lambda model: True)  # as on a GPU
    line = batch_kernels.slow_for_batches(int8)
    assert line.startswith("int8 weights on torchao's own kernel answer batches slower than one request at a time")
    assert "humming-kernels==" in line and batch_kernels.GEMLITE_PACKAGE in line
    assert batch_kernels.slow_for_batches(plain) == ""  # 16-bit weights (or int8 moved onto humming: no Int8Tensor)
