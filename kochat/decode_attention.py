"""Attention of one new token a row, for gen()'s fast mode: on a pooled cache (kochat/kv_cache.py), and in a
grouped-query model (Qwen3, Llama 3, Gemma…: fewer key/value heads than query heads, Qwen3-8B 8 and 32).

A pooled cache hands back one pool of slots for all rows, [key/value heads, slots, dim], and its mask, each row's
own written slots, which are contiguous. On a GPU that FlashAttention runs on (sm80+, 16-bit), its variable-length
kernel attends each row's written slots alone: a row's first slot and how many are written, read off the mask
(vLLM's paged kernels read a row's pages the same way). Elsewhere every row's query heads become rows of one
product with the whole pool, masked, then a softmax in float32 as transformers' eager attention takes it: each
key read once, but scores for every row against every slot, the unwritten ones too (measured at 16 rows on an
H200: bench/RESULTS.md).

transformers' sdpa attention widens the cached keys and values to every query head before attending whenever it
is given a mask, and a static cache always gives one: two copies of the whole cache a layer, every token. With
one new token the query heads that share a key/value head can be attended as that head's rows instead: the same
products on the cache as it is, without the copies (transformers 5.23 does the same outside compiled graphs).
One row on its static cache (chat_ko.py's answers, grouped heads or not) goes, on an NVIDIA GPU with cuda-bindings,
to kochat/one_row_attention.py's kernel: one launch a layer where sdpa's took one or two and several small ones.
Registered through transformers' AttentionInterface under its own name, with sdpa's masks; anything else (a
prompt of several tokens, a mask per head, a model without grouped heads) goes to transformers' sdpa unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import one_row_attention

NAME = "kochat_sdpa_decode"


def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if key.dim() == 3:  # a pooled cache's keys, shared by every row
        scale = query.shape[-1] ** -0.5 if scaling is None else scaling
        return pooled(query, key, value, attention_mask[:, 0, 0], scale), None
    batch, heads, length, dim = query.shape
    if one_row_attention.takes(query, key, value, attention_mask, dropout, kwargs):  # one row's static cache
        scale = dim ** -0.5 if scaling is None else scaling
        out = one_row_attention.attend(query[0, :, 0], key[0], value[0], attention_mask[0, 0, 0], scale)
        return out.view(1, 1, heads, dim), None
    groups = getattr(module, "num_key_value_groups", 1)
    if (groups == 1 or length != 1 or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None
            or (attention_mask is not None and attention_mask.shape[1] != 1)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    # query head h reads key/value head h // groups (repeat_kv's order): [batch, kv heads, groups, dim]
    rows = query.reshape(batch, heads // groups, groups, dim)
    out = F.scaled_dot_product_attention(rows, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling)
    return out.reshape(batch, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


def pooled(query, keys, values, written, scaling: float):
    """query [batch, heads, 1, dim]; keys and values [kv heads, slots, dim]; written [batch, slots], each row's
    slots. Returns [batch, 1, heads, dim]. Query head h reads key/value head h // groups (repeat_kv's order)."""
    if flash_runs(query):
        return pooled_flash(query, keys, values, written, scaling)
    return pooled_products(query, keys, values, written, scaling)


def flash_runs(query) -> bool:
    """Whether FlashAttention's kernel takes `query`: an NVIDIA GPU of compute capability 8.0 or more (not a T4 or a
    V100), a PyTorch built with it, 16-bit values, a head size it has kernels for. Not on ROCm, whose port refuses
    seqused_k. Constant inside a compile (torch.backends.cuda.flash_sdp_enabled() would break its graph)."""
    dim = query.shape[-1]
    return (query.is_cuda and torch.version.hip is None and query.dtype in (torch.float16, torch.bfloat16)
            and dim % 8 == 0 and dim <= 256 and torch.backends.cuda.is_flash_attention_available()
            and torch.cuda.get_device_capability(query.device)[0] >= 8)


def pooled_flash(query, keys, values, written, scaling: float):
    """pooled() through FlashAttention's variable-length kernel (what torch.nn.attention.varlen calls): row r's keys
    start at its first written slot (cu_seq_k[r]) and `seqused_k[r]` of them are read; the rest of the pool is not."""
    batch, heads, _, dim = query.shape
    first = written.int().argmax(-1).int()  # a row's first written slot: argmax returns the first of equal values
    starts = torch.cat([first, first.new_full((1,), keys.shape[1])])  # and the pool's end after the last row
    rows = torch.arange(batch + 1, dtype=torch.int32, device=query.device)  # one query token a row
    out = torch.ops.aten._flash_attention_forward(
        query.transpose(1, 2).reshape(batch, heads, dim), keys.transpose(0, 1), values.transpose(0, 1), rows, starts,
        1, keys.shape[1], 0.0, False, False, scale=scaling, seqused_k=written.sum(-1, dtype=torch.int32))[0]
    return out.view(batch, 1, heads, -1)


def pooled_products(query, keys, values, written, scaling: float):
    """pooled() as plain products over the whole pool, the unwritten slots masked: any device and dtype."""
    batch, heads, _, dim = query.shape
    kv_heads, slots = keys.shape[:2]
    rows = query.reshape(batch, kv_heads, -1, dim).transpose(0, 1).reshape(kv_heads, -1, dim)  # [kv, batch·groups, dim]
    scores = torch.matmul(rows, keys.transpose(1, 2)).view(kv_heads, batch, -1, slots) * scaling
    scores = scores.masked_fill(~written[None, :, None, :], float("-inf"))
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights.view(kv_heads, -1, slots), values)  # [kv, batch·groups, dim]
    return out.view(kv_heads, batch, -1, values.shape[-1]).transpose(0, 1).reshape(batch, 1, heads, -1)


def use_for_decoding(model) -> bool:
    """Switch `model` (in place) from transformers' sdpa to this attention; whether it did (or had). For a model
    without grouped heads it changes only a pooled cache's steps and one row's (where kochat/one_row_attention.py's
    kernel runs, checked here first): the rest goes to sdpa as before."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    if model.config._attn_implementation not in (NAME, "sdpa"):
        return False
    one_row_attention.check(model)
    if model.config._attn_implementation == NAME:
        return True
    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)  # a model that cannot switch keeps sdpa (transformers logs why)
    return model.config._attn_implementation == NAME
