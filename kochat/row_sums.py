"""One-row products compiled as sums: where gen()'s fast mode does it, and the MLP's GELU kept out of them.

Under inductor's coordinate-descent tuning (turned on for the process by torchao's int8 and int4 configurations
where they quantize, with their default set_inductor_config, and by one_row_tuning below while one row of int8
weights compiles; a model's generation_config.compile_config may turn it on too), a matrix product of one row is
compiled as a multiply and a sum (torch/_inductor/decomposition.py, `mm`), and whatever element-wise work produces
its input is inlined into that sum. Before the MLP's second product that work is the activation, so every program
of the sum computes it again over the whole intermediate row: at the 12.8b shape with int8 weights GELU made that
product take 56 µs a layer inside gen() against 34 µs alone. Called through an opaque custom op, the activation
is computed once, by its own small kernel, and the sum reads its output: 170.4 tokens/s against 161.2
(bench/RESULTS.md). Only GELU: a gated MLP's SiLU is cheap to recompute, and kept apart it cost Qwen3-8B 7 %
(172.6 against 184.7; its input, a slice of the fused gate/up product, is copied for the op), so a gated MLP
(Gemma's GELU too) is left as it is. The same values; for answering only (the op has no backward). Measured at
batch 1; at larger batches the products are not sums, and the activation is one kernel either way.
Turned on through the compile's options instead (CUDA graphs and the tuning, as bench.quant_kernels --compile=tuned),
int8 answered slower than with torchao's settings for the process, 132 tokens/s, GELU apart or not: so where gen()
turns the tuning on, it does so as torchao does.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

import torch

NAMES = ("act", "act_fn", "activation_fn")  # the activation's attribute in transformers' MLP classes
_ACTIVATIONS: list[torch.nn.Module] = []     # the op's activations, by index (a custom op takes no modules)


@torch.library.custom_op("kochat::apart_activation", mutates_args=())
def _apart(x: torch.Tensor, index: int) -> torch.Tensor:
    return _ACTIVATIONS[index](x)


@_apart.register_fake
def _(x: torch.Tensor, index: int) -> torch.Tensor:
    return torch.empty_like(x)


class Apart(torch.nn.Module):
    """An activation module, called where inductor cannot inline it (no backward: for answering only)."""

    def __init__(self, activation: torch.nn.Module):
        super().__init__()
        self.index = len(_ACTIVATIONS)
        _ACTIVATIONS.append(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.kochat.apart_activation(x, self.index)

    def extra_repr(self) -> str:
        return f"{type(_ACTIVATIONS[self.index]).__name__}, as its own kernel"


def row_products_are_sums(compile_config) -> bool:
    """Whether a compile with `compile_config` (transformers' CompileConfig or None) turns one-row products into
    sums: inductor's coordinate-descent tuning, set for the process, by the config's mode (the max-autotune ones)
    or in its options."""
    import torch._inductor as inductor

    mode = getattr(compile_config, "mode", None)
    options = {**(inductor.list_mode_options(mode) if mode else {}), **(getattr(compile_config, "options", None) or {})}
    return bool(options.get("coordinate_descent_tuning", inductor.config.coordinate_descent_tuning))


def keep_apart(model) -> int:
    """Wrap the GELU of each MLP of `model` (transformers' *MLP classes) that has no gate in place; how many were
    wrapped (0 where done before, or where the activation is another, or gated: Gemma's GELU reads a slice of the
    fused gate/up product, as Qwen3's SiLU, which was slower apart; or where the MLP's layers multiply one row on
    the dp4a kernel, kochat/dp4a_kernel.py: no sums there, and the activation fuses with the row's rounding to int8,
    as the 12.8b shape's figures on it were measured; or on kochat's bf16 kernel, kochat/row16_kernel.py: no sums
    there either)."""
    from .dp4a_kernel import Dp4aLinear
    from .row16_kernel import Row16Linear

    wrapped = 0
    for module in model.modules():
        if not type(module).__name__.endswith("MLP") or hasattr(module, "gate_proj"):
            continue
        if any(isinstance(layer, (Dp4aLinear, Row16Linear)) for layer in module.children()):
            continue
        for name in NAMES:
            activation = getattr(module, name, None)
            if isinstance(activation, torch.nn.Module) and "GELU" in type(activation).__name__:
                setattr(module, name, Apart(activation))
                wrapped += 1
    return wrapped


def holds_int8(model) -> bool:
    """Whether `model` has torchao int8 weights as export_ko.py saves them with torchao 0.18 (Int8Tensor; an
    export of an older torchao, in its AffineQuantizedTensor form, is not recognised and compiles as before)."""
    if "torchao" not in sys.modules:  # no torchao weights without it
        return False
    try:
        from torchao.quantization import Int8Tensor
    except ImportError:  # another torchao release: its int8 weights are not these
        return False

    return any(isinstance(p, Int8Tensor) for p in model.parameters())


@contextmanager
def one_row_tuning(model, rows: int):
    """torchao's recommended inductor settings (coordinate-descent tuning among them) while `rows` == 1 rows of a
    model with torchao's int8 weights compile, as torchao's int8 configuration sets them for the whole process where
    it quantizes: an export loaded as saved has not been through that. Compiled without them, the 12.8b shape
    answered one row at 9.6 tokens/s on torchao's int8, with them 153.1 (bench/RESULTS.md). Not once every int8
    layer has moved onto the dp4a kernel (kochat/dp4a_kernel.py) or humming's, and on the dp4a kernel they did not
    pay: on one H200 in one session the 12.8b int8 export answered at 187.5 tokens/s with them and 189.0 without, its
    first compile 92 s against 66 (a model with any int8 layer left on torchao's kernel compiles, all of it, with
    them). Only for one row, and undone after: a batch of 16 compiled for over 8 minutes under them. Elsewhere
    nothing changes."""
    if rows != 1 or not holds_int8(model):
        yield
        return
    import torch._inductor.config as inductor
    from torchao.quantization.utils import recommended_inductor_config_setter

    before = inductor.get_config_copy()
    recommended_inductor_config_setter()
    try:
        yield
    finally:
        inductor.load_config(before)
