"""The MLP's activation as a kernel of its own, where gen()'s fast mode compiles one-row products as sums.

Under inductor's coordinate-descent tuning (torchao's int8 and int4 configurations turn it on for the process; a
model's generation_config.compile_config may), a matrix product of one row is compiled as a multiply and a sum
(torch/_inductor/decomposition.py, `mm`), and whatever element-wise work produces its input is inlined into that
sum. Before the MLP's second product that work is the activation (GELU, or SiLU of a gated MLP), so every program
of the sum computes it again over the whole intermediate row: at the 12.8b shape with int8 weights that product
took 56 µs a layer inside gen() against 34 µs alone (bench/RESULTS.md, "A second try at one-row kernels").
Called through an opaque custom op, the activation is computed once, by its own small kernel, and the sum reads
its output. The same module and values; for answering only.
"""
from __future__ import annotations

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
    """An activation module, called where inductor cannot inline it."""

    def __init__(self, activation: torch.nn.Module):
        super().__init__()
        self.activation, self.index = activation, len(_ACTIVATIONS)
        _ACTIVATIONS.append(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.kochat.apart_activation(x, self.index)


def row_products_are_sums(compile_config) -> bool:
    """Whether a compile with `compile_config` (transformers' CompileConfig or None) turns one-row products into
    sums: inductor's coordinate-descent tuning, set for the process or in the config's options."""
    import torch._inductor.config as inductor

    options = getattr(compile_config, "options", None) or {}
    return bool(options.get("coordinate_descent_tuning", inductor.coordinate_descent_tuning))


def keep_apart(model) -> int:
    """Wrap the activation of each MLP of `model` (transformers' *MLP classes) in place; how many were wrapped
    (0 where done before)."""
    wrapped = 0
    for module in model.modules():
        if not type(module).__name__.endswith("MLP"):
            continue
        for name in NAMES:
            activation = getattr(module, name, None)
            if isinstance(activation, torch.nn.Module) and not isinstance(activation, Apart):
                setattr(module, name, Apart(activation))
                wrapped += 1
    return wrapped
