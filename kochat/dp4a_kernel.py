"""One row times an int4 or int8 export's weights through the GPU's 8-bit dot products (dp4a): the row rounded to
int8 in blocks of 32, as llama.cpp's CUDA kernels multiply one row by its GGUF weights. The fastest way an export
answers one question at a time: at the 12.8b shape on an H200 (bench/RESULTS.md, 2026-12-03) an int4 export loaded as
chat_ko.py loads it answered one row at 253.8-266.8 tokens/s (on two machines) against 199.8 on humming's kernel,
within 7.3 GiB; int8 at 183.0 against humming's 169.7.
The layers' products alone: 2.2 ms a token against humming's 3.4 (int8: 3.5 / 4.7). chat_ko.py moves an export here
as it loads (answering.load_for_answering, kernels="one_row"); serve_ko.py keeps these beside humming's (for batches)
where both fit.

Why it is faster: a kernel that turns each 4-bit level into a float and multiplies in floats spends about four
instructions a weight, more than a multiprocessor issues at the rate memory delivers weights (~36 a cycle on an
H200). Here one dp4a multiplies four levels by four int8 activations and sums them in integers, and the scales
apply once per block of 32:
    int4 (w4a8_gemv): sum over a block b of group g of w_k x_k = s_g d_b sum(q_k a_k) + (z_g - 8 s_g) d_b sum(a_k)
    int8 (w8a8_gemv): sum over a row of w_k x_k = s_row sum over blocks of d_b sum(q_k a_k)
with int4 w_k = (q_k - 8) s_g + z_g (q 0..15, s and z in bf16 per 128 weights: tinygemm's scheme, so an int4 export's
levels, scales and zeros load as they are), int8 w_k = q_k s_row (torchao's int8: a scale per row; the levels shared
with the export's tensor, not copied), and x_k ~ d_b a_k (a -127..127, d_b = the block's largest |x| / 127; the sum
of the rounded values, as llama.cpp's q8_1, so that the offsets' product cancels the levels' rounding as it does
unrounded). The row's rounding is the price: the products ~0.55 % from the float product of the same weights.
Rounding the row is a few element-wise ops a compiled decoding step fuses into the layer norm or GELU before each
product (so the MLP's GELU is not kept apart here, kochat/row_sums.py).

Several rows (a prompt, a batch) are not for these kernels: they go to the export's layer where it is kept (`keep`:
moved onto humming's kernel after), else the levels are written out as 16-bit weights a layer at a time and multiplied
by cuBLAS (a prompt once per answer). The kernels are compiled at run time by NVRTC (cuda-bindings, no nvcc) for the
GPU found, in a second or two, and each layer's product of one row (and of two, where it holds the weights alone) is
checked against the export's before it moves: a failure is one line, and that layer and the ones after it stay on the
export's kernel. NVIDIA GPUs of compute capability 8.0 (Ampere) and newer, for answering only.
"""
from __future__ import annotations

import ctypes
import gc
import importlib.util
import weakref
from contextlib import nullcontext

import torch

from .humming_kernel import first_line

OVERLAP = False  # kochat's one-row kernels launched with programmatic dependent launch where the GPU has it
#                 (LAUNCH_SOURCE): off until measured (bench.quant_kernels --overlap=true)
PACKAGE = "cuda-bindings==13.0.3"  # NVRTC and the driver API from Python (measured with torch 2.11, CUDA 13);
#                                    cuda-bindings 12.x for a CUDA 12 build of torch
AGREEMENT = 0.02  # a layer's product of one row here against the export's: the relative distance allowed (the
#                   row's rounding to int8 and the output's to bf16 put a right one near 0.005)
GROUP = 128  # fixed by the kernels: int4 weights sharing a scale and zero (tinygemm's group size)
BLOCK = 32   # and activations sharing an int8 scale; one 16-byte load of int4 weights covers one block
WIDEST = 32768  # the row and its blocks' scales are staged in shared memory, 1.25 bytes a column: 40 KiB here, of
#                 the 48 a launch has unasked
# Each kernel's rows per warp, warps a block and 16-byte loads in flight per lane: the best over all layer sizes of
# the 12.8b shape on an H200, and the sizes whose own best differed (bench.dp4a_rows;
# bench/results/2026-12-03-h200-dp4a/dp4a-unroll8.json)
SETTINGS = {"w4a8": (1, 8, 2), "w8a8": (1, 8, 4), "w4a8 15360x5120": (1, 8, 8), "w4a8 20480x5120": (1, 8, 8)}

