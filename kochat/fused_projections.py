"""Linear layers that read the same input, multiplied as one: q/k/v of attention, gate/up of a gated MLP.

At batch 1 each generated token multiplies one row by every weight matrix, and a small matrix (a GQA model's k and
v are 4,096 × 1,024) cannot keep the GPU's memory busy for the few microseconds it takes: several such products a
layer leave bandwidth unused. Stacked, the three attention projections are one product and the two MLP inputs one
more, as vLLM and gpt-fast hold them. transformers' Llama-family layers call q_proj, k_proj and v_proj one after
another on one tensor, so each is replaced by a Slice of a shared FusedLinear: the first Slice called with a new
input computes the whole product, the others take their columns of it, and the last lets it go (nothing is kept
between calls: a compiled graph has no extra output). Same weights, same values (one product in place of three),
no change to transformers' own forward. GPT-NeoX already stores q/k/v as one matrix and has no gated MLP.

For answering only: done in place by gen()'s fast mode before it compiles, on 16-bit weights (torchao's quantized
tensors and LoRA layers are left as they are). A fused model is not for training or saving.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # transformers' names in Llama-family layers


class FusedLinear(torch.nn.Module):
    """The stacked weights (and biases) of `members` linear layers; holds the newest product until each member
    took its slice."""

    def __init__(self, linears: list[torch.nn.Linear]):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.cat([m.weight.data for m in linears]), requires_grad=False)
        self.bias = None if linears[0].bias is None else torch.nn.Parameter(
            torch.cat([m.bias.data for m in linears]), requires_grad=False)
        self.members = len(linears)
        self.input = self.output = None
        self.taken = 0

    def slice_of(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if self.input is not x:  # a new input (or an earlier call that stopped half way): multiply afresh
            self.input, self.output, self.taken = x, F.linear(x, self.weight, self.bias), 0
        part = self.output[..., start:stop]
        self.taken += 1
        if self.taken == self.members:
            self.input = self.output = None
        return part


class Slice(torch.nn.Module):
    """What was one of the fused linear layers: its columns of the shared product."""

    def __init__(self, fused: FusedLinear, start: int, stop: int):
        super().__init__()
        self.fused, self.start, self.stop = fused, start, stop
        self.in_features, self.out_features = fused.weight.shape[1], stop - start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused.slice_of(x, self.start, self.stop)


def fusable(linears: list) -> bool:
    """Plain linear layers with plain 16/32-bit weights of one dtype and device, all with or all without bias."""
    return all(type(m) is torch.nn.Linear and type(m.weight) is torch.nn.Parameter and m.weight.is_floating_point()
               for m in linears) and \
        len({(m.weight.dtype, m.weight.device, m.in_features, m.bias is None) for m in linears}) == 1


def fuse_projections(model) -> int:
    """Fuse each group of GROUPS found in `model` in place; returns how many groups were fused (0 where none
    fits: GPT-NeoX, quantized or LoRA-wrapped layers, or a model already fused). Each group's own weights are let
    go before the next group is stacked: one group's worth of memory more at most (holding them all to the end
    took 8.4 GiB more at the Qwen3-8B shape)."""
    fused = 0
    parents = [m for m in model.modules() if any(hasattr(m, names[0]) for names in GROUPS)]
    for module in parents:
        for names in GROUPS:
            linears = [getattr(module, name, None) for name in names]
            if not all(isinstance(m, torch.nn.Module) for m in linears) or not fusable(linears):
                continue
            shared, start = FusedLinear(linears), 0
            for name, linear in zip(names, linears):
                setattr(module, name, Slice(shared, start, start + linear.out_features))
                start += linear.out_features
            fused += 1
            del linears, linear
    if fused and torch.cuda.is_available():
        torch.cuda.empty_cache()  # the separate weights' blocks, which no stacked weight fits, back to the GPU
    return fused
