"""One row times a 16-bit model's weights through a kernel of kochat's own, bf16_gemv, instead of cuBLAS: how a bf16
model (a merged export, a run loaded in 16 bits) answers one question at a time on an NVIDIA GPU where cuda-bindings
is installed (the NVRTC compile of kochat/dp4a_kernel.py, no nvcc). Measured (bench/RESULTS.md, 2026-12-03, one
H200): the Qwen3-8B shape loaded as serve_ko.py loads it answered one row at 192.2 tokens/s against 184.4 through
cuBLAS on the same machine (a probe on another: 188.4 and 185.5 against 171.5 and 169.9); the 12.8b shape, in a
probe, at 130.0 against 126.7, and as chat_ko.py loads it (with kochat/one_row_attention.py's kernel) at 129.0-129.3.

Why it is faster: for one row cuBLAS splits the narrower products (attention's output, the MLP's way back) over
their input, a second kernel summing the parts, and reads the smaller matrices at ~3.2 TB/s; bf16_gemv stages the row
in shared memory and gives each warp one output row (or two), reading each layer size at 3.1-4.2 TB/s in one kernel.
bf16 widened to float32, multiplied and summed in float32, written out in bf16 (a bias added after, in bf16).

Where it goes: answering.load_for_answering moves a 16-bit model's products here for chat_ko.py (one answer at a
time) and serve_ko.py (one client's steps), after fusing q/k/v and gate/up (kochat/fused_projections.py, which gen()
would do at its first compiled answer): fewer, larger products. Several rows (a prompt, a batch) multiply as before
(F.linear, cuBLAS). Each product of one row is checked against F.linear's as it moves. bf16 weights only (fp16 and
float32 stay on cuBLAS), contiguous, of a width that is a multiple of 8 and at most WIDEST; NVIDIA GPUs of compute
capability 8.0 (Ampere) and newer.
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from . import dp4a_kernel
from .fused_projections import Slice, fusable, fuse_projections
from .humming_kernel import first_line

WIDEST = 24576  # the whole bf16 row is staged in shared memory: 48 KiB, the most a launch has unasked
AGREEMENT = 0.006  # a product of one row here against F.linear's: the relative distance allowed (both rounded to
#                    bf16, a right one near 0.002; a dropped piece of 8 weights in the widest row is 0.018)
# rows per warp, warps a block, 16-byte loads in flight per lane: the best over the layer sizes of the 12.8b and
# Qwen3-8B shapes on an H200, and the sizes whose own best differed (bench.dp4a_rows: results/2026-12-03-h200-dp4a/
# dp4a-unroll8.json, results/2026-12-03-h200-qwen3-gemv16/call1/dp4a-qwen3.json)
SETTINGS = {"bf16": (1, 8, 4), "bf16 15360x5120": (1, 8, 8), "bf16 20480x5120": (1, 8, 8),
            "bf16 5120x20480": (2, 8, 8), "bf16 4096x12288": (1, 8, 8)}

# weight [N, K/8] of 16 bytes, 8 bf16 of one row in order; x [K/8] the bf16 row, staged in shared memory as it is. A
# bf16 widens to a float32 by a shift (low half) or a mask (high half), then one fused multiply-add.
KERNEL = r"""
__device__ __forceinline__ float dot_bf16x2(unsigned w, unsigned a, float acc) {
    acc = fmaf(__uint_as_float(w << 16), __uint_as_float(a << 16), acc);
    return fmaf(__uint_as_float(w & 0xFFFF0000u), __uint_as_float(a & 0xFFFF0000u), acc);
}

