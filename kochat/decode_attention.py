"""Attention of one new token in a grouped-query model (Qwen3, Llama 3, Gemma…: fewer key/value heads than query
heads, Qwen3-8B 8 and 32), for gen()'s fast mode.

transformers' sdpa attention widens the cached keys and values to every query head before attending whenever it
is given a mask, and a static cache always gives one: two copies of the whole cache a layer, every token. With
one new token the query heads that share a key/value head can be attended as that head's rows instead: the same
products on the cache as it is, without the copies (transformers 5.23 does the same outside compiled graphs).
Registered through transformers' AttentionInterface under its own name, with sdpa's masks; anything else (a
prompt of several tokens, a mask per head, a model without grouped heads) goes to transformers' sdpa unchanged.
"""
from __future__ import annotations

import torch.nn.functional as F

NAME = "kochat_sdpa_decode"


def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, length, dim = query.shape
    if (groups == 1 or length != 1 or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None
            or (attention_mask is not None and attention_mask.shape[1] != 1)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    # query head h reads key/value head h // groups (repeat_kv's order): [batch, kv heads, groups, dim]
    rows = query.reshape(batch, heads // groups, groups, dim)
    out = F.scaled_dot_product_attention(rows, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling)
    return out.reshape(batch, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


def use_for_decoding(model) -> bool:
    """Switch `model` (in place) from transformers' sdpa to this attention where it has grouped heads; whether it
    did."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    grouped = any(getattr(m, "num_key_value_groups", 1) > 1 for m in model.modules())
    if model.config._attn_implementation != "sdpa" or not grouped:
        return False
    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    model.set_attn_implementation(NAME)  # a model that cannot switch keeps sdpa (transformers logs why)
    return model.config._attn_implementation == NAME
