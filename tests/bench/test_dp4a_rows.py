import pytest
import torch
from support import w4a8_in_torch, w8a8_in_torch

from bench import dp4a_rows
from kochat.dp4a_kernel import quantize_row


def test_random_weights_quantized_to_int4_multiply_as_the_weights_they_hold():
    torch.manual_seed(0)
    weight = torch.randn(24, 512, dtype=torch.bfloat16) / 50
    packed, group, held = dp4a_rows.quantize_int4(weight)
    assert packed.shape == (24, 64) and packed.dtype == torch.int32 and group.shape == (24, 4)
    assert (held - weight.float()).abs().max() <= (weight.float().amax() - weight.float().amin()) / 15  # int4
    x = torch.randn(512, dtype=torch.bfloat16)
    act, act_scale = quantize_row(x)
    assert act.shape == (128,) and act_scale.shape == (16, 2)
    rounded = (act.view(torch.int8).view(16, 32).float() * act_scale[:, :1]).view(-1)
    assert (rounded - x.float()).norm() / x.float().norm() < 0.01  # int8 a block of 32
    expected = held @ rounded
    y = w4a8_in_torch(packed, group, act, act_scale)
    assert (y - expected).norm() / expected.norm() < 1e-5  # the same product, summed in another order
    shuffled = packed.view(24, 16, 4)[:, :, [1, 0, 2, 3]].reshape(24, 64)  # words out of order: far off
    assert (w4a8_in_torch(shuffled, group, act, act_scale) - expected).norm() / expected.norm() > 0.1


def test_random_weights_quantized_to_int8_multiply_as_the_weights_they_hold():
    torch.manual_seed(0)
    weight = torch.randn(24, 512, dtype=torch.bfloat16) / 50
    levels, row_scale, held = dp4a_rows.quantize_int8(weight)
    assert levels.dtype == torch.int8 and levels.abs().max() == 127 and row_scale.shape == (24,)
    assert (held - weight.float()).abs().max() <= row_scale.max() / 2 + 1e-6  # half a level
    act, act_scale = quantize_row(torch.randn(512, dtype=torch.bfloat16))
    rounded = (act.view(torch.int8).view(16, 32).float() * act_scale[:, :1]).view(-1)
    y = w8a8_in_torch(levels, row_scale, act, act_scale, float32=True)
    expected = held @ rounded
    assert (y - expected).norm() / expected.norm() < 1e-5


def test_gemv16_moves_a_bf16_model_onto_kochats_kernel_in_the_settings_given(monkeypatch):
    from kochat import dp4a_kernel, row16_kernel
    monkeypatch.setattr(row16_kernel, "movable", lambda weight: weight.dtype == torch.bfloat16)  # as on a GPU
    monkeypatch.setattr(dp4a_kernel, "installed", lambda: True)
    settings = []
    emulated = type("Emulated", (), {"bf16": staticmethod(lambda w, x: (w.float() @ x.float()).bfloat16())})
    monkeypatch.setattr(dp4a_rows, "Kernels", lambda *setting: settings.append(setting) or emulated)
    model = torch.nn.Sequential(torch.nn.Linear(64, 24, dtype=torch.bfloat16),
                                torch.nn.Linear(24, 16, bias=False, dtype=torch.bfloat16))
    assert dp4a_rows.onto_dp4a(model, "2,8,4") == 0  # no int4 or int8 layer: nothing moved without bf16
    assert dp4a_rows.onto_dp4a(model, "2,8,4", bf16=True) == 2 and settings == [(2, 8, 4)]  # compiled once
    assert all(type(m) is row16_kernel.Row16Linear for m in model)


def test_a_sweeps_json_gives_each_layer_size_its_best_setting(monkeypatch, tmp_path):
    monkeypatch.setattr(dp4a_rows, "Kernels", lambda *setting: setting)  # the setting each would be compiled with
    sweep = tmp_path / "dp4a.json"
    sweep.write_text('{"layers": {"24x64": {"best": {"w4a8": "w4a8 rows2-warps8-unroll2", '
                     '"gemv16": "gemv16 rows1-warps4-unroll8"}}}, "ms_a_token": {"w4a8 rows1-warps8-unroll4": 2.3, '
                     '"w4a8 rows2-warps8-unroll2": 2.4, "humming": 3.4}}')
    pick = dp4a_rows.chooser(str(sweep))
    assert pick("w4a8", 24, 64) == (2, 8, 2) and pick("gemv16", 24, 64) == (1, 4, 8)
    assert pick("w4a8", 24, 64) is pick("w4a8", 24, 64)  # compiled once
    assert pick("w4a8", 48, 64) == (1, 8, 4)  # a size not timed (the head): the best over the sweep's sizes
    with pytest.raises(dp4a_rows.UserError, match="no w8a8 setting timed"):
        pick("w8a8", 24, 64)
    unfinished = tmp_path / "unfinished.json"
    unfinished.write_text('{"layers": {}}')  # rewritten after each layer size: no ms_a_token until the end
    with pytest.raises(dp4a_rows.UserError, match="not a finished bench.dp4a_rows JSON"):
        dp4a_rows.chooser(str(unfinished))
    assert dp4a_rows.chooser("1,8,2")("w8a8", 5, 7) == (1, 8, 2)
