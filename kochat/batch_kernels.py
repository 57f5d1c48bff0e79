"""Kernels that answer batches faster than an int4 or int8 export's own, for serve_ko.py: where the GPU and an
installed kernel library allow, the export's weights are moved onto them as the model loads, a layer at a time.
Where humming-kernels is installed, serve_ko.py's auto has already put an int4 or int8 export on humming's kernel
(kochat/humming_kernel.py: faster than all below for one row and for batches, the weights held once); only layers
humming did not take (a failed move) are left for mslk and gemlite here.

int4 (saved for tinygemm) onto mslk's CUTLASS kernels for Hopper GPUs (H100, H200; mslk-cuda, BSD-3, through
torchao), measured at the 12.8b shape on an H200 through the server, 1 client / 16 clients (bench/RESULTS.md;
tinygemm alone: 179 / 597 tokens/s):
- "both", serve_ko.py's default (auto) where humming is not installed: tinygemm's weights kept for one row and
  "exact"'s beside them for more (TwoKernelLinear): 162 / 1,316 tokens/s, twice the int4 weights' memory (6.4 GiB
  more at the 12.8b shape; the server's peak 20.0 GiB against 12.7), so only where the GPU also keeps room for a
  full batch's cache (what_both_lacks), else "exact".
- "exact": the same int4 levels (a scale and a minimum per 128 weights, tinygemm's own scheme: mslk rounds
  tinygemm's dequantized values back to the same levels; the scale and minimum are derived again, equal up to
  bf16 rounding; the products as far from the 16-bit ones as tinygemm's), activations in 16 bits: 106 / 1,313
  tokens/s.
- "fp8": int4 weights without a minimum and activations in 8-bit float: 1,803 tokens/s at 16 rows through gen()
  against exact's 1,419, 143 at one. Each weight is rounded again onto that coarser grid: the layers' products
  were 1.5 times as far from the 16-bit ones as tinygemm's (bench/batch_kernel_error.py).

int8 onto gemlite's Triton int8 kernel (Apache-2.0, through torchao's UIntxWeightOnlyConfig; any recent NVIDIA
GPU, weights in 16 bits): 1,535 tokens/s at 16 rows at the 12.8b shape, 4 % slower than torchao's own int8 at
one row. The same scheme (int8, a scale per output row), so the weights come back as they were.

A move that fails midway is one line that names --batch_kernel=false: the model is then half moved.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from contextlib import contextmanager

import torch

from . import kv_cache
from .errors import UserError
from .estimate import GIB
from .export.quantized import BYTES_PER_WEIGHT

MSLK_PACKAGE = "mslk-cuda==1.1.0"     # measured; compiled for one torch release (1.1.0 loads with torch 2.11)
GEMLITE_PACKAGE = "gemlite==0.5.1.post1"  # the release whose API torchao 0.18's UIntxWeightOnlyConfig calls


class TwoKernelLinear(torch.nn.Linear):
    """An int4 layer holding its weights twice: tinygemm's (the export's, the faster for one row) and mslk's
    (batch_weight, for more rows). Fast mode compiles a graph for each batch size, so the choice is made once
    when each is traced and costs nothing per step."""

    def forward(self, x):
        one_row = x.numel() == x.shape[-1]
        return torch.nn.functional.linear(x, self.weight if one_row else self.batch_weight, self.bias)


def holds_two_copies(model) -> bool:
    """Whether --batch_kernel=both put a second copy of the int4 weights beside the first."""
    return any(isinstance(module, TwoKernelLinear) for module in model.modules())


def onto_batch_kernel(model, choice: str, serving: tuple[int, int] = (16, 512)) -> str | None:
    """Move a quantized export's linear layers onto the faster kernel for batches where one applies (`choice`:
    exact, fp8 or both, which apply to int4 only: int8 has one kernel to move to); returns the line that says
    what was done, or None where nothing applies (no GPU, not an int4/int8 export, the library not installed,
    or for int4 a GPU that is not Hopper). `serving`: the rows and tokens a batch will answer, whose key/value
    cache "both" leaves room for (else it takes "exact")."""
    if model.device.type != "cuda":
        return None
    quantization = str(getattr(model.config, "quantization_config", ""))
    if "Int4WeightOnlyConfig" in quantization:
        return _int4_onto_mslk(model, choice, serving)
    if "Int8WeightOnlyConfig" in quantization and model.dtype in (torch.float16, torch.bfloat16):
        return _int8_onto_gemlite(model)
    return None


def _int4_onto_mslk(model, choice: str, serving: tuple[int, int]) -> str | None:
    if torch.cuda.get_device_capability(model.device)[0] != 9 or importlib.util.find_spec("mslk") is None:
        return None
    from torchao.quantization import (Float8DynamicActivationInt4WeightConfig, Int4TilePackedTo4dTensor,
                                      Int4WeightOnlyConfig, quantize_)
    layers = [m for m in model.modules()
              if isinstance(m, torch.nn.Linear) and isinstance(m.weight, Int4TilePackedTo4dTensor)]
    if not layers:  # none left as exported (e.g. moved onto humming's kernel): nothing to move, nothing to say
        return None
    try:
        import mslk  # noqa: F401  (torchao finds its operators through it)
    except Exception as e:  # its compiled operators are tied to one torch release
        return (f"int4 stays on tinygemm: mslk is installed but does not load with torch {torch.__version__} "
                f"({type(e).__name__}); install the mslk-cuda release built for it (measured: {MSLK_PACKAGE} "
                "with torch 2.11)")
    # set_inductor_config=False: torchao would turn on inductor's coordinate-descent tuning for the whole
    # process, lengthening every compile (the warm-up's too) beyond what the export loaded as saved takes
    config = (Float8DynamicActivationInt4WeightConfig(int4_packing_format="preshuffled") if choice == "fp8"
              else Int4WeightOnlyConfig(group_size=128, int4_packing_format="plain", set_inductor_config=False))
    second_copy = sum(m.in_features * m.out_features for m in layers) * BYTES_PER_WEIGHT["int4"]
    short = choice == "both" and what_both_lacks(model, layers, serving)
    if short:
        choice = "exact"
    identities = {}  # one per input width
    way_out = "--batch_kernel=exact holds the int4 weights once, " if choice == "both" else ""
    with moving("int4", "mslk's", way_out):
        for module in layers:
            # tinygemm's layout has no dequantize: its product with the identity is the weight it multiplies by
            identity = identities.get(module.in_features)
            if identity is None:
                identity = identities[module.in_features] = torch.eye(
                    module.in_features, dtype=torch.bfloat16, device=module.weight.device)
            weight = torch.nn.functional.linear(identity, module.weight).t().contiguous()
            if choice == "both":  # mslk's weights beside tinygemm's, made in a layer of their own
                batch_layer = torch.nn.Linear(module.in_features, module.out_features, bias=False, device="meta")
                batch_layer.weight = torch.nn.Parameter(weight, requires_grad=False)
                quantize_(batch_layer, config)
                module.batch_weight = batch_layer.weight
                module.__class__ = TwoKernelLinear  # in place: the layer keeps its name, its hooks and its bias
            else:
                module.weight = torch.nn.Parameter(weight, requires_grad=False)
                quantize_(module, config)
    identities.clear()
    torch.cuda.empty_cache()
    if choice == "fp8":
        return (f"int4 weights of {len(layers)} layers moved onto mslk's Hopper kernel with 8-bit float activations, "
                "rounded again (batches ~3× faster than tinygemm, answers less exact; --batch_kernel=exact keeps "
                "the int4 levels)")
    if choice == "both":
        return (f"int4 weights of {len(layers)} layers also on mslk's Hopper kernel, for batches; tinygemm's kept "
                f"for one row ({second_copy / 2**30:.1f} GiB more)")
    return (f"int4 weights of {len(layers)} layers moved onto mslk's Hopper kernel, the same int4 levels (batches "
            "~2.4× faster, one answer at a time slower: --batch_kernel=false keeps tinygemm)"
            + (f"; --batch_kernel=both {short}" if short else ""))


def what_both_lacks(model, layers: list, serving: tuple[int, int], fmt: str = "int4") -> str:
    """Nothing ("") where each GPU holding `layers` has room for a second copy of their `fmt` weights, the scratch
    of moving them and its share of a `serving` batch's key/value cache in 16 bits (static_cache's headroom
    included); else what is missing, in a few words."""
    rows, tokens = serving
    cache = kv_cache.room_for(model.config, rows, tokens, model.dtype.itemsize)
    per_device: dict[torch.device, list] = {}
    for module in layers:
        per_device.setdefault(module.weight.device, []).append(module)
    for device, here in per_device.items():
        second_copy = sum(m.in_features * m.out_features for m in here) * BYTES_PER_WEIGHT[fmt]
        # beside it while moving: the identity of the widest layer and one layer's weights in bf16
        scratch = max(m.in_features * (m.in_features + m.out_features) * 2 for m in here)
        need = second_copy + scratch + cache * len(here) / len(layers)
        free = kv_cache.free_bytes(device)  # the allocator's idle blocks count as free
        if free < need:
            return (f"needs {need / GIB:.1f} GiB free on {device} (the second copy, and the cache of {rows} rows of "
                    f"{tokens} tokens), {free / GIB:.1f} here")
    return ""


def _int8_onto_gemlite(model) -> str | None:
    if importlib.util.find_spec("gemlite") is None:
        return None
    from torchao.quantization import Int8Tensor

    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and isinstance(m.weight, Int8Tensor)]
    if not layers:  # none left as exported (moved onto humming's kernel): nothing to move, nothing to say
        return None
    wanted = GEMLITE_PACKAGE.split("==")[1]
    try:
        installed = importlib.metadata.version("gemlite")
    except importlib.metadata.PackageNotFoundError:  # importable without pip's record: tried; a failure is one line
        installed = wanted
    if installed != wanted:  # torchao 0.18 fails inside another release's API
        return f"int8 stays on torchao's kernel: gemlite {installed} is installed, torchao 0.18 needs {GEMLITE_PACKAGE}"
    try:
        import gemlite  # noqa: F401  (imported by torchao's prototype; it needs a GPU to import)
        from torchao.prototype.quantization.quant_api import UIntxWeightOnlyConfig
        from torchao.quantization import quantize_
    except Exception as e:  # a Triton it does not work with, among others
        return f"int8 stays on torchao's kernel: gemlite does not load here ({type(e).__name__})"
    config = UIntxWeightOnlyConfig(bit_width=8, group_size=None, set_inductor_config=False)  # as for int4
    with moving("int8", "gemlite's"):
        for module in layers:
            module.weight = torch.nn.Parameter(module.weight.dequantize(), requires_grad=False)
            quantize_(module, config)
    return (f"int8 weights of {len(layers)} layers moved onto gemlite's int8 kernel (faster for batches; "
            "--batch_kernel=false keeps the export's)")


def slow_for_batches(model) -> str:
    """The line that says so where `model`'s int8 weights are still on torchao's own kernel (neither humming nor
    gemlite took them) and fast mode compiles them (a GPU): its product of a batch compiles into kernels that took
    ~0.5 s a step at the 12.8b shape on an H200, 31 tokens/s for 16 rows against 142 for one (bench/RESULTS.md), so
    one request at a time answers faster; "" elsewhere."""
    from .generation import compiles
    from .humming_kernel import PACKAGES
    from .row_sums import holds_int8

    if not holds_int8(model) or not compiles(model):
        return ""
    return ("int8 weights on torchao's own kernel answer batches slower than one request at a time (at the 12.8b "
            "shape 16 rows gave 31 tokens/s, one row 142); for batches install humming (pip install "
            f"{PACKAGES}) or gemlite ({GEMLITE_PACKAGE})")


@contextmanager
def moving(fmt: str, kernel: str, way_out: str = ""):
    """One line where moving the weights fails (the model is then half moved: the server does not start);
    `way_out`: another choice to name before --batch_kernel=false."""
    try:
        yield
    except Exception as e:
        detail = f": {str(e).strip().splitlines()[0][:200]}" if str(e).strip() else ""
        raise UserError(f"moving the {fmt} weights onto {kernel} kernel failed ({type(e).__name__}{detail}): "
                        f"{way_out}--batch_kernel=false answers with the export's own kernels") from e