# Programmatic dependent launch, for every kernel here that is launched with `overlap` (Compiled.run): compiled with
# OVERLAP=1 for a GPU of compute capability 9.0 or newer, such a kernel may start while the one before it on the
# stream ends; it reads or writes nothing that one touches before WAIT_FOR_PREVIOUS, and lets the next one start
# (LET_NEXT_START) only once it no longer reads any memory but its constant weights. Otherwise all three are nothing.
LAUNCH_SOURCE = r"""
#if OVERLAP && __CUDA_ARCH__ >= 900
#define WAIT_FOR_PREVIOUS() asm volatile("griddepcontrol.wait;" ::: "memory")
#define LET_NEXT_START() asm volatile("griddepcontrol.launch_dependents;" ::: "memory")
#define PREFETCH_L2(address) asm volatile("prefetch.global.L2 [%0];" :: "l"(address))
#else
#define WAIT_FOR_PREVIOUS()
#define LET_NEXT_START()
#define PREFETCH_L2(address)
#endif
"""

# write_sum, shared with kochat/row16_kernel.py's 16-bit kernel: a warp's 32 partial sums added and written as one bf16
COMMON_SOURCE = LAUNCH_SOURCE + r"""
__device__ __forceinline__ void write_sum(float acc, unsigned short* out, int row, int lane) {
    #pragma unroll
    for (int step = 16; step > 0; step >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, step);
    if (lane == 0) {
        unsigned short bits;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(bits) : "f"(acc));
        out[row] = bits;
    }
}
"""

SOURCE = COMMON_SOURCE + r"""
// act [K/4]: int8 activations, four to a word; act_scale [K/32]: each block's (d, d * sum of its int8 values). Both
// staged in shared memory by every block, the activations' 16-byte pieces at SLOT(i) (so that neighbouring lanes
// read neighbouring 16 bytes), then the (d, sum) pairs.
#define STAGE_ACTIVATIONS(SLOT)                                                                                    \
    extern __shared__ int4 shared[];                                                                               \
    const int blocks = k / 32;                                                                                     \
    int4* sa = shared;                                                                                             \
    float2* sd = (float2*)(shared + 2 * blocks);                                                                   \
    WAIT_FOR_PREVIOUS();                                                                                           \
    for (int i = threadIdx.x; i < 2 * blocks; i += blockDim.x) sa[SLOT(i)] = act[i];                               \
    for (int i = threadIdx.x; i < blocks; i += blockDim.x) sd[i] = act_scale[i];                                  \
    __syncthreads();                                                                                               \
    LET_NEXT_START();                                                                                              \
    const int lane = threadIdx.x & 31;                                                                             \
    const int first = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * ROWS;

#define DP4A(type, q, a) asm("dp4a." type " %0, %1, %2, %0;" : "+r"(dot) : "r"(q), "r"(a))

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

// Several rows (a prompt) multiply a layer's weights in bf16 through cuBLAS: w4_weights and w8_weights write them,
// [N, K] in order, one thread a 16-byte piece of the int4 levels (8 weights) or of the int8 ones (16).
__device__ __forceinline__ unsigned bf16x2(float low, float high) {
    unsigned bits;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(bits) : "f"(high), "f"(low));
    return bits;
}

extern "C" __global__ void w4_weights(const unsigned* __restrict__ weight, const unsigned* __restrict__ group,
                                      uint4* __restrict__ out, int n_rows, int k) {
    const int words = k / 8;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)n_rows * words) return;
    const unsigned w = weight[i], g = group[(i / words) * (k / 128) + (i % words) / 16];
    const float scale = __uint_as_float(g << 16), base = __uint_as_float(g & 0xFFFF0000u) - 8.f * scale;
    #define LEVEL(shift) fmaf((float)((w >> (shift)) & 15), scale, base)  // byte b: k = 8j+b low, 8j+4+b high
    out[i] = make_uint4(bf16x2(LEVEL(0), LEVEL(8)), bf16x2(LEVEL(16), LEVEL(24)), bf16x2(LEVEL(4), LEVEL(12)),
                        bf16x2(LEVEL(20), LEVEL(28)));
}

extern "C" __global__ void w8_weights(const int4* __restrict__ weight, const float* __restrict__ row_scale,
                                      uint4* __restrict__ out, int n_rows, int k) {
    const int pieces = k / 16;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)n_rows * pieces) return;
    const float s = row_scale[i / pieces];
    const int4 w = weight[i];
    #define SIGNED(word, b) ((float)(((int)(word) << (24 - 8 * (b))) >> 24) * s)  // byte b, sign extended
    #define FOUR(word) bf16x2(SIGNED(word, 0), SIGNED(word, 1)), bf16x2(SIGNED(word, 2), SIGNED(word, 3))
    out[2 * i] = make_uint4(FOUR(w.x), FOUR(w.y));
    out[2 * i + 1] = make_uint4(FOUR(w.z), FOUR(w.w));
}
"""


