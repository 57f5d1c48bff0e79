"""A probe for the batch-1 targets of int4 and int8: one row times int4 or int8 weights through the GPU's 8-bit dot
products (dp4a), the row rounded to int8 in blocks of 32, as llama.cpp's CUDA kernels multiply one row by its GGUF
weights. Timed at a real shape's layer sizes against the exports' kernels (tinygemm; humming's int4 and int8 where
installed) and 16-bit cuBLAS, each as a CUDA graph of many calls over copies of the layer's weights that together
exceed the GPU's L2 cache twice over (a decoding step reads each layer from memory once), their results checked
against the float product of the same quantized weights (a setting further than --most_error is not the best).
From the repository root, on an NVIDIA GPU with `pip install cuda-bindings==13.0.3` (NVRTC compiles the kernels at
run time, as humming's; no nvcc):

    python3 -m bench.dp4a_rows --shape=polyglot-ko-12.8b --out=RESULT.json

Why: the profiles (bench/RESULTS.md) put the int4 export's batch-1 step at ~5 ms a token, 3.4 ms of it the int4
products on humming, which read the weights at ~2 TB/s of the H200's 4.8; 250 tokens/s needs ~2.6 (int8's 180:
its products at ~3.4 TB/s, humming's read at 2.8-3.0). Kernels that turn each 4-bit level into a float and multiply
in floats spend about four instructions a weight, more than a multiprocessor can issue at the rate memory delivers
weights (~36 a cycle on an H200), where the Triton kernels of bench/row_kernels.py stopped. Here a weight costs
about one instruction or less: one dp4a multiplies four levels by four int8 activations and adds them up in
integers, and the scales are applied once per block of 32:
    int4 (w4a8_gemv): sum over a block b of group g of w_k x_k = s_g d_b sum(q_k a_k) + (z_g - 8 s_g) d_b sum(a_k)
    int8 (w8a8_gemv): sum over a row of w_k x_k = s_row sum over blocks of d_b sum(q_k a_k)
with int4 w_k = (q_k - 8) s_g + z_g (q 0..15; s and z in bf16 per 128 weights: tinygemm's scheme, so an int4
export's own levels, scales and zeros load as they are), int8
w_k = q_k s_row (q -127..127, a scale per row, as the int8 export), and x_k ~ d_b a_k (a -127..127, d_b = the
block's largest |x| / 127; the sum of the rounded values, as llama.cpp's q8_1, so that the offsets' product cancels
the levels' rounding as it does unrounded). The row's rounding is the price (`relative_error`: against the float
product of the same quantized weights and the unrounded row). Rounding the row is a few elementwise ops, which a
compiled decoding step would fuse into the layer norm or GELU before each product: timed here apart and eager
(`quantize_us`). Through gen(): bench.quant_kernels --kernels=dp4a4,dp4a8 (Dp4aLinear below). bf16_gemv, the same
kind of kernel for 16-bit weights, is timed beside cuBLAS (--kernels=gemv16 through gen()). Measured on an H200
(bench/RESULTS.md, 2026-12-03): int4 one row a step at 261.6 tokens/s against humming's 206.8, int8 at 185.2; not yet
in kochat. Random weights: speed and rounding only. The JSON is rewritten after each layer size.
"""
import ctypes
import json
import math
import re
import sys
import weakref
from datetime import datetime, timezone
from pathlib import Path

import torch

from bench import humming_products
from bench.row_kernels import SHAPES
from kochat import cli, humming_kernel, runs
from kochat.errors import UserError

# ---- constants: override on the command line as --name=value ------------------------------------------
SHAPE = "polyglot-ko-12.8b"  # polyglot-ko-12.8b or qwen3-8b: which layer sizes
OUT = ""                     # the result JSON; required
CALLS = 50                   # calls in the timed CUDA graph
ROWS_PER_WARP = "1,2,4"      # output rows each warp of the kernel computes, tried in turn
WARPS = "4,8"                # warps a block
UNROLL = "2,4"               # 16-byte weight loads each lane has in flight
MOST_ERROR = 0.02            # a setting further than this from the float product (relative) is not counted as best:
                             # the row's rounding to int8 and the output's to bf16 put a right one near 0.005

_GROUP = 128  # fixed by the kernels: int4 weights sharing a scale and zero (tinygemm's group size)
_BLOCK = 32   # and activations sharing an int8 scale; one 16-byte load of weights covers one block
_BF16_WIDEST = 24576  # bf16_gemv stages the whole bf16 row in shared memory: 48 KiB, the most a launch has unasked