extern "C" __global__ void __launch_bounds__(WARPS * 32) bf16_gemv(
        const uint4* __restrict__ weight, const uint4* __restrict__ x, unsigned short* __restrict__ out, int n_rows,
        int k) {
    extern __shared__ uint4 sx[];
    const int chunks = k / 8;
    const int lane = threadIdx.x & 31;
    const int first = (blockIdx.x * WARPS + (threadIdx.x >> 5)) * ROWS;
    // where launched to overlap the kernel before: this warp's weights (no kernel's output) on their way to L2,
    // 128 bytes a lane at a time, while that one ends
    for (int r = 0; r < ROWS && first + r < n_rows; ++r)
        for (int c = lane * 8; c < chunks; c += 32 * 8) PREFETCH_L2(weight + (long long)(first + r) * chunks + c);
    WAIT_FOR_PREVIOUS();
    for (int i = threadIdx.x; i < chunks; i += blockDim.x) sx[i] = x[i];
    __syncthreads();
    LET_NEXT_START();
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


class Kernels(dp4a_kernel.Kernels):
    """bf16_gemv compiled with one setting (`source`: bench.dp4a_rows compiles it beside the dp4a kernels)."""

    def __init__(self, rows: int, warps: int, unroll: int, source: str = dp4a_kernel.COMMON_SOURCE + KERNEL):
        super().__init__(rows, warps, unroll, source)

    def bf16(self, weight: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        """One bf16 row [K] times bf16 weights [N, K]: [N] in bf16."""
        n, k = weight.shape
        return self.launch("bf16_gemv", n, k, weight, row, shared=2 * k)


_COMPILED: dict[tuple, Kernels] = {}  # each setting compiled once a process for each kind of GPU


def kernels_for(n: int, k: int) -> Kernels:
    """The Kernels for a product with n outputs of width k, in its SETTINGS, compiled for the current GPU's kind."""
    setting = SETTINGS.get(f"bf16 {n}x{k}", SETTINGS["bf16"])
    key = (*setting, torch.cuda.get_device_capability(), dp4a_kernel.OVERLAP)
    if key not in _COMPILED:
        _COMPILED[key] = Kernels(*setting)
    return _COMPILED[key]


# the moved products by index (a custom op takes no modules), held weakly: a model let go frees them
_LAYERS: list[weakref.ref] = []


@torch.library.custom_op("kochat::row16_product", mutates_args=())
def _product(row: torch.Tensor, index: int) -> torch.Tensor:
    if row.data_ptr() % 16:  # the kernel reads the row 16 bytes at a time: a row that starts inside a larger
        row = row.clone()    # tensor is copied to a start of its own
    with dp4a_kernel.its_gpu(row.device):  # over several GPUs: the layer's own
        return _LAYERS[index]().product(row)


@_product.register_fake
def _(row: torch.Tensor, index: int) -> torch.Tensor:
    return row.new_empty(_LAYERS[index]().out_features)


class Row16Linear(torch.nn.Module):
    """A bf16 product (a linear layer's, or a FusedLinear's stacked one) whose product of one row goes through
    bf16_gemv, one opaque op inside a compiled step (captured in its CUDA graph); several rows through F.linear. Its
    weight and bias are the layer's own parameters, under the same names (a tied output head stays tied)."""

    def __init__(self, weight: torch.nn.Parameter, bias: torch.nn.Parameter | None, kernels=kernels_for):
        super().__init__()
        self.weight, self.bias = weight, bias
        self.out_features, self.in_features = weight.shape
        self.kernels = kernels(self.out_features, self.in_features)
        self.index = len(_LAYERS)
        _LAYERS.append(weakref.ref(self))
        dp4a_kernel.check_product(lambda rows: self.product(rows[0])[None], self, rows=1, allowed=AGREEMENT,
                                  against="cuBLAS's")

    def product(self, row: torch.Tensor) -> torch.Tensor:
        return self.kernels.bf16(self.weight, row)

    def forward(self, x):
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] != 1 or x.dtype != torch.bfloat16:
            return F.linear(x, self.weight, self.bias)
        y = torch.ops.kochat.row16_product(rows[0].contiguous(), self.index).view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, one row: bf16_gemv"


def movable(weight: torch.Tensor) -> bool:
    """Weights the kernel takes (kernel_takes) on an NVIDIA GPU of compute capability 8.0 or newer (not ROCm's)."""
    return (weight.device.type == "cuda" and torch.version.cuda is not None and kernel_takes(weight)
            and torch.cuda.get_device_capability(weight.device) >= (8, 0))


def kernel_takes(weight: torch.Tensor) -> bool:
    """Plain bf16 weights [N, K], contiguous from a 16-byte boundary (the kernel's loads), K a multiple of 8 and at
    most WIDEST."""
    return (type(weight) is torch.nn.Parameter and weight.dtype == torch.bfloat16 and weight.dim() == 2
            and weight.is_contiguous() and weight.data_ptr() % 16 == 0 and weight.shape[1] % 8 == 0
            and weight.shape[1] <= WIDEST)


def plain_linear(module: torch.nn.Module) -> bool:
    """A linear layer with nothing of its own (no hooks: accelerate's, placing a layer across GPUs, would be lost
    with it; no forward or parameters of its own): as fused_projections takes them."""
    return fusable([module])


def on_row16(model) -> int:
    """How many of `model`'s products multiply one row here."""
    return sum(isinstance(module, Row16Linear) for module in model.modules())


def onto_row16(model, kernels=kernels_for) -> str:
    """q/k/v and gate/up fused (fuse_projections), then every bf16 product of `model` that can (movable) moved onto
    Row16Linear for one row, in place. "" where done or where nothing applies; else the one line that says why some
    or all stay on cuBLAS (each answers correctly on either). `kernels`: n, k -> Kernels (bench.dp4a_rows passes
    its sweep's)."""
    if not any(plain_linear(m) and movable(m.weight) for m in model.modules()):
        return ""
    if not dp4a_kernel.installed():
        return f"16-bit one row at a time stays on cuBLAS: pip install {dp4a_kernel.PACKAGE} for kochat's faster kernel"
    fuse_projections(model)
    stacked = [fused for fused in {id(m.fused): m.fused for m in model.modules() if isinstance(m, Slice)}.values()
               if fused.multiply is None and movable(fused.weight)]
    layers = [(name, m) for name, m in model.named_modules() if plain_linear(m) and movable(m.weight)]
    total, moved = len(layers) + len(stacked), 0
    try:
        for fused in stacked:
            with dp4a_kernel.its_gpu(fused.weight.device):
                fused.multiply = Row16Linear(fused.weight, fused.bias, kernels)
            moved += 1
        for name, layer in layers:
            parent, _, child = name.rpartition(".")
            with dp4a_kernel.its_gpu(layer.weight.device):
                setattr(model.get_submodule(parent), child, Row16Linear(layer.weight, layer.bias, kernels))
            moved += 1
    except Exception as e:
        kept = ("16-bit one row at a time stays on cuBLAS" if not moved
                else f"{total - moved} of {total} 16-bit products stay on cuBLAS for one row")
        return f"{kept}: moving them onto kochat's bf16 kernel failed ({type(e).__name__}: {first_line(e)})"
    return ""
