"""kochat/dp4a_kernel.py on the CPU: the kernels' arithmetic (emulated as their CUDA source reads its inputs; the
kernels need an NVIDIA GPU, where tests/e2e/test_export_ko.py moves real int4 and int8 exports onto them), the layer
that hands one row to them and several to the export's kernel, and which kernels an export loads onto."""
import ctypes
from types import SimpleNamespace

import pytest
import torch
from support import EmulatedKernels, unpack_levels, w4a8_in_torch, weights_in_torch

from kochat import answering, batch_kernels, dp4a_kernel, generation, humming_kernel, modeling, tiny
from kochat.dp4a_kernel import Dp4aLinear, pack_groups, pack_levels, quantize_row
from kochat.row_sums import keep_apart, one_row_tuning


def emulated(kind, n, k):
    return EmulatedKernels


def int4_levels(n=24, k=512):
    """Random int4 levels 0..15 [n, k] and each group's bf16 scale and zero [n, k/128], and the weights they hold."""
    q = torch.randint(0, 16, (n, k))
    scale = (torch.rand(n, k // 128) / 100 + 1e-3).bfloat16().float()
    zero = (torch.randn(n, k // 128) / 100).bfloat16().float()
    held = ((q.view(n, k // 128, 128) - 8) * scale[..., None] + zero[..., None]).view(n, k)
    return q, scale, zero, held


def rounded_row(act, act_scale):
    return (act.view(torch.int8).view(-1, 32).float() * act_scale[:, :1]).view(-1)


def test_packed_int4_levels_and_the_rounded_row_multiply_as_the_weights_they_hold():
    torch.manual_seed(0)
    q, scale, zero, held = int4_levels()
    packed, group = pack_levels(q), pack_groups(scale, zero)
    assert packed.shape == (24, 64) and packed.dtype == torch.int32 and group.shape == (24, 4)
    assert torch.equal(unpack_levels(packed), q.to(torch.uint8))
    assert torch.equal(weights_in_torch(packed, group, 24, 512), held.bfloat16())  # several rows' weights
    x = torch.randn(512, dtype=torch.bfloat16)
    act, act_scale = quantize_row(x)
    assert act.shape == (128,) and act_scale.shape == (16, 2)
    assert (rounded_row(act, act_scale) - x.float()).norm() / x.float().norm() < 0.01  # int8 a block of 32
    expected = held @ rounded_row(act, act_scale)
    assert (w4a8_in_torch(packed, group, act, act_scale) - expected).norm() / expected.norm() < 1e-5
    shuffled = packed.view(24, 16, 4)[:, :, [1, 0, 2, 3]].reshape(24, 64)  # words out of order: far off
    assert (w4a8_in_torch(shuffled, group, act, act_scale) - expected).norm() / expected.norm() > 0.1


def int8_model(width=256, out=48, dtype=torch.float32):
    from torchao.quantization import Int8WeightOnlyConfig, quantize_
    model = torch.nn.Sequential(torch.nn.Linear(width, out, dtype=dtype))
    quantize_(model, Int8WeightOnlyConfig(set_inductor_config=False))
    return model


@pytest.mark.parametrize("keep", [False, True], ids=["held-once", "kept"])
def test_an_int8_layer_answers_one_row_on_the_kernel_and_several_on_its_weights(keep):
    """Held once, several rows multiply its weights written out in bf16; kept, the export's layer (onto_humming would
    move it)."""
    torch.manual_seed(0)
    model = int8_model()
    layer = model[0]
    model[0] = Dp4aLinear(layer, keep=keep, kernels=emulated)
    assert model[0].levels.data_ptr() == layer.weight.qdata.data_ptr()  # the export's levels, not a copy
    assert (model[0].rows is layer) == keep  # kept: a layer of its own, which onto_humming would move
    with torch.inference_mode():
        row, batch = torch.randn(1, 256), torch.randn(3, 256)
        expected = layer(row)
        one = model(row)
        assert one.dtype == expected.dtype and (one - expected).norm() / expected.norm() < 0.02  # the row's rounding
        several, expected = model(batch), layer(batch)
        if keep:
            assert torch.equal(several, expected)  # the export's layer itself
        else:  # the same levels and scales, each weight rounded to bf16
            assert (several - expected).norm() / expected.norm() < 0.005
        graphs = []

        def capture(gm, example_inputs):  # a torch.compile backend: keeps the graph, runs it as traced
            graphs.append(gm)
            return gm.forward
        compiled = torch.compile(model, fullgraph=True, backend=capture)  # the ops traced through their fakes
        assert torch.allclose(compiled(row), one) and torch.equal(compiled(batch), several)
        ops = [{node.target for node in graph.graph.nodes} for graph in graphs]
        assert torch.ops.kochat.dp4a_product in ops[0]  # one row: the kernel, one opaque op
        assert (torch.ops.kochat.dp4a_weights in ops[1]) == (not keep)  # several: its weights, one op


def test_a_model_moved_to_another_dtype_keeps_the_int8_scales_the_kernel_reads_as_float32():
    moved = Dp4aLinear(int8_model()[0], keep=False, kernels=emulated)
    scales = moved.scales.clone()
    moved.to(torch.bfloat16)
    assert moved.scales.dtype == torch.int32 and torch.equal(moved.scales, scales)


def test_an_int4_layer_held_once_multiplies_several_rows_by_its_weights_in_bf16(monkeypatch):
    """An int4 export's layer (tinygemm's layout needs a GPU: here a 16-bit layer holding the same weights, its
    levels handed over as export_levels reads tinygemm's)."""
    torch.manual_seed(0)
    q, scale, zero, held = int4_levels(48, 256)
    layer = torch.nn.Linear(256, 48, dtype=torch.bfloat16)
    layer.weight.data = held.bfloat16()
    monkeypatch.setattr(dp4a_kernel, "export_levels", lambda layer: (True, pack_levels(q), pack_groups(scale, zero)))
    moved = Dp4aLinear(layer, keep=False, kernels=emulated)
    assert moved.rows is None and not hasattr(moved, "weight") and moved.bias is layer.bias
    with torch.inference_mode():
        row, batch = torch.randn(1, 256, dtype=torch.bfloat16), torch.randn(5, 256, dtype=torch.bfloat16)
        expected = layer(row).float()
        assert (moved(row).float() - expected).norm() / expected.norm() < 0.02
        assert torch.equal(moved(batch), layer(batch))  # the same weights in bf16, the same product
    assert "w4a8, in_features=256, out_features=48, several rows: its weights in bf16" in repr(moved)


def test_int8_compiles_one_row_under_torchaos_settings_until_it_moves_onto_the_kernel(monkeypatch):
    """torchao's int8 layers compile one row with the settings its configuration would have set where it quantized
    (without them the 12.8b shape answered at 9.6 tokens/s); on the dp4a kernel they did not pay and lengthened the
    first compile (bench/RESULTS.md), so a model there compiles as before."""
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor, "coordinate_descent_tuning", False)  # whatever an earlier test quantized with
    model = int8_model()
    with one_row_tuning(model, 4):
        assert not inductor.coordinate_descent_tuning  # a batch: compiled as before
    with one_row_tuning(model, 1):
        assert inductor.coordinate_descent_tuning
    assert not inductor.coordinate_descent_tuning  # undone after
    monkeypatch.setattr(dp4a_kernel, "movable", lambda module: type(module) is torch.nn.Linear)  # as on a GPU
    monkeypatch.setattr(dp4a_kernel, "installed", lambda: True)
    assert dp4a_kernel.onto_dp4a(model, keep=False, kernels=emulated) == "" and dp4a_kernel.on_dp4a(model) == 1
    with one_row_tuning(model, 1):
        assert not inductor.coordinate_descent_tuning


def test_a_wrong_product_or_a_missing_package_is_one_line_and_the_layer_stays(monkeypatch):
    model = int8_model()
    layer = model[0]
    monkeypatch.setattr(dp4a_kernel, "movable", lambda module: type(module) is torch.nn.Linear)  # as on a GPU
    monkeypatch.setattr(dp4a_kernel, "installed", lambda: False)
    assert dp4a_kernel.onto_dp4a(model, keep=False) == (
        f"int8 one row at a time stays on the export's kernel: pip install {dp4a_kernel.PACKAGE} for the faster dp4a "
        "one")
    monkeypatch.setattr(dp4a_kernel, "installed", lambda: True)
    wrong = type("Wrong", (), {"int8": staticmethod(lambda *a: -EmulatedKernels.int8(*a))})
    line = dp4a_kernel.onto_dp4a(model, keep=False, kernels=lambda kind, n, k: wrong)
    assert line.startswith("int8 one row at a time stays on the export's kernel: moving them onto the dp4a kernel "
                           "failed (ValueError: a layer's product of one row on the kernel is ")
    assert model[0] is layer and dp4a_kernel.on_dp4a(model) == 0
    wrong_weights = type("WrongWeights", (EmulatedKernels,), {"weights": staticmethod(
        lambda *a: weights_in_torch(*a).flip(1))})  # the columns out of order: only several rows see them
    line = dp4a_kernel.onto_dp4a(model, keep=False, kernels=lambda kind, n, k: wrong_weights)
    assert "failed (ValueError: a layer's product of 2 rows on the kernel is " in line, line
    assert model[0] is layer and dp4a_kernel.on_dp4a(model) == 0
    assert dp4a_kernel.onto_dp4a(model, keep=False, kernels=emulated) == "" and dp4a_kernel.on_dp4a(model) == 1


def test_nothing_moves_on_a_cpu():
    model = int8_model()
    assert dp4a_kernel.onto_dp4a(model, keep=False) == ""
    assert dp4a_kernel.on_dp4a(model) == 0


def test_an_mlp_on_the_kernel_keeps_its_gelu_inlined_and_the_mode_line_says_so(tiny_tokenizer):
    """The row's rounding to int8 fuses with the GELU before the MLP's second product: not kept apart there."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_
    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval()
    mlp = model.gpt_neox.layers[0].mlp
    quantize_(mlp, Int8WeightOnlyConfig(set_inductor_config=False))
    mlp.dense_4h_to_h = Dp4aLinear(mlp.dense_4h_to_h, keep=False, kernels=emulated)
    assert keep_apart(model) == model.config.num_hidden_layers - 1
    model.config.quantization_config = {"quant_method": "torchao"}
    assert generation.mode_line(model, fast=True) == ("answering with torchao-quantized weights, one row at a time "
                                                      f"through the dp4a kernel on {model.device.type}, fast mode on")


@pytest.mark.parametrize("kernels, short, calls, lines", [
    ("one_row", "", [("dp4a", False), "humming"], []),
    ("both", "", [("dp4a", True), "humming"], []),
    ("both", "needs 13.1 GiB free on cuda:0 (…), 6.0 here", ["humming"],
     ["one row at a time on humming's kernel too: the dp4a kernel's copy of the weights beside it needs 13.1 GiB "
      "free on cuda:0 (…), 6.0 here"]),
    ("batches", "", ["humming"], []),
    ("export", "", [], []),
])
def test_an_export_loads_onto_the_kernels_for_how_it_will_answer(monkeypatch, kernels, short, calls, lines):
    """chat_ko.py (one_row): dp4a, the weights held once, humming for what it did not take; serve_ko.py (both):
    dp4a beside humming where the second copy and a full batch's cache fit, else humming alone, said in one line."""
    model = int8_model()
    called = []
    monkeypatch.setattr(dp4a_kernel, "installed", lambda: True)
    monkeypatch.setattr(humming_kernel, "installed", lambda: True)
    monkeypatch.setattr(dp4a_kernel, "movable", lambda module: type(module) is torch.nn.Linear)
    monkeypatch.setattr(dp4a_kernel, "onto_dp4a", lambda model, keep: called.append(("dp4a", keep)) or "")
    monkeypatch.setattr(humming_kernel, "onto_humming", lambda model: called.append("humming") or "")
    asked = []
    monkeypatch.setattr(batch_kernels, "what_both_lacks",
                        lambda model, layers, serving, fmt: asked.append((len(layers), serving, fmt)) or short)
    assert answering.onto_kernels(model, kernels, (16, 512)) == lines
    assert called == calls
    assert asked == ([(1, (16, 512), "int8")] if kernels == "both" else [])
    if kernels == "both":  # without humming, no second kernel to hold beside: as batches, said nowhere
        monkeypatch.setattr(humming_kernel, "installed", lambda: False)
        called.clear()
        assert answering.onto_kernels(model, kernels, (16, 512)) == [] and called == ["humming"]


def test_a_kernels_choice_not_known_is_refused_before_anything_loads(tmp_path):
    with pytest.raises(ValueError, match="kernels is one of one_row, batches, both, export, not 'fast'"):
        answering.load_for_answering(str(tmp_path), kernels="fast")


def test_a_kernel_that_waits_is_launched_to_overlap_the_one_before_and_the_others_as_before(monkeypatch):
    """Compiled.run: with `overlap`, where the kernels were compiled for it (OVERLAP on a Hopper GPU), through
    cuLaunchKernelEx with programmatic stream serialization allowed; otherwise cuLaunchKernel, as before. The
    driver is stood in for on the CPU: the launch's configuration and arguments are what is checked."""
    launched = []

    class Attribute:
        def __init__(self):
            self.value = SimpleNamespace()

    driver = SimpleNamespace(
        CUstream=lambda handle: ("stream", handle), CUlaunchConfig=SimpleNamespace, CUlaunchAttribute=Attribute,
        CUlaunchAttributeID=SimpleNamespace(CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION="serialization"),
        cuLaunchKernel=lambda *call: launched.append(("plain", call)) or (0,),
        cuLaunchKernelEx=lambda config, function, arguments, extra: launched.append(
            ("overlapping", config, function, arguments)) or (0,))
    kernels = object.__new__(dp4a_kernel.Compiled)
    kernels.driver, kernels.functions, kernels.overlap = driver, {(None, "k"): "function"}, True
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: SimpleNamespace(cuda_stream=7))
    x = torch.zeros(4)
    kernels.run("k", 3, 64, 128, (x,), 5, 0.5, overlap=True)
    kernels.run("k", 3, 64, 128, (x,), 5, 0.5)  # a kernel that does not wait for the one before
    kernels.overlap = False  # compiled without (OVERLAP off, or a GPU before Hopper)
    kernels.run("k", 3, 64, 128, (x,), 5, 0.5, overlap=True)
    assert [launch[0] for launch in launched] == ["overlapping", "plain", "plain"]
    _, config, function, arguments = launched[0]
    assert arguments == ((x.data_ptr(), 5, 0.5), (ctypes.c_void_p, ctypes.c_int, ctypes.c_float))
    assert (function, config.gridDimX, config.blockDimX, config.sharedMemBytes, config.hStream, config.numAttrs) == \
        ("function", 3, 64, 128, ("stream", 7), 1)
    assert config.attrs[0].id == "serialization" and config.attrs[0].value.programmaticStreamSerializationAllowed == 1
    assert launched[1][1] == ("function", 3, 1, 1, 64, 1, 1, 128, ("stream", 7), arguments, 0)