_SOURCE = r"""
// act [K/4]: int8 activations, four to a word; act_scale [K/32]: each block's (d, d * sum of its int8 values). Both
// staged in shared memory by every block, the activations' 16-byte pieces at SLOT(i) (so that neighbouring lanes
// read neighbouring 16 bytes), then the (d, sum) pairs.
#define STAGE_ACTIVATIONS(SLOT)                                                                                    \
    extern __shared__ int4 shared[];                                                                               \
    const int blocks = k / 32;                                                                                     \
    int4* sa = shared;                                                                                             \
    float2* sd = (float2*)(shared + 2 * blocks);                                                                   \
    for (int i = threadIdx.x; i < 2 * blocks; i += blockDim.x) sa[SLOT(i)] = act[i];                               \
    for (int i = threadIdx.x; i < blocks; i += blockDim.x) sd[i] = act_scale[i];                                  \
    __syncthreads();                                                                                               \
    const int lane = threadIdx.x & 31;                                                                             \
    const int first = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * ROWS;

#define DP4A(type, q, a) asm("dp4a." type " %0, %1, %2, %0;" : "+r"(dot) : "r"(q), "r"(a))

__device__ __forceinline__ void write_sum(float acc, unsigned short* out, int row, int lane) {
    #pragma unroll
    for (int step = 16; step > 0; step >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, step);
    if (lane == 0) {
        unsigned short bits;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(bits) : "f"(acc));
        out[row] = bits;
    }
}

// weight [N, K/32] of 16 bytes: 32 levels of one row; word j of a load holds k = 8j..8j+7 of its block, byte i the
// level of k = 8j+i in its low nibble and of k = 8j+4+i in its high one. group [N, K/128]: bf16 scale (low half) and
// zero (high half): a weight is (level - 8) * scale + zero, as tinygemm's.
extern "C" __global__ void __launch_bounds__(WARPS * 32) w4a8_gemv(
        const uint4* __restrict__ weight, const unsigned* __restrict__ group, const int4* __restrict__ act,
        const float2* __restrict__ act_scale, unsigned short* __restrict__ out, int n_rows, int k) {
    #define HALVES_APART(i) (((i) & 1) * blocks + ((i) >> 1))  // a lane reads its block's halves: sa[b], sa[blocks + b]
    STAGE_ACTIVATIONS(HALVES_APART)
    #pragma unroll
    for (int r = 0; r < ROWS; ++r) {
        const int row = first + r;
        if (row >= n_rows) break;                    // the same for the whole warp
        const uint4* w_row = weight + (long long)row * blocks;
        const unsigned* g_row = group + (long long)row * (blocks / 4);
        float acc = 0.f;
        for (int b0 = lane; b0 < blocks; b0 += 32 * UNROLL) {
            uint4 w[UNROLL];
            unsigned g[UNROLL];
            #pragma unroll
            for (int u = 0; u < UNROLL; ++u) {       // every load first: UNROLL of them in flight
                const int b = b0 + 32 * u;
                if (b < blocks) { w[u] = w_row[b]; g[u] = g_row[b >> 2]; }
            }
            #pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                const int b = b0 + 32 * u;
                if (b >= blocks) break;
                const int4 a0 = sa[b], a1 = sa[blocks + b];
                int dot = 0;                         // levels 0..15 (unsigned) times activations (signed)
                DP4A("u32.s32", w[u].x & 0x0F0F0F0F, a0.x); DP4A("u32.s32", (w[u].x >> 4) & 0x0F0F0F0F, a0.y);
                DP4A("u32.s32", w[u].y & 0x0F0F0F0F, a0.z); DP4A("u32.s32", (w[u].y >> 4) & 0x0F0F0F0F, a0.w);
                DP4A("u32.s32", w[u].z & 0x0F0F0F0F, a1.x); DP4A("u32.s32", (w[u].z >> 4) & 0x0F0F0F0F, a1.y);
                DP4A("u32.s32", w[u].w & 0x0F0F0F0F, a1.z); DP4A("u32.s32", (w[u].w >> 4) & 0x0F0F0F0F, a1.w);
                const float2 d = sd[b];
                const float scale = __uint_as_float(g[u] << 16), zero = __uint_as_float(g[u] & 0xFFFF0000u);
                acc = fmaf(scale * d.x, (float)dot, fmaf(fmaf(-8.f, scale, zero), d.y, acc));
            }
        }
        write_sum(acc, out, row, lane);
    }
}

// weight [N, K/16] of 16 bytes: 16 int8 levels of one row in order; row_scale [N] float32 (a scale per row, as the
// int8 export). Each lane takes half a block of activations at a time (16 weights, four dp4a).
extern "C" __global__ void __launch_bounds__(WARPS * 32) w8a8_gemv(
        const int4* __restrict__ weight, const float* __restrict__ row_scale, const int4* __restrict__ act,
        const float2* __restrict__ act_scale, unsigned short* __restrict__ out, int n_rows, int k) {
    #define IN_ORDER(i) (i)  // a lane reads one half block, sa[h]
    STAGE_ACTIVATIONS(IN_ORDER)
    const int halves = 2 * blocks;
    #pragma unroll
    for (int r = 0; r < ROWS; ++r) {
        const int row = first + r;
        if (row >= n_rows) break;
        const int4* w_row = weight + (long long)row * halves;
        float acc = 0.f;
        for (int h0 = lane; h0 < halves; h0 += 32 * UNROLL) {
            int4 w[UNROLL];
            #pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                const int h = h0 + 32 * u;
                if (h < halves) w[u] = w_row[h];
            }
            #pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                const int h = h0 + 32 * u;
                if (h >= halves) break;
                const int4 a = sa[h];
                int dot = 0;
                DP4A("s32.s32", w[u].x, a.x); DP4A("s32.s32", w[u].y, a.y);
                DP4A("s32.s32", w[u].z, a.z); DP4A("s32.s32", w[u].w, a.w);
                acc = fmaf(sd[h >> 1].x, (float)dot, acc);
            }
        }
        write_sum(acc * row_scale[row], out, row, lane);
    }
}

// For comparison with cuBLAS's one-row product of 16-bit weights (merged bf16): weight [N, K/8] of 16 bytes, 8 bf16
// of one row in order; x [K/8] the bf16 row, staged in shared memory as it is. A bf16 widens to a float32 by a shift
// (low half) or a mask (high half): about three instructions a weight, multiplied and summed in float32.
__device__ __forceinline__ float dot_bf16x2(unsigned w, unsigned a, float acc) {
    acc = fmaf(__uint_as_float(w << 16), __uint_as_float(a << 16), acc);
    return fmaf(__uint_as_float(w & 0xFFFF0000u), __uint_as_float(a & 0xFFFF0000u), acc);
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) bf16_gemv(
        const uint4* __restrict__ weight, const uint4* __restrict__ x, unsigned short* __restrict__ out, int n_rows,
        int k) {
    extern __shared__ uint4 sx[];
    const int chunks = k / 8;
    for (int i = threadIdx.x; i < chunks; i += blockDim.x) sx[i] = x[i];
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const int first = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * ROWS;
    #pragma unroll
    for (int r = 0; r < ROWS; ++r) {
        const int row = first + r;
        if (row >= n_rows) break;
        const uint4* w_row = weight + (long long)row * chunks;
        float acc = 0.f;
        for (int c0 = lane; c0 < chunks; c0 += 32 * UNROLL) {
            uint4 w[UNROLL];
            #pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                const int c = c0 + 32 * u;
                if (c < chunks) w[u] = w_row[c];
            }
            #pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                const int c = c0 + 32 * u;
                if (c >= chunks) break;
                const uint4 a = sx[c];
                acc = dot_bf16x2(w[u].x, a.x, acc); acc = dot_bf16x2(w[u].y, a.y, acc);
                acc = dot_bf16x2(w[u].z, a.z, acc); acc = dot_bf16x2(w[u].w, a.w, acc);
            }
        }
        write_sum(acc, out, row, lane);
    }
}
"""


