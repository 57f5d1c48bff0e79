"""The int8/int4 exports' checks that run before any long work (the formats themselves: tests/e2e/test_export_ko.py)."""
import pytest
import torch

from kochat.errors import UserError
from kochat.export import quantized

PARAMS_12P8B = 12_893_603_840  # polyglot-ko-12.8b, as modeling.parameter_count counts it


def test_too_little_gpu_memory_to_quantize_is_one_line_before_the_merge(monkeypatch):
    """A 24 GB card with 20 GiB free: int8 of 12.8b parameters (24.1 GiB measured) is refused, int4 (13.1) is not.
    No GPU here, so the GPU's answers are given."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *device: (20 * 2**30, 24 * 2**30))
    with pytest.raises(UserError, match=r"quantizing to int8 takes ~24.6 GiB of GPU memory here, 20.0 GiB is free: "
                                        r"free the GPU, export on a larger one, or choose --format=int4"):
        quantized.check_gpu_memory("int8", PARAMS_12P8B)
    quantized.check_gpu_memory("int4", PARAMS_12P8B)


def test_quantizing_for_an_export_leaves_the_process_compile_settings_alone(monkeypatch):
    """torchao's configurations turn on inductor's coordinate-descent tuning for the whole process by default; the
    export compiles nothing, and a process that exported then compiled its batches under the tuning for minutes."""
    from torch._inductor import config as inductor
    from torchao.quantization import quantize_

    monkeypatch.setattr(inductor, "coordinate_descent_tuning", False)
    layer = torch.nn.Sequential(torch.nn.Linear(256, 128, dtype=torch.bfloat16))
    quantize_(layer, quantized.torchao_config("int8"))
    assert type(layer[0].weight).__name__ == "Int8Tensor"  # quantized, and nothing else changed
    assert not inductor.coordinate_descent_tuning