def check(result, what: str):
    """cuda-bindings calls return (error, values…): the values, or a RuntimeError naming the call."""
    error, *values = result if isinstance(result, tuple) else (result,)
    if int(error) != 0:
        raise RuntimeError(f"{what} failed: {error!r}")
    return values[0] if len(values) == 1 else values


def compiled(source: str, defines: dict[str, int]) -> bytes:
    """`source` compiled by NVRTC for the GPU of torch's current device with `defines` (-DNAME=value): its cubin."""
    from cuda.bindings import nvrtc
    major, minor = torch.cuda.get_device_capability()
    options = [f"--gpu-architecture=sm_{major}{minor}".encode(), b"--std=c++17",
               *(f"-D{name}={value}".encode() for name, value in defines.items())]
    program = check(nvrtc.nvrtcCreateProgram(source.encode(), b"kochat_kernels.cu", 0, [], []), "nvrtcCreateProgram")
    result = nvrtc.nvrtcCompileProgram(program, len(options), options)
    if int(result[0]) != 0:
        size = check(nvrtc.nvrtcGetProgramLogSize(program), "nvrtcGetProgramLogSize")
        log = b" " * size
        check(nvrtc.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
        raise RuntimeError(f"NVRTC could not compile the kernels: {log.decode(errors='replace').strip()[:2000]}")
    size = check(nvrtc.nvrtcGetCUBINSize(program), "nvrtcGetCUBINSize")
    cubin = b" " * size
    check(nvrtc.nvrtcGetCUBIN(program, cubin), "nvrtcGetCUBIN")
    check(nvrtc.nvrtcDestroyProgram(program), "nvrtcDestroyProgram")
    return cubin


class Compiled:
    """`source`'s kernels compiled with `defines` for the GPU of torch's current device (compiled()), loaded into
    each GPU as first launched there, launched on torch's current stream (so a CUDA graph captures them)."""

    def __init__(self, source: str, defines: dict[str, int]):
        from cuda.bindings import driver
        self.overlap = OVERLAP and torch.cuda.get_device_capability()[0] >= 9  # LAUNCH_SOURCE's OVERLAP
        self.driver, self.cubin = driver, compiled(source, {**defines, "OVERLAP": int(self.overlap)})
        self.functions: dict[tuple[int, str], object] = {}  # by GPU and name, each module loaded once a GPU

    def function(self, name: str, device: torch.device):
        key = (device.index, name)
        if key not in self.functions:
            with torch.cuda.device(device):
                torch.empty(1, device=device)  # torch's context of that GPU, current on this thread, loads it
                module = check(self.driver.cuModuleLoadData(self.cubin), "cuModuleLoadData")
            self.functions[key] = check(self.driver.cuModuleGetFunction(module, name.encode()), "cuModuleGetFunction")
        return self.functions[key]

    def run(self, name: str, blocks: int, threads: int, shared: int, tensors: tuple, *scalars: int | float,
            overlap: bool = False) -> None:
        """`name` on `blocks` of `threads` over the tensors' memory then the scalars (int: a C int, float: a C
        float), on torch's current stream. `overlap`: a kernel that waits as LAUNCH_SOURCE says, launched with
        programmatic dependent launch where these kernels were compiled for it."""
        device = tensors[0].device
        stream = self.driver.CUstream(torch.cuda.current_stream(device).cuda_stream)
        pointers = [t.data_ptr() for t in tensors]
        kinds = [ctypes.c_float if isinstance(value, float) else ctypes.c_int for value in scalars]
        arguments = ((*pointers, *scalars), (*[ctypes.c_void_p] * len(pointers), *kinds))
        function = self.function(name, device)
        if not (overlap and self.overlap):
            check(self.driver.cuLaunchKernel(function, blocks, 1, 1, threads, 1, 1, shared, stream, arguments, 0),
                  "cuLaunchKernel")
            return
        config = self.driver.CUlaunchConfig()
        config.gridDimX, config.gridDimY, config.gridDimZ = blocks, 1, 1
        config.blockDimX, config.blockDimY, config.blockDimZ = threads, 1, 1
        config.sharedMemBytes, config.hStream = shared, stream
        attribute = self.driver.CUlaunchAttribute()
        attribute.id = self.driver.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
        attribute.value.programmaticStreamSerializationAllowed = 1
        config.attrs, config.numAttrs = [attribute], 1
        check(self.driver.cuLaunchKernelEx(config, function, arguments, 0), "cuLaunchKernelEx")


class Kernels(Compiled):
    """`source`'s kernels compiled with one setting of their shape constants (ROWS per warp, WARPS a block, UNROLL
    loads in flight)."""

    def __init__(self, rows: int, warps: int, unroll: int, source: str = SOURCE):
        super().__init__(source, {"ROWS": rows, "WARPS": warps, "UNROLL": unroll})
        self.rows, self.warps = rows, warps

    def launch(self, name: str, n: int, k: int, *tensors, shared: int = 0) -> torch.Tensor:
        """`name`, a product of one row, over n output rows of width k, the tensors its arguments then the bf16
        output [n] it returns; `shared`: bytes of shared memory (default: the int8 activations and their blocks'
        (d, sum) pairs)."""
        out = torch.empty(n, dtype=torch.bfloat16, device=tensors[0].device)
        self.run(name, -(-n // (self.rows * self.warps)), self.warps * 32, shared or k + k // BLOCK * 8,
                 (*tensors, out), n, k, overlap=True)
        return out

    def weights(self, levels, scales, n: int, k: int) -> torch.Tensor:
        """A layer's weights [n, k] in bf16 from its int4 levels and groups (int32 levels) or int8 levels and row
        scales, for several rows' product."""
        int4 = levels.dtype == torch.int32
        out = torch.empty(n, k, dtype=torch.bfloat16, device=levels.device)
        pieces = n * k // (8 if int4 else 16)
        self.run("w4_weights" if int4 else "w8_weights", -(-pieces // 256), 256, 0, (levels, scales, out), n, k)
        return out

    def int4(self, packed, group, act, act_scale) -> torch.Tensor:
        return self.launch("w4a8_gemv", packed.shape[0], packed.shape[1] * 8, packed, group, act, act_scale)

    def int8(self, levels, row_scale, act, act_scale) -> torch.Tensor:
        return self.launch("w8a8_gemv", levels.shape[0], levels.shape[1], levels, row_scale, act, act_scale)


_COMPILED: dict[tuple, Kernels] = {}  # each setting compiled once a process for each kind of GPU


def kernels_for(kind: str, n: int, k: int) -> Kernels:
    """The Kernels for a layer of `kind` (w4a8, w8a8) with n outputs of width k, in its SETTINGS, compiled for the
    current GPU's kind."""
    setting = SETTINGS.get(f"{kind} {n}x{k}", SETTINGS[kind])
    key = (*setting, torch.cuda.get_device_capability(), OVERLAP)
    if key not in _COMPILED:
        _COMPILED[key] = Kernels(*setting)
    return _COMPILED[key]


def quantize_row(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One row [K] as (act [K/4] int32: int8 activations, four to a word; act_scale [K/32, 2] float32: each block's
    d and the sum of its rounded values, d * sum(a): with the row's own sum instead, the offsets' product would not
    cancel the levels' rounding error, ~2.5x the error on random weights)."""
    blocks = x.float().view(-1, BLOCK)
    d = blocks.abs().amax(-1).clamp(min=1e-30) / 127
    rounded = torch.round(blocks / d[:, None])
    act = rounded.to(torch.int8).view(-1).view(torch.int32)
    return act, torch.stack([d, d * rounded.sum(-1)], -1).contiguous()


def pack_levels(q: torch.Tensor) -> torch.Tensor:
    """Levels 0..15 [N, K] as w4a8_gemv reads them, [N, K/8] int32: in each word of 8 columns, byte i holds column
    i in its low nibble and column 4 + i in its high one."""
    n, k = q.shape
    q = q.to(torch.uint8).view(n, k // 8, 2, 4)  # [row, word, which nibble, byte]
    return (q[:, :, 0] | (q[:, :, 1] << 4)).contiguous().view(torch.int32).view(n, k // 8)


def pack_groups(scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Each group's scale and zero [N, K/128] as one int32: the bf16 scale in the low half, the zero in the high."""
    return torch.stack([scale, zero], -1).to(torch.bfloat16).contiguous().view(torch.int32).squeeze(-1)


def tinygemm_levels(weight) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An int4 export's weight (torchao's Int4TilePackedTo4dTensor) as its levels [N, K] 0..15 and its scales and
    zeros [N, K/128]: tinygemm's layout has no unpacking, so the levels come from a product with the identity of the
    same packed levels with every scale 1 and zero 8, (q - 8) * 1 + 8 = q, exact in bf16 whatever the group's real
    scale and zero. torchao pads a layer's packed levels and scales to its tile sizes; the product drops the padding,
    the scales are cut to the layer's own size."""
    from torchao.quantization import Int4TilePackedTo4dTensor
    n, k = weight.shape
    unit = torch.empty_like(weight.scale_and_zero)
    unit[..., 0], unit[..., 1] = 1, 8
    levels_only = Int4TilePackedTo4dTensor(weight.qdata, unit, weight.block_size, weight.shape)
    identity = torch.eye(k, dtype=torch.bfloat16, device=weight.qdata.device)
    q = torch.nn.functional.linear(identity, levels_only).t()  # [N, K], whole numbers 0..15
    del identity
    scale, zero = (weight.scale_and_zero[..., i].t()[:n, :k // GROUP].float() for i in (0, 1))  # [N, K/128]
    return q, scale, zero


def export_levels(layer: torch.nn.Linear) -> tuple[bool, torch.Tensor, torch.Tensor]:
    """(int4 or not, levels, scales) of an export's layer as the kernels read them: int4's (tinygemm's) packed
    levels and each group's scale and zero; int8's (torchao's) levels where they are and a float32 scale a row. The
    scales as int32 bits, which model.to(dtype) leaves as they are (the kernels read them as floats)."""
    from torchao.quantization import Int4TilePackedTo4dTensor

    if isinstance(layer.weight, Int4TilePackedTo4dTensor):
        q, scale, zero = tinygemm_levels(layer.weight)
        return True, pack_levels(q), pack_groups(scale, zero)
    levels, scales = layer.weight.qdata.contiguous(), layer.weight.scale.reshape(-1).float().contiguous()
    if scales.numel() != layer.out_features:
        raise ValueError(f"the int8 kernel takes a scale per row, this layer has {scales.numel()}")
    return False, levels, scales.view(torch.int32)


def its_gpu(device: torch.device):
    """`device` made torch's current GPU, where it is one."""
    return torch.cuda.device(device) if device.type == "cuda" else nullcontext()


# the moved layers by index (a custom op takes no modules), held weakly as humming_kernel's: a model let go frees them
_LAYERS: list[weakref.ref] = []


@torch.library.custom_op("kochat::dp4a_product", mutates_args=())
def _product(act: torch.Tensor, act_scale: torch.Tensor, index: int) -> torch.Tensor:
    with its_gpu(act.device):  # over several GPUs: the layer's own
        return _LAYERS[index]().product(act, act_scale)


@_product.register_fake
def _(act: torch.Tensor, act_scale: torch.Tensor, index: int) -> torch.Tensor:
    return act.new_empty(_LAYERS[index]().out_features, dtype=torch.bfloat16)


@torch.library.custom_op("kochat::dp4a_weights", mutates_args=())
def _weights(levels: torch.Tensor, index: int) -> torch.Tensor:
    """The layer's weights in bf16 for several rows' product: one opaque op inside a compiled step (a batch's)."""
    layer = _LAYERS[index]()
    with its_gpu(levels.device):
        return layer.kernels.weights(levels, layer.scales, layer.out_features, layer.in_features)


@_weights.register_fake
def _(levels: torch.Tensor, index: int) -> torch.Tensor:
    layer = _LAYERS[index]()
    return levels.new_empty(layer.out_features, layer.in_features, dtype=torch.bfloat16)


class Dp4aLinear(torch.nn.Module):
    """An int4 (tinygemm's) or int8 (torchao's) linear layer whose product of one row goes through w4a8_gemv or
    w8a8_gemv, the row rounded to int8 by ops a compiled step fuses into what comes before (inside torch.compile the
    kernel is one opaque op, captured in the step's CUDA graph). Several rows: with `keep`, `rows`, the export's
    layer (moved onto humming's kernel after); else the layer's weights written in bf16 by w4_weights or w8_weights
    and multiplied by cuBLAS, a layer at a time (at the 12.8b shape a prompt's 160 layers take ~10 ms this way; in
    float32 torch ops ~100). The same levels, scales and zeros as the export; int8's levels its very tensor."""

    def __init__(self, layer: torch.nn.Linear, keep: bool, kernels=kernels_for):
        super().__init__()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.int4, levels, scales = export_levels(layer)
        self.kind = "w4a8" if self.int4 else "w8a8"
        self.kernels = kernels(self.kind, self.out_features, self.in_features)
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("scales", scales, persistent=False)
        self.bias = layer.bias
        self.rows = layer if keep else None  # a layer of its own: onto_humming moves it
        self.index = len(_LAYERS)  # the custom ops' handle (a layer that fails its check leaves a dead reference)
        _LAYERS.append(weakref.ref(self))
        check_product(lambda row: self.product(*quantize_row(row[0]))[None], layer, rows=1)
        if not keep:
            check_product(self.several, layer, rows=2)

    def product(self, act: torch.Tensor, act_scale: torch.Tensor) -> torch.Tensor:
        multiply = self.kernels.int4 if self.int4 else self.kernels.int8
        return multiply(self.levels, self.scales, act, act_scale)

    def several(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Several rows times the weights in bf16 (`x`'s dtype), plus `bias`."""
        weight = torch.ops.kochat.dp4a_weights(self.levels, self.index)
        return torch.nn.functional.linear(x, weight.to(x.dtype), bias)

    def forward(self, x):
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] != 1:
            if self.rows is not None:
                return self.rows(x)
            return self.several(x, self.bias)
        act, act_scale = quantize_row(rows[0])
        y = torch.ops.kochat.dp4a_product(act, act_scale, self.index).view(*x.shape[:-1], self.out_features)
        y = y.to(x.dtype)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        several = "the export's layer" if self.rows is not None else "its weights in bf16"
        return f"{self.kind}, in_features={self.in_features}, out_features={self.out_features}, several rows: {several}"


def installed() -> bool:
    try:
        return importlib.util.find_spec("cuda.bindings") is not None
    except ModuleNotFoundError:  # no `cuda` package at all
        return False


def on_dp4a(model) -> int:
    """How many of `model`'s layers multiply one row here."""
    return sum(isinstance(module, Dp4aLinear) for module in model.modules())


def movable(module: torch.nn.Module) -> bool:
    """A linear layer of an export (int4 saved for tinygemm, or torchao's weight-only int8) of a width the kernels
    take (a multiple of GROUP, the row staged in shared memory) on an NVIDIA GPU of compute capability 8.0 or newer."""
    if type(module) is not torch.nn.Linear or module.weight.device.type != "cuda":
        return False
    from torchao.quantization import Int4TilePackedTo4dTensor, Int8Tensor
    int4 = isinstance(module.weight, Int4TilePackedTo4dTensor)
    int8 = isinstance(module.weight, Int8Tensor) and module.weight.act_quant_kwargs is None
    return ((int4 or int8) and module.in_features % GROUP == 0 and module.in_features <= WIDEST
            and torch.cuda.get_device_capability(module.weight.device) >= (8, 0))


def weight_format(layer: torch.nn.Linear) -> str:
    return "int4" if "Int4" in type(layer.weight).__name__ else "int8"


def onto_dp4a(model, keep: bool, kernels=kernels_for) -> str:
    """Move every layer of `model` that can (movable) onto Dp4aLinear, in place. `keep`: the export's layer kept
    for several rows (onto_humming then moves it: the weights held twice); else held once.
    "" where done or where nothing applies; else the one line that says why some or all stay on the export's kernel
    (each layer answers correctly on either). `kernels`: kind, n, k -> Kernels (bench.dp4a_rows passes its sweep's)."""
    layers = [(name, module) for name, module in model.named_modules() if movable(module)]
    if not layers:
        return ""
    fmt = weight_format(layers[0][1])
    if not installed():
        return f"{fmt} one row at a time stays on the export's kernel: pip install {PACKAGE} for the faster dp4a one"
    from tqdm.auto import tqdm

    total, moved = len(layers), 0
    try:  # each export layer let go as it moves: int4's weights held twice one layer at a time only
        with tqdm(total=total, desc=f"{fmt} layers onto the dp4a kernel for one row", unit="layer") as bar:
            while layers:
                name, module = layers.pop(0)
                parent, _, child = name.rpartition(".")
                with its_gpu(module.weight.device):  # compiled for, and loaded into, the layer's GPU
                    setattr(model.get_submodule(parent), child, Dp4aLinear(module, keep, kernels))
                del module
                moved += 1
                bar.update()
    except Exception as e:
        kept = (f"{fmt} one row at a time stays on the export's kernel" if not moved
                else f"{total - moved} of {total} {fmt} layers stay on the export's kernel for one row")
        return f"{kept}: moving them onto the dp4a kernel failed ({type(e).__name__}: {first_line(e)})"
    finally:  # the export's layers let go sit in reference cycles (their hooks): collected now, not at some later
        gc.collect()  # point, so that the memory they held is free before the first answer (int4: 6.5 GiB at 12.8b)
        torch.cuda.empty_cache()
    return ""


def check_product(product, layer: torch.nn.Linear, rows: int, allowed: float = AGREEMENT,
                  against: str = "the export's") -> None:
    """Raise where `product` of `rows` random rows is further than `allowed` from `layer`'s (bias left out), or
    fails: a wrong layout or level stops here, not as wrong answers."""
    with torch.no_grad():  # a generator of its own: the caller's random numbers stay as they were
        generator = torch.Generator(layer.weight.device).manual_seed(0)
        x = torch.randn(rows, layer.in_features, generator=generator, device=layer.weight.device)
        x = x.to(layer.weight.dtype)
        expected = torch.nn.functional.linear(x, layer.weight).float()
        gap = float((product(x).float() - expected).norm() / expected.norm())
    if not gap <= allowed:
        raise ValueError(f"a layer's product of {'one row' if rows == 1 else f'{rows} rows'} on the kernel is "
                         f"{gap:.3f} from {against} (allowed {allowed})")