def check(result, what: str):
    """cuda-bindings calls return (error, values…): the values, or a UserError naming the call."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise UserError(f"{what} failed: {error!r}")
    return values[0] if len(values) == 1 else values


class Kernels:
    """w4a8_gemv, w8a8_gemv and bf16_gemv compiled by NVRTC for this GPU with one setting of their shape constants,
    launched on torch's current stream (so a CUDA graph captures them)."""

    def __init__(self, rows: int, warps: int, unroll: int):
        from cuda.bindings import driver, nvrtc
        self.driver, self.rows, self.warps = driver, rows, warps
        major, minor = torch.cuda.get_device_capability()
        defines = [f"-DROWS={rows}".encode(), f"-DWARPS={warps}".encode(), f"-DUNROLL={unroll}".encode()]
        options = [f"--gpu-architecture=sm_{major}{minor}".encode(), b"--std=c++17", *defines]
        program = check(nvrtc.nvrtcCreateProgram(_SOURCE.encode(), b"dp4a_rows.cu", 0, [], []), "nvrtcCreateProgram")
        compiled = nvrtc.nvrtcCompileProgram(program, len(options), options)
        if int(compiled[0]) != 0:
            size = check(nvrtc.nvrtcGetProgramLogSize(program), "nvrtcGetProgramLogSize")
            log = b" " * size
            check(nvrtc.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
            raise UserError(f"NVRTC could not compile the kernels: {log.decode(errors='replace').strip()[:2000]}")
        size = check(nvrtc.nvrtcGetCUBINSize(program), "nvrtcGetCUBINSize")
        cubin = b" " * size
        check(nvrtc.nvrtcGetCUBIN(program, cubin), "nvrtcGetCUBIN")
        check(nvrtc.nvrtcDestroyProgram(program), "nvrtcDestroyProgram")
        torch.empty(1, device="cuda")  # torch's context, made current on this thread, loads the module
        self.module = check(driver.cuModuleLoadData(cubin), "cuModuleLoadData")
        self.int4_function = check(driver.cuModuleGetFunction(self.module, b"w4a8_gemv"), "cuModuleGetFunction")
        self.int8_function = check(driver.cuModuleGetFunction(self.module, b"w8a8_gemv"), "cuModuleGetFunction")
        self.bf16_function = check(driver.cuModuleGetFunction(self.module, b"bf16_gemv"), "cuModuleGetFunction")

    def int4(self, packed, group, act, act_scale) -> torch.Tensor:
        return self.launch(self.int4_function, packed.shape[0], packed.shape[1] * 8, packed, group, act, act_scale)

    def int8(self, levels, row_scale, act, act_scale) -> torch.Tensor:
        return self.launch(self.int8_function, levels.shape[0], levels.shape[1], levels, row_scale, act, act_scale)

    def bf16(self, weight, x) -> torch.Tensor:
        """One bf16 row [K] times bf16 weights [N, K] (K ≤ _BF16_WIDEST)."""
        n, k = weight.shape
        return self.launch(self.bf16_function, n, k, weight, x, shared=2 * k)

    def launch(self, function, n: int, k: int, *tensors, shared: int = 0) -> torch.Tensor:
        out = torch.empty(n, dtype=torch.bfloat16, device=tensors[0].device)
        shared = shared or k + k // _BLOCK * 8  # the int8 activations and their (d, sum) pairs
        stream = self.driver.CUstream(torch.cuda.current_stream().cuda_stream)
        pointers = [t.data_ptr() for t in (*tensors, out)]
        arguments = ((*pointers, n, k), (*[ctypes.c_void_p] * len(pointers), ctypes.c_int, ctypes.c_int))
        check(self.driver.cuLaunchKernel(function, -(-n // (self.rows * self.warps)), 1, 1, self.warps * 32, 1, 1,
                                         shared, stream, arguments, 0), "cuLaunchKernel")
        return out


def quantize_int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[N, K] weights as (packed [N, K/8] int32, group [N, K/128] int32: bf16 scale and zero, the weights as the
    kernel sees them [N, K] float32): levels 0..15 over each group's range, in tinygemm's scheme."""
    n, k = weight.shape
    groups = weight.float().view(n, k // _GROUP, _GROUP)
    low, high = groups.amin(-1), groups.amax(-1)
    scale = ((high - low) / 15).clamp(min=1e-8).to(torch.bfloat16).float()
    zero = (low + 8 * scale).to(torch.bfloat16).float()  # level 0 at the group's smallest weight
    q = torch.round((groups - zero[..., None]) / scale[..., None] + 8).clamp(0, 15)
    held = ((q - 8) * scale[..., None] + zero[..., None]).view(n, k)
    return pack_levels(q.view(n, k)), pack_groups(scale, zero), held


def pack_levels(q: torch.Tensor) -> torch.Tensor:
    """Levels 0..15 [N, K] as w4a8_gemv reads them, [N, K/8] int32: in each word of 8 columns, byte i holds column
    i in its low nibble and column 4 + i in its high one."""
    n, k = q.shape
    q = q.to(torch.uint8).view(n, k // 8, 2, 4)  # [row, word, which nibble, byte]
    return (q[:, :, 0] | (q[:, :, 1] << 4)).contiguous().view(torch.int32).view(n, k // 8)


def pack_groups(scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Each group's scale and zero [N, K/128] as one int32: the bf16 scale in the low half, the zero in the high."""
    return torch.stack([scale, zero], -1).to(torch.bfloat16).contiguous().view(torch.int32).squeeze(-1)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[N, K] weights as (levels [N, K] int8, -127..127; row_scale [N] float32; the weights as the kernel sees them)."""
    scale = weight.float().abs().amax(-1).clamp(min=1e-8) / 127
    q = torch.round(weight.float() / scale[:, None]).clamp(-127, 127)
    return q.to(torch.int8).contiguous(), scale.contiguous(), q * scale[:, None]


def quantize_row(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One row [K] as (act [K/4] int32: int8 activations, four to a word; act_scale [K/32, 2] float32: each block's
    d and the sum of its rounded values, d * sum(a): with the row's own sum instead, the offsets' product would not
    cancel the levels' rounding error, ~2.5x the error on random weights)."""
    blocks = x.float().view(-1, _BLOCK)
    d = blocks.abs().amax(-1).clamp(min=1e-30) / 127
    rounded = torch.round(blocks / d[:, None])
    act = rounded.to(torch.int8).view(-1).view(torch.int32)
    return act, torch.stack([d, d * rounded.sum(-1)], -1).contiguous()


# ---- gen() with one row a step through these kernels (bench.quant_kernels --kernels=dp4a4,dp4a8) --------------
_LAYERS: list[weakref.ref] = []  # the moved layers by index (a custom op takes no modules), as humming_kernel's


@torch.library.custom_op("kochat_bench::dp4a_product", mutates_args=())
def _product(act: torch.Tensor, act_scale: torch.Tensor, index: int) -> torch.Tensor:
    return _LAYERS[index]().product(act, act_scale)


@_product.register_fake
def _(act: torch.Tensor, act_scale: torch.Tensor, index: int) -> torch.Tensor:
    return act.new_empty(_LAYERS[index]().out_features, dtype=torch.bfloat16)


class Dp4aLinear(torch.nn.Module):
    """An int4 (tinygemm's) or int8 (torchao's) linear layer whose product of one row goes through w4a8_gemv or
    w8a8_gemv, the row rounded to int8 first by ops a compile fuses into what comes before; batches go through the
    layer as it was, kept beside (the weights held twice: a probe). The same levels, scales and zeros."""

    def __init__(self, layer: torch.nn.Linear, kernels: Kernels):
        from torchao.quantization import Int4TilePackedTo4dTensor
        super().__init__()
        self.layer, self.kernels = layer, kernels
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.int4 = isinstance(layer.weight, Int4TilePackedTo4dTensor)
        if self.int4:
            q, scale, zero = tinygemm_levels(layer.weight)
            levels, scales = pack_levels(q), pack_groups(scale, zero)
        else:  # torchao's Int8Tensor: a level -128..127 and a scale per row
            levels, scales = layer.weight.qdata.contiguous(), layer.weight.scale.reshape(-1).float().contiguous()
            if scales.numel() != self.out_features:
                raise UserError(f"dp4a8: the int8 kernel takes a scale per row, this layer has {scales.numel()}")
        self.register_buffer("levels", levels)
        self.register_buffer("scales", scales)
        check_row_product(lambda row: self.product(*quantize_row(row)), layer)
        self.index = len(_LAYERS)
        _LAYERS.append(weakref.ref(self))

    def product(self, act: torch.Tensor, act_scale: torch.Tensor) -> torch.Tensor:
        multiply = self.kernels.int4 if self.int4 else self.kernels.int8
        return multiply(self.levels, self.scales, act, act_scale)

    def forward(self, x):
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] != 1:
            return self.layer(x)
        act, act_scale = quantize_row(rows[0])
        y = torch.ops.kochat_bench.dp4a_product(act, act_scale, self.index).view(*x.shape[:-1], self.out_features)
        y = y.to(x.dtype)
        return y if self.layer.bias is None else y + self.layer.bias


@torch.library.custom_op("kochat_bench::gemv16_product", mutates_args=())
def _product16(row: torch.Tensor, index: int) -> torch.Tensor:
    return _LAYERS[index]().product(row)


@_product16.register_fake
def _(row: torch.Tensor, index: int) -> torch.Tensor:
    return row.new_empty(_LAYERS[index]().out_features, dtype=torch.bfloat16)


class Gemv16Linear(torch.nn.Module):
    """A bf16 linear layer whose product of one row goes through bf16_gemv; batches through the layer as it was
    (the same weights, held once)."""

    def __init__(self, layer: torch.nn.Linear, kernels: Kernels):
        super().__init__()
        self.layer, self.kernels = layer, kernels
        self.in_features, self.out_features = layer.in_features, layer.out_features
        if layer.weight.dtype != torch.bfloat16 or layer.in_features % 8 or layer.in_features > _BF16_WIDEST:
            raise UserError(f"gemv16: bf16 layers whose width is a multiple of 8 and at most {_BF16_WIDEST} only, "
                            f"not {layer.weight.dtype} of width {layer.in_features}")
        layer.weight.data = layer.weight.data.contiguous()
        check_row_product(self.product, layer)
        self.index = len(_LAYERS)
        _LAYERS.append(weakref.ref(self))

    def product(self, row: torch.Tensor) -> torch.Tensor:
        return self.kernels.bf16(self.layer.weight, row)

    def forward(self, x):
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] != 1:
            return self.layer(x)
        y = torch.ops.kochat_bench.gemv16_product(rows[0].to(torch.bfloat16).contiguous(), self.index)
        y = y.view(*x.shape[:-1], self.out_features)
        return y if self.layer.bias is None else y + self.layer.bias


