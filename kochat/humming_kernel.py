"""An int4 or int8 export's weights on humming's kernel, where it is installed: serve_ko.py and eval_ko.py move them
as the model loads, chat_ko.py those the faster one-row dp4a kernel did not take (answering.onto_kernels; serve_ko.py
--batch_kernel=false keeps the export's own kernels: tinygemm for int4, torchao's int8).
humming (humming-kernels, Apache-2.0) is vLLM's quantized-GEMM library: Marlin-class kernels compiled at run time by
NVRTC (no nvcc; the CUDA headers come with torch's CUDA wheels) into a cache (~/.humming/cache, or
$HUMMING_CACHE_DIR), so a machine's first answers wait for them; with bf16 activations, as here, Ampere GPUs and
newer (as tinygemm). Measured at the 12.8b shape on an H200 (bench/RESULTS.md): int4, 200 tokens/s for one answer
and 2,187 for 16 at once through gen() (tinygemm: 191 / 581), 198 / 2,180 through the server, the weights held once;
205 / 2,775 through gen() at the Qwen3-8B shape (tinygemm: 115 / 1,044; its merged 16-bit model: 179 / 2,580).
int8 on humming: 167 tokens/s for one answer, 1,900 for 16 at once through gen() (torchao's own kernel: 142, and 31
for 16: its product of a batch compiles into kernels ~0.5 s a step).

The export's int4 levels: tinygemm's layout has no unpacking, so each layer's weights are read back as its product
with the identity (each weight on its group's grid of 16 levels, up to bf16's rounding) and quantized again by
humming in the same scheme (4 bits, a scale and a float zero per 128 weights of a row, from the group's range).
humming's range always reaches zero, so a group whose weights share one sign gets coarser levels than tinygemm
gave it. int8 (torchao's Int8Tensor: a level from -128 to 127 and a scale per row) loads as it is (load_levels).
So each layer's weights as humming holds them are compared with the export's, and its product of one row with the
export kernel's (which also compiles humming's kernel: a missing CUDA header fails here, not at the first answer),
before the layer moves; a layer further than rounding stays on the export's kernel, as do the layers after it; any
failure is one line (each layer answers correctly on either kernel). For answering only (no backward).
"""
from __future__ import annotations

import importlib.util
import weakref
from contextlib import nullcontext

import torch

PACKAGES = "humming-kernels==0.1.20 cuda-bindings==13.0.3"  # measured with torch 2.11 (CUDA 13); cuda-bindings
#                                                            # 12.x for a CUDA 12 build of torch
WEIGHTS = {"dtype": "uint4", "group_size": 128, "has_zero_point": True, "is_fp_zero_point": True}  # tinygemm's scheme
INT8_WEIGHTS = {"dtype": "int8", "group_size": 0}  # torchao's int8: a scale per row
AGREEMENT = 0.02  # a layer's weights (and its product of a row) as humming holds them against the export's: the
#                   relative distance allowed (the int4 rounding itself puts the export ~10 % from random 16-bit
#                   weights; int8's levels load as they are, off by their scales' bf16 rounding only)


# the moved layers' humming layers, by index (a custom op takes no modules), held weakly: a model let go frees its
# weights. The index is a constant of each layer, which torch.compile writes into the graph as it is.
_KERNELS: list[weakref.ref] = []


@torch.library.custom_op("kochat::humming_product", mutates_args=())
def _product(rows: torch.Tensor, index: int) -> torch.Tensor:
    with torch.cuda.device(rows.device) if rows.is_cuda else nullcontext():  # over several GPUs: the layer's own
        return _KERNELS[index]()(rows)


@_product.register_fake
def _(rows: torch.Tensor, index: int) -> torch.Tensor:
    return rows.new_empty(rows.shape[0], _KERNELS[index]().shape_n)


class HummingLinear(torch.nn.Linear):
    """A linear layer whose int4 or int8 weights humming multiplies (`kernel`, a humming HummingLayer); the bias
    added after.
    The product is one opaque op to torch.compile: humming picks its kernel's configuration on the host, as a CPU
    tensor, which inside a compiled graph would keep the decoding step out of CUDA graphs; inside the op that work
    runs when a graph is captured, and a replay runs the kernel alone."""

    def forward(self, x):
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)  # humming's kernel takes bf16, as tinygemm's
        y = torch.ops.kochat.humming_product(rows, self.kernel_index).view(*x.shape[:-1], self.out_features)
        y = y.to(x.dtype)
        return y if self.bias is None else y + self.bias


def installed() -> bool:
    return importlib.util.find_spec("humming") is not None


def on_humming(model) -> int:
    """How many of `model`'s layers humming multiplies."""
    return sum(isinstance(module, HummingLinear) for module in model.modules())


