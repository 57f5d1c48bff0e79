"""Fast mode's key/value cache, in the model's dtype where a batch's cache fits the GPU, else in 8 bits at about
half the memory; for a batch of several rows, pooled: each row holds its own prompt and answer, no padding.

transformers' StaticCache gives every row of a batch the longest row's length: the shorter prompts' left padding
and the answers' room rounded up. At the 12.8b shape 16 rows of 512 tokens hold 6.25 GiB of 16-bit keys and
values, as much as the int4 weights (bench/RESULTS.md), where the rows themselves need 3.7. The pooled cache keeps
each layer's keys (and values) as one pool of token slots, [key/value heads, slots, head_dim]: row after row, each
row's prompt tokens (its padding left out) and then one slot for each token it may generate (its own limit), the
pool rounded up to POOL_STEP slots a row so nearby batches reuse one CUDA graph. A token at position p of row r
sits in slot start[r] + p. One new token of every row then attends its own written slots, given as a mask
(kochat/decode_attention.py: on a GPU FlashAttention's variable-length kernel reads only those, as a paged cache's
kernel (vLLM's) reads a row's pages; elsewhere one masked product over the pool). The prompt itself is attended as
transformers attends it; the pool only keeps its keys.

The 8-bit layouts keep each head's key (or value) vector at each position as int8 in units of its own scale, a
power of 2 ** (1/4) (the smallest that puts its largest value within 127; the OCP microscaling formats scale by
powers of 2), the scale's exponent as one more byte at the end of the row, so a cache stores and indexes both as
one int8 tensor: any GPU or CPU, inside a compiled graph too (float8 would need an sm89+ GPU there). Each step
reads the whole cache back into the model's dtype for attention, about 2.5 times the memory traffic of a 16-bit
cache (a byte read, two written, two read again, against two read): paid only where the 16-bit cache would not fit.
"""
from __future__ import annotations

import logging
import weakref

import torch
from transformers import StaticCache
from transformers.cache_utils import Cache, StaticLayer

from .estimate import GIB

log = logging.getLogger(__name__)

HEADROOM_GIB = 1.0  # kept free beside the cache: the step's activations, CUDA graphs, the prefill of a batch
SCALE_STEPS = 4     # scales are powers of 2 ** (1 / 4): the largest value lands within 107..127, and the exponent,
                    # one int8, spans 2 ** ±32

POOL_STEP = 32      # pooled cache slots a row are rounded up to this (the pool to this times the batch); a static
                    # cache rounds each row's length to generation.CACHE_STEP (128)
# auto's choice per model and shape, made once: free memory shrinks as CUDA graphs are recorded, and a
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
        need = cache_bytes(cache, model.config, batch, model.dtype.itemsize)
        cache_8bit = in_8_bits(model, (batch, length), need, f"{batch} rows of {length} tokens")
    if cache_8bit:
        cache.layers = [Int8CacheLayer(layer.max_cache_len) if type(layer) is StaticLayer else layer
                        for layer in cache.layers]
    return cache


def in_8_bits(model, shape: tuple, need: int, what: str) -> bool:
    """auto's choice: whether a cache of `need` bytes in the model's dtype, with HEADROOM_GIB beside it, would not
    fit the GPU; decided once per model and `shape` (saying so in one line where it chose 8 bits)."""
    choices = _chosen.setdefault(model, {})
    if shape not in choices:
        free = free_bytes(model.device)
        choices[shape] = need + HEADROOM_GIB * GIB > free
        if choices[shape]:  # once per shape: where memory ran short, an operator wants to know
            log.warning("%s: key/value cache in 8 bits (in %s it would take %.1f GiB, %.1f GiB free)", what,
                        str(model.dtype).removeprefix("torch."), need / GIB, free / GIB)
    return choices[shape]


