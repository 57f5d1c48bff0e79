"""kochat/humming_kernel.py on the CPU: the layer that hands its rows to humming, and that nothing moves on a CPU.
humming's kernel itself needs an NVIDIA GPU: tests/e2e/test_export_ko.py moves real int4 and int8 exports onto it
there."""
import pytest
import torch

from kochat import generation, humming_kernel, modeling, tiny


class RowsOnly(torch.nn.Module):
    """Stands in for humming's layer, which multiplies 2-D rows and adds no bias: the layer's own weights."""

    def __init__(self, weight):
        super().__init__()
        self.weight, self.shape_n = weight, weight.shape[0]

    def forward(self, x):
        assert x.dim() == 2 and x.dtype == torch.bfloat16  # humming's kernel takes bf16 rows
        return x @ self.weight.t()


def test_a_moved_layer_gives_its_rows_to_the_kernel_and_adds_its_bias(tiny_tokenizer):
    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval()
    ids = torch.randint(3, 300, (2, 7), device=model.device)  # the device test run puts the model on a GPU
    with torch.inference_mode():
        before = model(input_ids=ids).logits
    layers = [m for m in model.modules() if type(m) is torch.nn.Linear and m.bias is not None]
    assert layers and humming_kernel.on_humming(model) == 0
    for module in layers:  # as onto_humming moves them, the weights handed over
        humming_kernel.swap_in(module, RowsOnly(module.weight.detach().to(torch.bfloat16)))
    assert all(type(m) is humming_kernel.HummingLinear and m.weight is None for m in layers)
    with torch.inference_mode():
        after = model(input_ids=ids).logits
    assert after.dtype == before.dtype and torch.allclose(after, before, rtol=0.05, atol=0.05)  # bf16 rounding
    graphs = []

    def capture(gm, example_inputs):  # a torch.compile backend: keeps the graph, runs it as traced
        graphs.append(gm)
        return gm.forward
    with torch.inference_mode():
        assert torch.equal(torch.compile(model, backend=capture, fullgraph=True)(input_ids=ids).logits, after)
    products = [n for n in graphs[0].graph.nodes if n.target is torch.ops.kochat.humming_product]
    assert len(products) == len(layers)  # each product one opaque op: humming's host work stays out of the graph
    assert humming_kernel.on_humming(model) == len(layers)
    assert "weights through humming's kernel" not in generation.mode_line(model, fast=False)  # not an export
    model.config.quantization_config = {"quant_method": "torchao"}
    assert generation.mode_line(model, fast=True) == (
        f"answering with torchao-quantized weights through humming's kernel on {model.device.type}, fast mode on")


def test_nothing_moves_on_a_cpu(tiny_tokenizer):
    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval()
    assert humming_kernel.onto_humming(model) == ""
    assert humming_kernel.on_humming(model) == 0


def test_a_model_let_go_frees_its_kernels(tiny_tokenizer):
    import gc

    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval()
    layer = next(m for m in model.modules() if type(m) is torch.nn.Linear)
    humming_kernel.swap_in(layer, RowsOnly(layer.weight.detach().to(torch.bfloat16)))
    held = humming_kernel._KERNELS[layer.kernel_index]
    assert held() is layer.kernel
    del model, layer
    gc.collect()
    assert held() is None  # the list of kernels does not keep a model's weights alive


def test_a_kernel_whose_product_differs_from_the_exports_by_more_than_rounding_is_refused():
    """onto_humming calls each kernel once before its layer moves (which also compiles it) and compares the product
    of a row with the layer's, bias left out (humming adds none): weights ~0.5 % off (rounding) pass, one output row
    of 64 with its signs flipped does not."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(256, 64).to(torch.bfloat16)
    layer.bias.data.fill_(10.0)  # far larger than the products: counted on one side only, it would fail the check
    weight = layer.weight.detach()
    humming_kernel.check_product(RowsOnly(weight * (1 + 0.005 * torch.randn_like(weight))), layer)
    wrong = weight.clone()
    wrong[3] *= -1
    with pytest.raises(ValueError, match=r"a layer's product of one row moved 0\.\d+ from the export's"):
        humming_kernel.check_product(RowsOnly(wrong), layer)


def test_an_int8_exports_layers_are_found_and_load_their_own_levels(monkeypatch):
    """torchao's weight-only int8 layers (as export_ko.py --format=int8 saves them) go to humming's int8 scheme, their
    weights read back exactly as torchao multiplies by them, and their levels handed to humming as they are (offset
    by 128, as humming stores integers; the scale per row); layers with int8 activations too, or none, stay."""
    import sys
    from types import SimpleNamespace

    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 64), torch.nn.Linear(64, 32), torch.nn.Linear(32, 16))
    quantize_(model[0], Int8WeightOnlyConfig(set_inductor_config=False))
    quantize_(model[1], Int8DynamicActivationInt8WeightConfig(set_inductor_config=False))
    found = humming_kernel.exported_layers(model)
    assert len(found) == 1 and found[0][0] is model[0] and found[0][1] is humming_kernel.INT8_WEIGHTS
    weight = humming_kernel.exported_weight(model[0], humming_kernel.INT8_WEIGHTS, {})
    levels, scale = model[0].weight.qdata, model[0].weight.scale
    assert weight.dtype == torch.float32 and torch.equal(weight, levels.float() * scale.float())

    class Kernel:  # what load_levels hands humming's layer, whose parameters it names
        names = ["weight", "weight_scale"]

        def named_parameters(self):
            return [(name, None) for name in self.names]

        def load_from_tensors(self, tensors):
            self.tensors = tensors
    monkeypatch.setitem(sys.modules, "humming", SimpleNamespace(ops=SimpleNamespace(pack_weight=lambda codes, bits: (
        codes, bits))))
    kernel = Kernel()
    humming_kernel.load_levels(kernel, model[0], humming_kernel.INT8_WEIGHTS, weight)
    (codes, bits), held_scale = kernel.tensors["weight"], kernel.tensors["weight_scale"]
    assert bits == 8 and codes.dtype == torch.int32 and torch.equal(codes - 128, levels.to(torch.int32))
    assert codes.min() >= 0 and codes.max() <= 255
    assert held_scale.shape == (64, 1) and held_scale.dtype == torch.bfloat16
    assert torch.allclose(held_scale.float(), scale.float(), rtol=2 ** -8)  # bf16: humming's scales for bf16 rows
    kernel.names = ["weight", "weight_scale", "zero_point"]  # a humming release that names them otherwise: refused
    with pytest.raises(ValueError, match=r"humming's int8 layer holds \['weight', 'weight_scale', 'zero_point'\]"):
        humming_kernel.load_levels(kernel, model[0], humming_kernel.INT8_WEIGHTS, weight)
