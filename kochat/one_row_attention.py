"""The attention of one new token of one row on its static cache (how chat_ko.py answers, one question at a time)
through a kernel of kochat's own, one launch a layer, on an NVIDIA GPU where cuda-bindings is installed (compiled by
NVRTC as kochat/dp4a_kernel.py's kernels, no nvcc).

Why: at one row the products no longer dominate a decoding step alone. Profiled at the Qwen3-8B shape on an H200
(bench/RESULTS.md, 2026-12-03), sdpa's cuDNN kernel took 11 µs a layer and FlashAttention's split kernel and the
kernel combining its splits 10 µs (5.8 + 4.2), plus the small kernels building FlashAttention's arguments, for a
cache of a few hundred slots: kernels waiting on memory's latency, not its bandwidth.

How: the cache is cut into splits of SPLIT slots; one block of THREADS attends one query head over one split. Its
lanes work in groups of CHUNKS, each lane holding 8 of a head's values, each group ROUNDS keys and their values, all
loaded at once (a step's latency, not its bandwidth, is the cost here). A group's scores (summed across its lanes by
shuffles), its softmax numerators relative to its top score, and its weighed values are its own; the block's groups
are combined in shared memory, and the splits by the last block of a head to finish (an atomic count, reset by that
block), each scaled to the head's top score: flash-decoding's split, without a second kernel. Slots not written (the
mask's False: the rest of a static cache, outside a sliding window) are not counted. Query head h reads key/value head
h // groups (repeat_kv's order). bf16 only; head sizes 32, 64, 128 and 256 (DIMS).

Checked once a process for each head size against PyTorch's attention (AGREEMENT) as a model first decodes with it
(decode_attention.use_for_decoding): a kernel that disagrees is one line, and that model attends as before.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from . import dp4a_kernel
from .humming_kernel import first_line

log = logging.getLogger(__name__)

SPLIT = 64      # cache slots one block attends (the kernel's SPLIT)
THREADS = 128   # a block's threads (the kernel's THREADS)
DIMS = (32, 64, 128, 256)  # head sizes compiled for: CHUNKS = DIM / 8 lanes a key, a power of two up to a warp
MOST_HEADS = 1024      # query heads a layer, the atomic counts kept a GPU
AGREEMENT = 0.01       # the kernel's output against PyTorch's attention, relative (bf16 both sides: near 0.003)
LOG2_E = 1.4426950408889634  # scores scaled by it: exp2 in the kernel

KERNEL = r"""
#define THREADS 128
#define SPLIT 64                  // cache slots a block attends
#define CHUNKS (DIM / 8)          // a key's 16-byte pieces: the lanes that read one key together, a group
#define KEYS (THREADS / CHUNKS)   // groups a block: keys read at once
#define ROUNDS (SPLIT / KEYS)     // keys a group attends, all in flight at once
#define NOTHING __int_as_float(0xff800000u)  // -inf: no score (NVRTC has no math.h)

__device__ __forceinline__ void widen(uint4 v, float* f) {
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
    #pragma unroll
    for (int i = 0; i < 4; ++i) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
    }
}

__device__ __forceinline__ unsigned short to_bf16(float f) {
    unsigned short bits;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(bits) : "f"(f));
    return bits;
}

