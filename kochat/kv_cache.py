"""Fast mode's key/value cache: transformers' StaticCache, in the model's dtype where a batch's cache fits the GPU,
else in 8 bits at about half the memory.

At the 12.8b shape a batch of 16 rows of 512 tokens holds 6.25 GiB of 16-bit keys and values, as much as the int4
weights (bench/RESULTS.md): on a 12 GB card the cache, not the model, is what does not fit. The 8-bit layers keep
each head's key (or value) vector at each position as int8 in units of its own scale, a power of 2 ** (1/4) (the
smallest that puts its largest value within 127; the OCP microscaling formats scale by powers of 2), the scale's
exponent as one more byte at the end of the row, so transformers' StaticLayer stores and indexes both as one int8
tensor: any GPU or CPU, inside a compiled graph too (float8 would need an sm89+ GPU there). Each step reads the
whole cache back into the model's dtype for attention, about 2.5 times the memory traffic of a 16-bit cache (a
byte read, two written, two read again, against two read): paid only where the 16-bit cache would not fit.
"""
from __future__ import annotations

import logging
import weakref

import torch
from transformers import StaticCache
from transformers.cache_utils import StaticLayer

from .estimate import GIB

log = logging.getLogger(__name__)

HEADROOM_GIB = 1.0  # kept free beside the cache: the step's activations, CUDA graphs, the prefill of a batch
SCALE_STEPS = 4     # scales are powers of 2 ** (1 / 4): the largest value lands within 107..127, and the exponent,
                    # one int8, spans 2 ** ±32

# auto's choice per model and (batch, length), made once: free memory shrinks as CUDA graphs are recorded, and a
# choice that flipped later would compile the decoding step again (a minute at 12.8b) and change greedy answers
_chosen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Int8CacheLayer(StaticLayer):
    """A StaticLayer whose rows are int8 values followed by their scale's exponent."""

    def update(self, key_states, value_states, *args, **kwargs):
        keys, values = super().update(to_int8_rows(key_states), to_int8_rows(value_states), *args, **kwargs)
        return from_int8_rows(keys, key_states.dtype), from_int8_rows(values, value_states.dtype)


def to_int8_rows(states: torch.Tensor) -> torch.Tensor:
    """(…, head_dim) floats → (…, head_dim + 1) int8: the values in units of their scale, then its exponent.
    Magnitudes beyond 127 · 2 ** 31.75 saturate; a row with a NaN comes back as zeros."""
    largest = states.abs().amax(-1, keepdim=True).float().clamp(min=2.0 ** -100)
    exponent = torch.ceil(torch.log2(largest / 127) * SCALE_STEPS).clamp(-127, 127)  # the smallest scale that fits
    values = (states.float() * torch.exp2(-exponent / SCALE_STEPS)).round().clamp(-127, 127)
    return torch.cat([values, exponent], dim=-1).to(torch.int8)


def from_int8_rows(rows: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Back in `dtype`, computed in it (a float32 copy of a whole layer would cost more than the 8 bits save)."""
    return rows[..., :-1].to(dtype) * torch.exp2(rows[..., -1:].float() / SCALE_STEPS).to(dtype)


def bytes_per_token(config, bytes_per_value: float) -> float:
    """One token's keys and values in one layer."""
    text = config.get_text_config(decoder=True)
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return 2 * kv_heads * head_dim * bytes_per_value


def cache_bytes(cache: StaticCache, config, batch: int, bytes_per_value: float) -> int:
    """What `cache` holds once filled: each layer's own length (a sliding-window layer's is its window)."""
    return int(sum(layer.max_cache_len for layer in cache.layers) * batch * bytes_per_token(config, bytes_per_value))


def room_for(config, batch: int, length: int, bytes_per_value: float) -> int:
    """What answering `batch` rows of `length` tokens wants free beside the weights: their cache at
    `bytes_per_value` (the model's dtype's size) and the headroom static_cache keeps beside it."""
    cache = StaticCache(config=config, max_cache_len=length)  # sizes only: its layers allocate when first used
    return cache_bytes(cache, config, batch, bytes_per_value) + int(HEADROOM_GIB * GIB)


def free_bytes(device: torch.device) -> float:
    """Memory a new cache can take on a GPU: free memory plus the blocks PyTorch holds unused. Unbounded on a CPU,
    whose memory the model's own size already bounds."""
    if device.type != "cuda":
        return float("inf")
    return torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def static_cache(model, batch: int, length: int, cache_8bit: bool | None) -> StaticCache:
    """A StaticCache for `batch` rows of `length` tokens. cache_8bit None (auto): 8-bit where the cache in the
    model's dtype, with HEADROOM_GIB beside it, would not fit, decided once per model, batch and length.
    Sliding-window layers (Gemma's, as long as their window) keep the model's dtype."""
    cache = StaticCache(config=model.config, max_cache_len=length)
    if cache_8bit is None:
        choices = _chosen.setdefault(model, {})
        if (batch, length) not in choices:
            need, free = cache_bytes(cache, model.config, batch, model.dtype.itemsize), free_bytes(model.device)
            choices[batch, length] = need + HEADROOM_GIB * GIB > free
            if choices[batch, length]:  # once per shape: where memory ran short, an operator wants to know
                log.warning("%d rows of %d tokens: key/value cache in 8 bits (in %s it would take %.1f GiB, "
                            "%.1f GiB free)", batch, length, str(model.dtype).removeprefix("torch."), need / GIB,
                            free / GIB)
        cache_8bit = choices[batch, length]
    if cache_8bit:
        cache.layers = [Int8CacheLayer(layer.max_cache_len) if type(layer) is StaticLayer else layer
                        for layer in cache.layers]
    return cache