def check_row_product(product, layer: torch.nn.Linear) -> None:
    """Raise where `product` of a random row is further than MOST_ERROR from `layer`'s (bias left out): a wrong
    layout or level is one line here, not a fast figure of a wrong product."""
    with torch.no_grad():  # a generator of its own: the caller's random numbers stay as they were
        generator = torch.Generator(layer.weight.device).manual_seed(0)
        row = torch.randn(layer.in_features, generator=generator, device=layer.weight.device).to(layer.weight.dtype)
        expected = torch.nn.functional.linear(row[None], layer.weight)[0].float()
        gap = float((product(row).float() - expected).norm() / expected.norm())
    if not gap <= MOST_ERROR:
        raise UserError(f"a layer's product of one row on the kernel is {gap:.3f} from the layer's "
                        f"(at most {MOST_ERROR})")


def tinygemm_levels(weight) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An int4 export's weight (torchao's Int4TilePackedTo4dTensor) as its levels [N, K] 0..15 and its scales and
    zeros [N, K/128]: tinygemm's layout has no unpacking, so the levels come from a product with the identity of the
    same packed levels with every scale 1 and zero 8, (q - 8) * 1 + 8 = q, exact in bf16 whatever the group's real
    scale and zero. Unpadded layers only (the 12.8b and Qwen3-8B sizes)."""
    from torchao.quantization import Int4TilePackedTo4dTensor
    n, k = weight.shape
    unit = torch.empty_like(weight.scale_and_zero)
    unit[..., 0], unit[..., 1] = 1, 8
    levels_only = Int4TilePackedTo4dTensor(weight.qdata, unit, weight.block_size, weight.shape)
    identity = torch.eye(k, dtype=torch.bfloat16, device=weight.qdata.device)
    q = torch.nn.functional.linear(identity, levels_only).t().float()  # [N, K]
    del identity
    scale, zero = (weight.scale_and_zero[..., i].t().float() for i in (0, 1))  # [N, K/128]
    return q, scale, zero


def onto_dp4a(model, setting: str, bf16: bool = False) -> int:
    """Move every int4 (tinygemm) and weight-only int8 (torchao) linear layer of `model` onto Dp4aLinear, or with
    `bf16` every bf16 one onto Gemv16Linear (the output head too), with the kernels compiled for `setting`: "rows
    per warp,warps,unroll" for every layer, or a bench.dp4a_rows JSON whose best setting for each layer size is
    taken; how many moved."""
    from torchao.quantization import Int4TilePackedTo4dTensor, Int8Tensor
    kernels_for = chooser(setting)
    moved = 0
    for name, module in list(model.named_modules()):
        if type(module) is not torch.nn.Linear:
            continue
        int4 = isinstance(module.weight, Int4TilePackedTo4dTensor)
        quantized = int4 or isinstance(module.weight, Int8Tensor)
        if (quantized and not bf16) or (bf16 and type(module.weight.data) is torch.Tensor):
            kind = "gemv16" if bf16 else "w4a8" if int4 else "w8a8"
            kernels = kernels_for(kind, module.out_features, module.in_features)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, (Gemv16Linear if bf16 else Dp4aLinear)(module, kernels))
            moved += 1
    return moved


def chooser(setting: str):
    """kind, n, k -> the Kernels for a layer of that kind and size: `setting`'s for all ("rows,warps,unroll"), or
    from a bench.dp4a_rows JSON the best it found for that size, and for a size it did not time (the output head,
    a model's unfused q/k/v) the setting best over all its sizes. Each setting compiled once."""
    compiled: dict[str, Kernels] = {}

    def kernels(text: str) -> Kernels:
        if text not in compiled:
            compiled[text] = Kernels(*(int(v) for v in text.split(",")))
        return compiled[text]
    if not setting.endswith(".json"):
        return lambda kind, n, k: kernels(setting)
    try:
        sweep = json.loads(Path(setting).read_text())
        layers, overall = sweep["layers"], sweep["ms_a_token"]
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"--dp4a={setting}: not a finished bench.dp4a_rows JSON ({type(e).__name__}: {e})") from None

    def best(kind: str, n: int, k: int) -> Kernels:
        name = layers.get(f"{n}x{k}", {}).get("best", {}).get(kind) or min(
            (name for name in overall if name.startswith(kind + " ")), key=overall.get, default=None)
        if not name:
            raise UserError(f"--dp4a={setting}: no {kind} setting timed; run bench.dp4a_rows with its kernels")
        return kernels(",".join(re.findall(r"\d+", name.split(" ")[1])))  # "w4a8 rows1-warps8-unroll2"
    return best