// query [heads, DIM], keys and values [key/value heads, slots, DIM] in bf16; written [slots] bool; parts [heads,
// splits, DIM + 2] float: each split's values weighed by exp2(score - its top score), that top score, and the
// weights' total; arrived [heads]: zero before and after; out [heads, DIM] bf16. scale: the softmax's times log2(e).
extern "C" __global__ void __launch_bounds__(THREADS) one_row_attention(
        const uint4* __restrict__ query, const uint4* __restrict__ keys, const uint4* __restrict__ values,
        const unsigned char* __restrict__ written, float* __restrict__ parts, unsigned* __restrict__ arrived,
        unsigned short* __restrict__ out, int slots, int groups, float scale) {
    __shared__ float group_sums[KEYS * DIM];
    __shared__ float group_top[KEYS], group_total[KEYS];
    __shared__ bool last;
    const int splits = (slots + SPLIT - 1) / SPLIT;
    const int head = blockIdx.x / splits, first = (blockIdx.x % splits) * SPLIT;
    const int chunk = threadIdx.x % CHUNKS, group = threadIdx.x / CHUNKS;
    const long long cache = (long long)(head / groups) * slots * CHUNKS + chunk;
    WAIT_FOR_PREVIOUS();  // the new key and value, the query: the kernels before wrote them (the next one starts
    //                       only as this one ends: it reads its workspace to the end)

    // every load at once: the group's keys and values (a slot past the cache reads as zeros), whether written
    uint4 k[ROUNDS], v[ROUNDS];
    bool on[ROUNDS];
    #pragma unroll
    for (int r = 0; r < ROUNDS; ++r) {
        const int slot = first + group + KEYS * r;
        const bool inside = slot < slots;
        k[r] = inside ? keys[cache + (long long)slot * CHUNKS] : make_uint4(0u, 0u, 0u, 0u);
        v[r] = inside ? values[cache + (long long)slot * CHUNKS] : make_uint4(0u, 0u, 0u, 0u);
        on[r] = inside && written[slot];
    }
    float q[8];
    widen(query[head * CHUNKS + chunk], q);

    // each key's score, summed across the group's lanes (every lane gets it), then the group's softmax numerators
    // relative to its top score, and the values weighed by them: this lane's 8 of each
    float score[ROUNDS], top = NOTHING;
    #pragma unroll
    for (int r = 0; r < ROUNDS; ++r) {
        float f[8], dot = 0.f;
        widen(k[r], f);
        #pragma unroll
        for (int i = 0; i < 8; ++i) dot = fmaf(q[i], f[i], dot);
        #pragma unroll
        for (int step = CHUNKS / 2; step > 0; step >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, step);
        score[r] = on[r] ? dot * scale : NOTHING;
        top = fmaxf(top, score[r]);
    }
    float total = 0.f, acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    #pragma unroll
    for (int r = 0; r < ROUNDS; ++r) {
        if (!on[r]) continue;
        const float weight = exp2f(score[r] - top);
        float f[8];
        widen(v[r], f);
        total += weight;
        #pragma unroll
        for (int i = 0; i < 8; ++i) acc[i] = fmaf(weight, f[i], acc[i]);
    }
    #pragma unroll
    for (int i = 0; i < 8; ++i) group_sums[group * DIM + chunk * 8 + i] = acc[i];
    if (chunk == 0) {
        group_top[group] = top;
        group_total[group] = total;
    }
    __syncthreads();

    // the block's groups, each scaled to the block's top score
    float block_top = NOTHING;
    #pragma unroll
    for (int g = 0; g < KEYS; ++g) block_top = fmaxf(block_top, group_top[g]);
    float block_total = 0.f;
    #pragma unroll
    for (int g = 0; g < KEYS; ++g) {
        if (group_top[g] != NOTHING) block_total = fmaf(exp2f(group_top[g] - block_top), group_total[g], block_total);
    }
    float* part = parts + (long long)blockIdx.x * (DIM + 2);
    for (int d = threadIdx.x; d < DIM; d += THREADS) {
        float o = 0.f;
        #pragma unroll
        for (int g = 0; g < KEYS; ++g) {
            if (group_top[g] != NOTHING) o = fmaf(exp2f(group_top[g] - block_top), group_sums[g * DIM + d], o);
        }
        // nothing written at all: zeros, as PyTorch gives
        if (splits == 1) out[head * DIM + d] = to_bf16(block_total > 0.f ? o / block_total : 0.f);
        else part[d] = o;
    }
    if (splits == 1) return;

    // the last block of the head to finish combines the splits
    if (threadIdx.x == 0) {
        part[DIM] = block_top;
        part[DIM + 1] = block_total;
    }
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(arrived + head, 1u) == (unsigned)(splits - 1);
    __syncthreads();
    if (!last) return;
    __threadfence();
    const float* head_parts = parts + (long long)head * splits * (DIM + 2);
    float most = NOTHING;
    for (int s = 0; s < splits; ++s) most = fmaxf(most, __ldcg(head_parts + s * (DIM + 2) + DIM));
    for (int d = threadIdx.x; d < DIM; d += THREADS) {
        float o = 0.f, sum = 0.f;
        for (int s = 0; s < splits; ++s) {
            const float* p = head_parts + s * (DIM + 2);
            const float m = __ldcg(p + DIM);
            if (m == NOTHING) continue;  // a split with nothing written
            const float f = exp2f(m - most);
            o = fmaf(f, __ldcg(p + d), o);
            sum = fmaf(f, __ldcg(p + DIM + 1), sum);
        }
        out[head * DIM + d] = to_bf16(sum > 0.f ? o / sum : 0.f);
    }
    if (threadIdx.x == 0) arrived[head] = 0u;  // ready for the next launch
}
"""

_COMPILED: dict[tuple, dp4a_kernel.Compiled] = {}  # by head size and kind of GPU, compiled once a process
_ARRIVED: dict[int, torch.Tensor] = {}             # each GPU's atomic counts, zero between launches (one launch at
#                                                    a time a GPU: gen() decodes on one stream)
_CHECKED: dict[tuple, str] = {}                    # by head size and GPU: "" or why the kernel is not used


def kernel_for(dim: int) -> dp4a_kernel.Compiled:
    key = (dim, torch.cuda.get_device_capability(), dp4a_kernel.OVERLAP)
    if key not in _COMPILED:
        _COMPILED[key] = dp4a_kernel.Compiled(dp4a_kernel.LAUNCH_SOURCE + KERNEL, {"DIM": dim})
    return _COMPILED[key]


@torch.library.custom_op("kochat::one_row_attention", mutates_args=())
def _attend(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, written: torch.Tensor, groups: int,
            scale: float) -> torch.Tensor:
    query, keys, values = (t if t.data_ptr() % 16 == 0 else t.clone() for t in (query, keys, values))  # 16-byte loads
    heads, dim = query.shape
    slots = keys.shape[1]
    splits = -(-slots // SPLIT)
    parts = torch.empty(heads * splits * (dim + 2) if splits > 1 else 1, dtype=torch.float32, device=query.device)
    out = torch.empty(heads, dim, dtype=torch.bfloat16, device=query.device)
    with dp4a_kernel.its_gpu(query.device):
        if query.device.index not in _ARRIVED:  # a model's first (uncaptured) call on this GPU: not inside a graph
            _ARRIVED[query.device.index] = torch.zeros(MOST_HEADS, dtype=torch.int32, device=query.device)
        kernel_for(dim).run("one_row_attention", heads * splits, THREADS, 0,
                            (query, keys, values, written, parts, _ARRIVED[query.device.index], out),
                            slots, groups, scale * LOG2_E, overlap=True)
    return out


@_attend.register_fake
def _(query, keys, values, written, groups, scale):
    return torch.empty_like(query)


def attend(query, keys, values, written, scale: float) -> torch.Tensor:
    """query [heads, dim], keys and values [key/value heads, slots, dim], written [slots] bool: [heads, dim]."""
    return torch.ops.kochat.one_row_attention(query.contiguous(), keys, values, written.contiguous(),
                                              query.shape[0] // keys.shape[0], scale)


def takes(query, key, value, mask, dropout: float, kwargs: dict) -> bool:
    """Whether one new token goes to the kernel: on a GPU where check() passed for its head size, and fits()."""
    return (query.is_cuda and _CHECKED.get((query.shape[-1], query.device.index)) == ""
            and fits(query, key, value, mask, dropout, kwargs))


def fits(query, key, value, mask, dropout: float, kwargs: dict) -> bool:
    """One new token of one row, query [1, heads, 1, dim], on a static cache, key and value [1, kv heads, slots, dim]
    contiguous, mask [1, 1, 1, slots] bool, all on one device; bf16, a head size of DIMS, heads a multiple of kv heads;
    nothing attention adds to the scores (a soft cap, a bias, sinks) and no dropout."""
    return (query.dim() == 4 and query.shape[0] == 1 and query.shape[2] == 1 and key.dim() == 4
            and key.shape[0] == 1 and value.shape == key.shape and query.shape[-1] == key.shape[-1]
            and mask is not None and query.device == key.device == value.device == mask.device
            and query.dtype == key.dtype == value.dtype == torch.bfloat16 and query.shape[-1] in DIMS
            and query.shape[1] % key.shape[1] == 0 and query.shape[1] <= MOST_HEADS
            and key.is_contiguous() and value.is_contiguous()
            and mask.dtype == torch.bool and tuple(mask.shape) == (1, 1, 1, key.shape[2])
            and not dropout and not any(kwargs.get(name) is not None for name in ("softcap", "position_bias", "s_aux")))


def reference(query, keys, values, written, scale: float) -> torch.Tensor:
    """What attend() computes, by PyTorch: [heads, dim]."""
    groups = query.shape[0] // keys.shape[0]
    rows = query.float().view(keys.shape[0], groups, -1)
    return F.scaled_dot_product_attention(rows, keys.float(), values.float(), attn_mask=written, scale=scale
                                          ).reshape(query.shape).to(query.dtype)


def shape_of(model) -> tuple[int, int, int]:
    """`model`'s query heads, key/value heads and head size."""
    config = model.config.get_text_config()
    heads = getattr(config, "num_attention_heads", 0)
    dim = getattr(config, "head_dim", None) or config.hidden_size // max(heads, 1)
    return heads, getattr(config, "num_key_value_heads", None) or heads, dim