def batch_cache(model, attention_mask: torch.Tensor, limits: list[int], length: int,
                cache_8bit: bool | None) -> "PooledCache | StaticCache":
    """Fast mode's cache for a batch: left-padded prompts (`attention_mask`, [batch, width]), each row's token
    limit, `length` the static cache's (width plus the longest limit, rounded). Pooled where the batch has
    several rows and the model can attend a pool (every layer full attention, on one device, its attention
    switched to kochat/decode_attention.py's, keys and values cached per head: not latents, as multi-head latent
    attention caches them, DeepSeek-V3's or GLM-4.7-Flash's); else static. cache_8bit as static_cache's."""
    from . import decode_attention

    batch = attention_mask.shape[0]
    layers = StaticCache(config=model.config, max_cache_len=length).layers  # the model's layer kinds, unallocated
    places = set(getattr(model, "hf_device_map", {}).values())
    latent = getattr(model.config.get_text_config(decoder=True), "kv_lora_rank", None) is not None
    if batch == 1 or len(places) > 1 or latent or any(type(layer) is not StaticLayer for layer in layers) or \
            not decode_attention.use_for_decoding(model):
        return static_cache(model, batch, length, cache_8bit)
    # each row's prompt and a slot for each token it may generate; at least one (an empty prompt with no tokens to
    # generate would own none, and its writes would land in the row before)
    need = (attention_mask.sum(1).cpu() + torch.tensor(limits)).clamp(min=1)
    slots = -(-int(need.sum()) // (POOL_STEP * batch)) * POOL_STEP * batch
    if cache_8bit is None:
        pool_bytes = int(slots * len(layers) * bytes_per_token(model.config, model.dtype.itemsize))
        cache_8bit = in_8_bits(model, ("pooled", batch, slots), pool_bytes, f"{batch} rows, {slots} tokens pooled")
    return PooledCache(attention_mask, need, slots, eight_bit=cache_8bit)


class PooledCache(Cache):
    """Each layer's keys and values as one pool of token slots for a whole batch (the module's docstring).

    The prompt (the first update of a layer) goes into each row's first slots and is handed back as it came, for
    transformers to attend as usual (no layers here: its masks are those of a fresh cache). Each later update is
    one new token a row, written to the slot `step` chose, and hands back the whole pool, [heads, slots, dim]:
    three dimensions, which decode_attention tells from a static cache's four. A row past its own limit keeps
    writing its last slot (its tokens are padding by then), never a neighbour's."""

    def __init__(self, attention_mask: torch.Tensor, need: torch.Tensor, slots: int, eight_bit: bool = False):
        super().__init__(layers=[])
        device = attention_mask.device
        self.start = (torch.cumsum(need, 0) - need).to(device)  # each row's first slot
        self.last = self.start + need.to(device) - 1  # and its last
        self.prompt = attention_mask.bool()
        position = (attention_mask.long().cumsum(-1) - 1)  # a prompt token's position: its slot is start + position
        self.prompt_slots = (self.start[:, None] + position)[self.prompt]
        self.slot = torch.zeros_like(self.start)  # the slot each row writes in this step
        torch._dynamo.maybe_mark_dynamic(self.slot, 0)  # the batch varies (step() says why)
        self.slots, self.eight_bit, self.decoding = slots, eight_bit, False
        self.pools: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.every_slot = torch.arange(slots, device=device)

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        if not self.decoding:  # the prompt: kept, and attended as it came
            if layer_idx == len(self.pools):
                self.pools.append(tuple(self.new_pool(states) for states in (key_states, value_states)))
            for pool, states in zip(self.pools[layer_idx], (key_states, value_states)):
                rows = states.transpose(1, 2)[self.prompt]  # [prompt tokens, heads, dim], the padding left out
                pool.index_copy_(1, self.prompt_slots, self.stored(rows).transpose(0, 1))
            return key_states, value_states
        keys, values = self.pools[layer_idx]
        for pool, states in ((keys, key_states), (values, value_states)):
            pool.index_copy_(1, self.slot, self.stored(states[:, :, 0]).transpose(0, 1))
        if self.eight_bit:
            return from_int8_rows(keys, key_states.dtype), from_int8_rows(values, value_states.dtype)
        return keys, values

    def step(self, position: torch.Tensor) -> torch.Tensor:
        """Before each new token: each row's slot for it (`position`, [batch, 1], the token's), in place for a
        compiled step to read; returns the attention mask, [batch, 1, 1, slots]: each row's written slots.
        The step's inputs (the cache's tensors, `position`, the mask; the caller marks the new tokens) are marked as
        varying in the batch and the number of slots, so that torch.compile makes the first batch of two rows or
        more one graph for any: unmarked, it specializes on that batch and compiles again at the next."""
        self.decoding = True
        torch.minimum(self.start + position[:, 0], self.last, out=self.slot)
        written = (self.every_slot >= self.start[:, None]) & (self.every_slot <= self.slot[:, None])
        mask = written[:, None, None, :]
        torch._dynamo.maybe_mark_dynamic(position, 0)
        torch._dynamo.maybe_mark_dynamic(mask, [0, 3])
        return mask

    def new_pool(self, states: torch.Tensor) -> torch.Tensor:
        heads, dim = states.shape[1], states.shape[-1] + self.eight_bit
        pool = torch.zeros(heads, self.slots, dim, dtype=torch.int8 if self.eight_bit else states.dtype,
                           device=states.device)
        torch._dynamo.mark_static_address(pool)  # a compiled step's CUDA graph writes it where it is, as StaticLayer's
        torch._dynamo.maybe_mark_dynamic(pool, 1)  # and the number of slots varies (step() says why)
        return pool

    def stored(self, states: torch.Tensor) -> torch.Tensor:
        return to_int8_rows(states) if self.eight_bit else states
