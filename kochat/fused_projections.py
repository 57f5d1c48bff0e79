"""Linear layers that read the same input, multiplied as one: q/k/v of attention, gate/up of a gated MLP.

At batch 1 each generated token multiplies one row by every weight matrix, and a small matrix (a GQA model's k and
v are 4,096 × 1,024) cannot keep the GPU's memory busy for the few microseconds it takes: several such products a
layer leave bandwidth unused. Stacked, the three attention projections are one product and the two MLP inputs one
more, as vLLM and gpt-fast hold them. transformers' Llama-family layers call q_proj, k_proj and v_proj one after
another on one tensor, so each is replaced by a Slice of a shared FusedLinear: the first Slice called with a new
input computes the whole product and the others take their columns of it; the attention or MLP layer lets it go
when its call ends (a compiled graph has no extra output). Same weights; the same values up to the order in
which a GPU kernel sums them. No change to transformers' own forward. GPT-NeoX already stores q/k/v as one matrix
and has no gated MLP.

For answering only: done in place by gen()'s fast mode where it compiles (a GPU), on 16- and 32-bit weights
(torchao's quantized tensors and LoRA layers are left as they are), or as a 16-bit model loads to answer one row at
a time on a GPU (kochat/row16_kernel.py, which then multiplies a stacked product of one row: `multiply`). A fused
model's state_dict() names the stacked weights, not q_proj's and the others': save or train the model as loaded,
not after fast answers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # transformers' names in Llama-family layers


class FusedLinear(torch.nn.Module):
    """The stacked weights (and biases) of several linear layers, and the newest product of them while the layer
    that holds them runs (released by hooks on that layer before and after each call)."""

    def __init__(self, linears: list[torch.nn.Linear]):
        super().__init__()
        with torch.inference_mode(False):  # gen() runs in inference mode; the weights stay ordinary tensors
            self.weight = torch.nn.Parameter(torch.cat([m.weight.data for m in linears]), requires_grad=False)
            self.bias = None if linears[0].bias is None else torch.nn.Parameter(
                torch.cat([m.bias.data for m in linears]), requires_grad=False)
        self.input = self.output = None
        self.multiply = None  # a module that multiplies in F.linear's place (kochat/row16_kernel.py: one row)

    def slice_of(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if self.input is not x:  # the first member called with this input (a member fed another input gets its own)
            product = self.multiply(x) if self.multiply is not None else F.linear(x, self.weight, self.bias)
            self.input, self.output = x, product
        return self.output[..., start:stop]

    def release(self, *_) -> None:
        self.input = self.output = None


class Slice(torch.nn.Module):
    """What was one of the fused linear layers: its columns of the shared product."""

    def __init__(self, fused: FusedLinear, start: int, stop: int):
        super().__init__()
        self.fused, self.start, self.stop = fused, start, stop
        self.in_features, self.out_features = fused.weight.shape[1], stop - start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused.slice_of(x, self.start, self.stop)


def fusable(linears: list) -> bool:
    """Plain linear layers (no hooks or forward of their own) with plain 16- or 32-bit weights of one dtype and
    device, all with or all without bias."""
    return all(type(m) is torch.nn.Linear and type(m.weight) is torch.nn.Parameter and
               m.weight.dtype in (torch.float16, torch.bfloat16, torch.float32) and
               not (m._forward_hooks or m._forward_pre_hooks or "forward" in vars(m) or hasattr(m, "_hf_hook")) and
               set(dict(m.named_parameters())) <= {"weight", "bias"} for m in linears) and \
        len({(m.weight.dtype, m.weight.device, m.in_features, m.bias is None) for m in linears}) == 1


def fuse_projections(model) -> int:
    """Fuse each group of GROUPS found in `model` in place; returns how many groups were fused (0 where none
    fits: GPT-NeoX, quantized or LoRA-wrapped layers, or a model already fused). Each group's own weights are let
    go before the next group is stacked, so that fusing takes one group's memory more at most (holding them all to
    the end took 8.3 GiB more at the Qwen3-8B shape). The layer holding a group releases its product before and
    after each call, so nothing outlives the call, even where a member is skipped or a call fails half way."""
    fused = 0
    parents = [m for m in model.modules() if any(hasattr(m, names[0]) for names in GROUPS)]
    for module in parents:
        for names in GROUPS:
            linears = [getattr(module, name, None) for name in names]
            if not fusable(linears):
                continue
            shared, start = FusedLinear(linears), 0
            for name, linear in zip(names, linears):
                setattr(module, name, Slice(shared, start, start + linear.out_features))
                start += linear.out_features
            module.register_forward_pre_hook(shared.release)
            module.register_forward_hook(shared.release)
            fused += 1
            del linears, linear
    return fused