def applies(model) -> bool:
    """Whether the kernel could attend for `model`: bf16 on an NVIDIA GPU of compute capability 8.0 or newer with
    cuda-bindings installed, a head size of DIMS, query heads a multiple of key/value heads."""
    heads, kv_heads, dim = shape_of(model)
    device = model.device
    return (device.type == "cuda" and torch.version.cuda is not None and model.dtype == torch.bfloat16
            and dim in DIMS and 0 < heads <= MOST_HEADS and heads % kv_heads == 0 and dp4a_kernel.installed()
            and torch.cuda.get_device_capability(device) >= (8, 0))


def check(model) -> bool:
    """Where the kernel applies(), compiled for `model`'s head size on its GPU and checked there against PyTorch's
    attention on random keys of the model's head counts, a cache of several splits with its end and a window not
    written: whether it agrees (takes() then lets it attend). Once a process for each head size and GPU; where it
    does not agree, or fails, one logged line says so, and the model attends as before."""
    if not applies(model):
        return False
    heads, kv_heads, dim = shape_of(model)
    device = model.device
    key = (dim, device.index)
    if key in _CHECKED:
        return _CHECKED[key] == ""
    try:
        with dp4a_kernel.its_gpu(device):
            generator = torch.Generator(device).manual_seed(0)
            slots = 3 * SPLIT + 40
            query = torch.randn(heads, dim, device=device, generator=generator).bfloat16()
            keys, values = (torch.randn(kv_heads, slots, dim, device=device, generator=generator).bfloat16()
                            for _ in range(2))
            written = torch.ones(slots, dtype=torch.bool, device=device)
            written[SPLIT:2 * SPLIT + 20] = False  # a whole split and more not written, as outside a window
            written[-7:] = False  # and the cache's end
            scale = dim ** -0.5
            got, expected = attend(query, keys, values, written, scale), reference(query, keys, values, written, scale)
            distance = float((got.float() - expected.float()).norm() / expected.float().norm())
        _CHECKED[key] = ("" if distance <= AGREEMENT else
                         f"one row's attention stays on PyTorch's: kochat's kernel is {distance:.3f} from it")
    except Exception as e:
        _CHECKED[key] = f"one row's attention stays on PyTorch's: kochat's kernel failed ({type(e).__name__}: " \
                        f"{first_line(e)})"
    if _CHECKED[key]:
        log.warning(_CHECKED[key])
    return _CHECKED[key] == ""
