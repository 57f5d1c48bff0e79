"""An int4 export's weights on humming's kernel where it is installed: faster than the export's own (tinygemm)
for one row and for batches. humming (humming-kernels, Apache-2.0) is vLLM's quantized-GEMM library: Marlin-class
kernels compiled at run time by NVRTC (no nvcc; the CUDA headers come with torch's CUDA wheels), for NVIDIA GPUs
from Turing on. Measured at the 12.8b layer sizes on an H200, a token's 160 int4 products (bench/RESULTS.md):
3.27 ms against tinygemm's 4.10 for one row, 3.76 ms against 16.2 for 16 rows (the 16-bit products: 6.70 / 6.82).

The same int4 levels: tinygemm's layout has no unpacking, so each layer's weights are read back as its product
with the identity (each weight exactly on its group's grid of 16 levels, up to bf16's rounding) and quantized again
by humming in the same scheme (4 bits, a scale and a float zero per 128 weights of a row, from the group's minimum
and maximum, which are its levels 0 and 15). The first layer moved is checked against tinygemm's product before
the others move; any failure is one line, and the layers not yet moved keep tinygemm (each layer answers
correctly on either kernel). For answering only (no backward).
"""
from __future__ import annotations

import importlib.util

import torch

PACKAGES = "humming-kernels==0.1.20 cuda-bindings==13.0.3"  # measured with torch 2.11 (CUDA 13); cuda-bindings
#                                                            # 12.x for a CUDA 12 build of torch
WEIGHTS = {"dtype": "uint4", "group_size": 128, "has_zero_point": True, "is_fp_zero_point": True}  # tinygemm's scheme
AGREEMENT = 0.01  # the first layer's products on the two kernels: relative difference allowed (bf16 rounding)


class HummingLinear(torch.nn.Linear):
    """A linear layer whose int4 weights humming multiplies (`int4`, a humming HummingLayer); the bias added after."""

    def forward(self, x):
        y = self.int4(x.reshape(-1, self.in_features)).view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


def on_humming(model) -> int:
    """How many of `model`'s layers humming multiplies."""
    return sum(isinstance(module, HummingLinear) for module in model.modules())


def onto_humming(model) -> str:
    """Move the int4 layers of `model` (an int4 export as loaded: tinygemm's weights) onto humming's kernel, in
    place. "" where done or where nothing applies (no GPU, no tinygemm layers, humming not installed); else the
    one line that says why some or all stay on tinygemm."""
    if model.device.type != "cuda" or importlib.util.find_spec("humming") is None:
        return ""
    from torchao.quantization import Int4TilePackedTo4dTensor

    layers = [m for m in model.modules()
              if type(m) is torch.nn.Linear and isinstance(m.weight, Int4TilePackedTo4dTensor)]
    if not layers:
        return ""
    try:
        from humming.layer import HummingLayer
    except Exception as e:  # cuda-bindings missing or of another CUDA, among others
        return f"int4 stays on tinygemm: humming does not load here ({type(e).__name__}: {first_line(e)})"
    identities: dict[tuple, torch.Tensor] = {}  # one per input width and device
    moved = 0
    try:
        for module in layers:
            device, width = module.weight.device, module.in_features
            identity = identities.get((device, width))
            if identity is None:
                identity = identities[(device, width)] = torch.eye(width, dtype=torch.bfloat16, device=device)
            weight = torch.nn.functional.linear(identity, module.weight).t().contiguous()  # [out, in], as levels
            with torch.cuda.device(device):  # humming puts its own buffers on the current device
                kernel = HummingLayer(shape_n=module.out_features, shape_k=width, torch_dtype=torch.bfloat16,
                                      weight_config=dict(WEIGHTS)).to(device)
                kernel.load_from_unquantized(weight)
                kernel.transform()
            if not moved:
                check_agreement(module, kernel)
            del weight
            module.weight = None  # tinygemm's copy freed: humming holds the levels now
            module.int4 = kernel
            module.__class__ = HummingLinear  # in place: the layer keeps its name, its hooks and its bias
            moved += 1
    except Exception as e:
        kept = ("int4 stays on tinygemm" if not moved
                else f"{len(layers) - moved} of {len(layers)} int4 layers stay on tinygemm")
        return f"{kept}: moving them onto humming's kernel failed ({type(e).__name__}: {first_line(e)})"
    finally:
        identities.clear()
        torch.cuda.empty_cache()
    return ""


def check_agreement(module: torch.nn.Linear, kernel) -> None:
    """Raise where humming's product of a few rows differs from tinygemm's by more than rounding."""
    x = torch.randn(4, module.in_features, dtype=torch.bfloat16, device=module.weight.device)
    expected = torch.nn.functional.linear(x, module.weight).float()
    gap = ((kernel(x).float() - expected).norm() / expected.norm()).item()
    if not gap <= AGREEMENT:
        raise ValueError(f"its product of the first layer is {gap:.3f} away from tinygemm's (allowed {AGREEMENT})")


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [""])[0][:200]