def time_us(calls: list) -> float:
    """Microseconds a call, cycling through `calls` (each over its own copy of a layer's weights, together over
    twice the GPU's L2 cache, so that each call reads its weights from memory as a decoding step reads each layer
    once a token) in a CUDA graph of CALLS calls."""
    return humming_products.time_us(calls, CALLS)


def copies(layer_bytes: float) -> int:
    """How many copies of a layer's weights exceed twice the GPU's L2 cache."""
    return max(1, math.ceil(2 * torch.cuda.get_device_properties(0).L2_cache_size / layer_bytes))


def humming_calls(weight: torch.Tensor, x: torch.Tensor, scheme: dict, many: int) -> list:
    """One row times `weight` on humming's kernel in `scheme`, as a call for each of `many` copies of the layer."""
    from humming.layer import HummingLayer
    from humming.tune import get_heuristics_config
    calls = []
    for _ in range(many):
        layer = HummingLayer(shape_n=weight.shape[0], shape_k=weight.shape[1], torch_dtype=torch.bfloat16,
                             weight_config=dict(scheme)).cuda()
        layer.load_from_unquantized(weight)
        layer.transform()
        own = get_heuristics_config(layer.humming_config, shape_m=1)
        calls.append(lambda layer=layer, own=own: layer(x[None], tuning_config=own))
    return calls