def onto_humming(model) -> str:
    """Move the int4 and int8 layers of `model` (an export as loaded: tinygemm's or torchao's int8 weights) onto
    humming's kernel, in place. "" where done or where nothing applies (no GPU, no such layers, humming not
    installed); else the one line that says why some or all stay on the export's kernel."""
    layers = exported_layers(model) if model.device.type == "cuda" and installed() else []
    if not layers:
        return ""
    fmt, own = ("int4", "tinygemm") if layers[0][1] is WEIGHTS else ("int8", "torchao's int8 kernel")
    try:
        from humming.layer import HummingLayer
    except Exception as e:  # cuda-bindings missing or of another CUDA, among others
        return (f"{fmt} stays on {own}: humming does not load here ({type(e).__name__}: {first_line(e)}); "
                f"measured with {PACKAGES}")
    from tqdm.auto import tqdm

    identities: dict[tuple, torch.Tensor] = {}  # int4: one per input width and device
    moved = 0
    try:  # the first layer of each shape waits for its kernels to compile (a minute or two on a new machine)
        for module, scheme in tqdm(layers, desc=f"{fmt} layers onto humming's kernel", unit="layer"):
            device = module.weight.device
            weight = exported_weight(module, scheme, identities)
            with torch.cuda.device(device):  # humming puts its own buffers on the current device
                kernel = HummingLayer(shape_n=module.out_features, shape_k=module.in_features,
                                      torch_dtype=torch.bfloat16, weight_config=dict(scheme)).to(device)
                load_levels(kernel, module, scheme, weight)
                check_levels(kernel, weight, f"{fmt} levels")
                kernel.transform()
                check_product(kernel, module)
            del weight
            swap_in(module, kernel)
            moved += 1
    except Exception as e:
        kept = (f"{fmt} stays on {own}" if not moved
                else f"{len(layers) - moved} of {len(layers)} {fmt} layers stay on {own}")
        return f"{kept}: moving them onto humming's kernel failed ({type(e).__name__}: {first_line(e)})"
    finally:
        identities.clear()
        torch.cuda.empty_cache()
    return ""


def exported_layers(model) -> list[tuple[torch.nn.Linear, dict]]:
    """The linear layers of `model` holding an export's int4 (tinygemm) or weight-only int8 (torchao) weights, each
    with the humming scheme that holds the same levels."""
    from torchao.quantization import Int4TilePackedTo4dTensor, Int8Tensor

    found = []
    for module in model.modules():
        if type(module) is not torch.nn.Linear:
            continue
        if isinstance(module.weight, Int4TilePackedTo4dTensor):
            found.append((module, WEIGHTS))
        elif isinstance(module.weight, Int8Tensor) and module.weight.act_quant_kwargs is None:  # weights only
            found.append((module, INT8_WEIGHTS))
    return found


def exported_weight(module: torch.nn.Linear, scheme: dict, identities: dict) -> torch.Tensor:
    """The weights `module` multiplies by, [out, in]: int8's own dequantize (in float32, where level times scale is
    exact); tinygemm's int4 layout has none, so its product with the identity (`identities`: one per input width
    and device, kept between layers)."""
    if scheme is INT8_WEIGHTS:
        return module.weight.dequantize(torch.float32)
    device, width = module.weight.device, module.in_features
    identity = identities.get((device, width))
    if identity is None:
        identity = identities[(device, width)] = torch.eye(width, dtype=torch.bfloat16, device=device)
    return torch.nn.functional.linear(identity, module.weight).t().contiguous()


def load_levels(kernel, module: torch.nn.Linear, scheme: dict, weight: torch.Tensor) -> None:
    """`kernel` given the export's levels: int8's as torchao holds them (its codes offset by 128, as humming stores
    integers, packed by humming's own op; its scale per row in bf16), since quantized again from `weight` about half
    the rows would move a level (humming divides a row's largest weight by 128, torchao by 127.5). A layer none of
    whose weights sits at level -128 (most of a bf16 export's: torchao reaches it only by rounding) is then held by
    humming's transform in its sign-magnitude form, losslessly. int4 is quantized again from `weight` in tinygemm's
    scheme (its layout cannot be unpacked)."""
    if scheme is not INT8_WEIGHTS:
        kernel.load_from_unquantized(weight)
        return
    from humming import ops

    codes = (module.weight.qdata.to(torch.int32) + 128).contiguous()
    scale = module.weight.scale.reshape(-1, 1).to(torch.bfloat16)
    tensors = {"weight": ops.pack_weight(codes, 8), "weight_scale": scale}
    expected = {name for name, _ in kernel.named_parameters()}
    if tensors.keys() != expected:  # loaded without strict names, the others would stay empty
        raise ValueError(f"humming's int8 layer holds {sorted(expected)}, not {sorted(tensors)}")
    kernel.load_from_tensors(tensors)


def swap_in(module: torch.nn.Linear, kernel: torch.nn.Module) -> None:
    """`module` made a HummingLinear in place (it keeps its name, its hooks and its bias) whose product is `kernel`'s;
    its own weights freed."""
    module.weight = None
    module.kernel, module.kernel_index = kernel, len(_KERNELS)
    _KERNELS.append(weakref.ref(kernel))
    module.__class__ = HummingLinear


def check_levels(kernel, weight: torch.Tensor, what: str) -> None:
    """Raise where the weights `kernel` holds (quantized, before humming packs them for its kernel) are further from
    `weight`, the export's, than rounding: an int4 layer with many groups of one sign (see above), or int8 levels
    that did not load as they are."""
    held = kernel.weight_schema.dequant_tensors({name: p.data for name, p in kernel.named_parameters()})
    check_close(held.view_as(weight), weight, what)


def check_product(kernel, module: torch.nn.Linear) -> None:
    """Raise where `kernel`'s product of a row differs from `module`'s (the layer as exported, bias left out) by more
    than rounding, or fails: the kernel compiles on its first call."""
    with torch.no_grad():
        row = torch.randn(1, module.in_features, dtype=module.weight.dtype, device=module.weight.device)
        expected = torch.nn.functional.linear(row, module.weight)
        check_close(kernel(row.to(torch.bfloat16)), expected, "product of one row")


def check_close(held: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Raise where `held` is further from `expected` (relative distance) than AGREEMENT allows."""
    gap = ((held.float() - expected.float()).norm() / expected.float().norm()).item()
    if not gap <= AGREEMENT:
        raise ValueError(f"a layer's {what} moved {gap:.3f} from the export's (allowed {AGREEMENT})")


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [""])[0][:200]