def numbers(name: str) -> list[int]:
    try:
        return [int(v) for v in str(globals()[name]).split(",")]
    except ValueError:
        raise UserError(f"--{name.lower()}={globals()[name]}: whole numbers, comma-separated") from None


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "OUT")
    if SHAPE not in SHAPES:
        raise UserError(f"--shape={SHAPE}: one of {', '.join(SHAPES)}")
    if not torch.cuda.is_available():
        raise UserError("this bench measures CUDA kernels and this machine has no NVIDIA GPU")
    from torchao.quantization import Int4WeightOnlyConfig, quantize_

    settings = [(r, w, u) for r in numbers("ROWS_PER_WARP") for w in numbers("WARPS") for u in numbers("UNROLL")]
    compiled = {f"rows{r}-warps{w}-unroll{u}": Kernels(r, w, u) for r, w, u in settings}
    results = {"device": torch.cuda.get_device_name(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "versions": runs.versions(), "shape": SHAPE,
               "command": " ".join(["python3 -m bench.dp4a_rows", *argv]), "layers": {}}
    torch.manual_seed(0)
    sizes, layers = SHAPES[SHAPE]
    per_token: dict[str, float] = {}
    for n, k in sizes:
        here = results["layers"][f"{n}x{k}"] = {}
        weight = torch.randn(n, k, dtype=torch.bfloat16, device="cuda") / 50
        x = torch.randn(k, dtype=torch.bfloat16, device="cuda")
        act, act_scale = quantize_row(x)
        packed, group, held4 = quantize_int4(weight)
        levels, row_scale, held8 = quantize_int8(weight)
        exact4, exact8 = held4 @ x.float(), held8 @ x.float()  # the same weights, the row unrounded, in float32
        del held4, held8
        int4_bytes, int8_bytes = n * k * (0.5 + 4 / _GROUP), n * k  # the levels, and int4's scale pairs
        many4, many8 = copies(int4_bytes), copies(int8_bytes)
        int4_copies = [(packed, group)] + [(packed.clone(), group.clone()) for _ in range(many4 - 1)]
        int8_copies = [(levels, row_scale)] + [(levels.clone(), row_scale.clone()) for _ in range(many8 - 1)]
        weights = [weight] + [weight.clone() for _ in range(copies(n * k * 2) - 1)]
        exact16 = weight.float() @ x.float()
        ours = {}
        for name, kernels in compiled.items():
            ours[f"w4a8 {name}"] = ([lambda kernels=kernels, w=w, g=g: kernels.int4(w, g, act, act_scale)
                                     for w, g in int4_copies], exact4)
            ours[f"w8a8 {name}"] = ([lambda kernels=kernels, w=w, scale=scale: kernels.int8(w, scale, act, act_scale)
                                     for w, scale in int8_copies], exact8)
            ours[f"gemv16 {name}"] = ([lambda kernels=kernels, w=w: kernels.bf16(w, x) for w in weights], exact16)
        us = {name: time_us(calls) for name, (calls, _) in ours.items()}
        error = {name: round(float((calls[0]().float() - exact).norm() / exact.norm()), 4)
                 for name, (calls, exact) in ours.items()}
        del int4_copies[1:], int8_copies[1:]
        tinygemms = []
        for _ in range(many4):
            tinygemm = torch.nn.Linear(k, n, bias=False, dtype=torch.bfloat16, device="cuda")
            tinygemm.weight.data.copy_(weight)
            quantize_(tinygemm, Int4WeightOnlyConfig(group_size=_GROUP, int4_packing_format="tile_packed_to_4d",
                                                     set_inductor_config=False))
            tinygemms.append(tinygemm)
        us["tinygemm"] = time_us([lambda t=t: t(x[None]) for t in tinygemms])
        del tinygemms
        us["bf16"] = time_us([lambda w=w: w @ x for w in weights])
        del weights[1:]
        if humming_kernel.installed():
            for name, scheme, many in (("humming", humming_kernel.WEIGHTS, many4),
                                       ("humming_int8", humming_kernel.INT8_WEIGHTS, many8)):
                try:  # a failure is recorded; ours are what this bench is for
                    us[name] = time_us(humming_calls(weight, x, scheme, many))
                except Exception as e:
                    here[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
        right = [name for name in ours if error[name] <= MOST_ERROR]  # a fast wrong kernel is not the best
        best = {kind: min((name for name in right if name.startswith(kind)), key=us.get, default=None)
                for kind in ("w4a8", "w8a8", "gemv16")}
        gigabytes = {"w4a8": int4_bytes / 1e9, "w8a8": int8_bytes / 1e9, "gemv16": n * k * 2 / 1e9}
        here.update(us=us, relative_error=error, best=best, copies={"int4": many4, "int8": many8},
                    weights_tb_s={kind: round(gigabytes[kind] / us[name] * 1e3, 2) for kind, name in best.items()
                                  if name},
                    quantize_us=time_us([lambda: quantize_row(x)]))
        for name in us:
            per_token[name] = per_token.get(name, 0.0) + us[name] * layers / 1e3
        print(f"{n}x{k}: best {best}, {here['weights_tb_s']} TB/s; us {us}", flush=True)
        runs.write_json(Path(OUT), results)
    results["ms_a_token"] = {name: round(ms, 2) for name, ms in sorted(per_token.items(), key=lambda item: item[1])}
    runs.write_json(Path(OUT), results)  # the layers' products alone (not the output head)
    print(results["ms_a_token"])


if __name__ == "__main__":
    sys.exit(cli.run(main))
