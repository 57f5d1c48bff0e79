"""One layer's product for one row (one question answered at a time) at a real shape's layer sizes, on one GPU:
the 16-bit weights (cuBLAS), the int4 export's kernel (tinygemm), the int8 export's (torchao, compiled alone as
gen() compiles it), and two Triton kernels written here over their block sizes. Each timed as a CUDA graph of many
calls (triton.testing.do_bench_cudagraph), its result checked against the export's kernel. The per-token figure
adds all the model's layers: the products alone, not the whole answer (bench/RESULTS.md puts them beside
gen()'s profile). From the repository root:

    python3 -m bench.row_kernels --shape=polyglot-ko-12.8b --out=RESULT.json

The Triton kernels were a try at the int4 and int8 batch-1 targets, and did not beat the exports' own (RESULTS):
they read the exports' numbers unchanged and make floats without the GPU's slow integer-to-float conversion (a
few bits written into the fraction of a float of fixed exponent are that float plus a fixed fraction of them).
int4: tinygemm's scheme, (q - 8) * scale + zero, a scale and zero per 128 weights of a row (its own
scale_and_zero tensor, [K/128, N, 2]), the levels two to a byte. int8: the export's weights, a scale per row.
Random weights: speed only. The JSON is rewritten after each shape.
"""
import functools
import itertools
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from kochat import cli, runs
from kochat.errors import UserError

# ---- constants: override on the command line as --name=value ------------------------------------------
SHAPE = "polyglot-ko-12.8b"  # polyglot-ko-12.8b or qwen3-8b: which layer sizes
OUT = ""                     # the result JSON; required
INT4_BLOCKS = "8,16,32,64"   # rows a program of the int4 kernel computes, tried in turn
INT4_GROUPS = "1,2,4"        # groups of 128 weights a row it reads a step
INT8_BLOCKS = "8,16,32"      # rows a program of the int8 kernel computes
INT8_COLUMNS = "128,256,512"  # columns it reads a step
WARPS = "2,4,8"              # Triton warps a program

# (out, in) sizes of the products of one decoder layer, and the number of layers
SHAPES = {"polyglot-ko-12.8b": ([(15360, 5120), (5120, 5120), (20480, 5120), (5120, 20480)], 40),
          "qwen3-8b": ([(6144, 4096), (4096, 4096), (24576, 4096), (4096, 12288)], 36)}


GROUP = 128  # weights sharing a scale and zero in the int4 export (tinygemm's group size)


@functools.cache
def kernels():
    """The Triton kernels (Triton comes with CUDA builds of torch)."""
    import triton
    import triton.language as tl

    @triton.jit
    def int4_row(x_ptr, q_ptr, sz_ptr, out_ptr, N, K, row_bytes,
                 BLOCK_N: tl.constexpr, GROUPS: tl.constexpr, GROUP: tl.constexpr):
        # rows BLOCK_N of the output; each step reads GROUPS groups of GROUP weights of each row, a group's byte j
        # holding its columns j (low nibble) and j + GROUP/2 (high): both halves of x load contiguously
        HALF: tl.constexpr = GROUP // 2
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        g = tl.arange(0, GROUPS)
        j = tl.arange(0, HALF)
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        for k0 in range(0, K, GROUPS * GROUP):
            x_low = tl.load(x_ptr + k0 + g[:, None] * GROUP + j[None, :]).to(tl.float32)   # [GROUPS, HALF]
            x_high = tl.load(x_ptr + k0 + HALF + g[:, None] * GROUP + j[None, :]).to(tl.float32)
            b = tl.load(q_ptr + rows[:, None, None] * row_bytes + k0 // 2
                        + g[None, :, None] * HALF + j[None, None, :]).to(tl.int32)         # [BLOCK_N, GROUPS, HALF]
            # a level q as the float 1 + q/16: its 4 bits at the top of a float's fraction
            low = (((b << 19) & 0x780000) | 0x3F800000).to(tl.float32, bitcast=True)
            high = (((b << 15) & 0x780000) | 0x3F800000).to(tl.float32, bitcast=True)
            dot = tl.sum(low * x_low[None, :, :] + high * x_high[None, :, :], axis=2)      # [BLOCK_N, GROUPS]
            sz = sz_ptr + ((k0 // GROUP + g)[None, :] * N + rows[:, None]) * 2
            scale = tl.load(sz).to(tl.float32)
            zero = tl.load(sz + 1).to(tl.float32)
            x_sum = tl.sum(x_low + x_high, axis=1)                                          # [GROUPS]
            # (q - 8) * scale + zero = (1 + q/16) * 16 scale + (zero - 24 scale)
            acc += tl.sum(16 * scale * dot + (zero - 24 * scale) * x_sum[None, :], axis=1)
        tl.store(out_ptr + rows, acc.to(out_ptr.dtype.element_ty))

    @triton.jit
    def int8_row(x_ptr, w_ptr, s_ptr, out_ptr, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.arange(0, BLOCK_K)
        acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            x = tl.load(x_ptr + k0 + cols).to(tl.float32)
            w = tl.load(w_ptr + rows[:, None] * K + k0 + cols[None, :]).to(tl.uint8, bitcast=True).to(tl.int32)
            # w + 128 (flipping the sign bit of the byte) is below 2**8: w exactly, without a conversion
            wf = ((w ^ 128) | 0x4B000000).to(tl.float32, bitcast=True) - 8388736.0
            acc += wf * x[None, :]
        scale = tl.load(s_ptr + rows).to(tl.float32)
        tl.store(out_ptr + rows, (tl.sum(acc, axis=1) * scale).to(out_ptr.dtype.element_ty))

    return {"int4_row": int4_row, "int8_row": int8_row}


def int4_row(x: torch.Tensor, packed: torch.Tensor, scale_and_zero: torch.Tensor,
             block_n: int = 16, groups: int = 2, num_warps: int = 4) -> torch.Tensor:
    """x [K] times the int4 weights (packed [N, K/2] bytes, scale_and_zero [K/128, N, 2]): [N]."""
    n, k = packed.shape[0], packed.shape[1] * 2
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    kernels()["int4_row"][(n // block_n,)](x, packed, scale_and_zero, out, n, k, packed.shape[1], BLOCK_N=block_n,
                                           GROUPS=groups, GROUP=GROUP, num_warps=num_warps)
    return out


def int8_row(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
             block_n: int = 16, block_k: int = 256, num_warps: int = 4) -> torch.Tensor:
    """x [K] times the int8 weights (weight [N, K] int8, scale [N]): [N]."""
    n, k = weight.shape
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    kernels()["int8_row"][(n // block_n,)](x, weight, scale, out, k, BLOCK_N=block_n, BLOCK_K=block_k,
                                           num_warps=num_warps)
    return out


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Integer levels 0..15 [N, K] as bytes [N, K/2]: byte j of each group of 128 columns holds its column j in
    the low nibble and column j + 64 in the high one."""
    q = q.to(torch.uint8).reshape(q.shape[0], -1, 2, GROUP // 2)
    return (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(q.shape[0], -1).contiguous()


def from_tinygemm(weight) -> tuple[torch.Tensor, torch.Tensor]:
    """An int4 export's weight (torchao's Int4TilePackedTo4dTensor, tinygemm's layout) as (packed, scale_and_zero)
    for int4_row: the same levels. tinygemm's layout has no unpacking: its product with the identity gives the
    weights, from which the levels follow exactly (each weight is within bf16's rounding of its level)."""
    n, k = weight.shape
    identity = torch.eye(k, dtype=torch.bfloat16, device=weight.qdata.device)
    values = torch.nn.functional.linear(identity, weight).t().float()     # [N, K]
    del identity
    scale_and_zero = weight.scale_and_zero
    scale, zero = (scale_and_zero[..., i].t().float().repeat_interleave(GROUP, dim=1) for i in (0, 1))
    q = torch.round((values - zero) / scale + 8).clamp_(0, 15)
    return pack_int4(q), scale_and_zero


def numbers(name: str) -> list[int]:
    """A comma-separated constant as powers of 2 (Triton's block sizes), or one line saying what is wrong."""
    text = globals()[name]
    values = [int(v) for v in text.split(",") if v.strip().isdigit()]
    if not values or len(values) != len(text.split(",")) or any(v & (v - 1) for v in values):
        raise UserError(f"--{name.lower()}={text}: give powers of 2 separated by commas, e.g. 8,16,32")
    return values


def fastest(time_us, expected, choices: dict, fits, run, none_fit: str) -> dict:
    """The fastest of the kernel's settings (every combination of `choices` that `fits`), with its time and its
    result's relative error against `expected`; one line where none fits."""
    best = None
    for values in itertools.product(*choices.values()):
        config = dict(zip(choices, values))
        if not fits(config):
            continue
        error = ((run(config).float() - expected).norm() / expected.norm()).item()
        us = time_us(lambda: run(config))
        if best is None or us < best["us"]:
            best = {"us": us, **config, "relative_error": error}
    if best is None:
        raise UserError(none_fit)
    return best


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "OUT")
    sweep = {name: numbers(name) for name in ("INT4_BLOCKS", "INT4_GROUPS", "INT8_BLOCKS", "INT8_COLUMNS", "WARPS")}
    if not torch.cuda.is_available():
        raise UserError("this bench measures CUDA kernels and this machine has no NVIDIA GPU")
    if SHAPE not in SHAPES:
        raise UserError(f"--shape={SHAPE}: one of {', '.join(SHAPES)}")
    import triton
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    results = {"device": torch.cuda.get_device_name(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "versions": {**runs.versions(), "triton": triton.__version__}, "shape": SHAPE,
               "command": " ".join(["python3 -m bench.row_kernels", *argv]), "layers": {}}
    sizes, layers = SHAPES[SHAPE]

    def time_us(fn) -> float:
        return round(triton.testing.do_bench_cudagraph(fn, rep=50) * 1000, 2)

    def linear(weight, config):
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="cuda", dtype=torch.bfloat16)
        layer.weight.data.copy_(weight)
        quantize_(layer, config)
        return layer

    torch.manual_seed(0)
    for n, k in sizes:
        here = results["layers"][f"{n}x{k}"] = {}
        weight = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02
        x = torch.randn(k, device="cuda", dtype=torch.bfloat16)
        row = x[None]
        here["bf16"] = time_us(lambda: torch.nn.functional.linear(row, weight))

        tinygemm = linear(weight, Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d"))
        here["tinygemm"] = time_us(lambda: tinygemm(row))
        packed, scale_and_zero = from_tinygemm(tinygemm.weight)
        expected = tinygemm(row)[0].float()
        here["triton_int4"] = fastest(
            time_us, expected,
            {"block_n": sweep["INT4_BLOCKS"], "groups": sweep["INT4_GROUPS"], "warps": sweep["WARPS"]},
            lambda c: not (k % (c["groups"] * GROUP) or n % c["block_n"]),
            lambda c: int4_row(x, packed, scale_and_zero, c["block_n"], c["groups"], c["warps"]),
            f"no --int4_blocks and --int4_groups fit the {n}x{k} layer: blocks must divide {n}, groups of 128 {k}")
        del tinygemm, packed, scale_and_zero

        int8 = linear(weight, Int8WeightOnlyConfig())
        compiled = torch.compile(int8)
        here["torchao_int8_compiled"] = time_us(lambda: compiled(row))
        expected = compiled(row)[0].float()
        qdata, scale = int8.weight.qdata, int8.weight.scale.reshape(-1)
        here["triton_int8"] = fastest(
            time_us, expected,
            {"block_n": sweep["INT8_BLOCKS"], "block_k": sweep["INT8_COLUMNS"], "warps": sweep["WARPS"]},
            lambda c: not (k % c["block_k"] or n % c["block_n"]),
            lambda c: int8_row(x, qdata, scale, c["block_n"], c["block_k"], c["warps"]),
            f"no --int8_blocks and --int8_columns fit the {n}x{k} layer: blocks must divide {n}, columns {k}")
        del int8, compiled, qdata, scale
        torch._dynamo.reset()
        runs.write_json(Path(OUT), results)
        print(f"{n}x{k}", here, flush=True)

    def per_token(key):
        return round(layers * sum(v[key]["us"] if isinstance(v[key], dict) else v[key]
                                  for v in results["layers"].values()) / 1000, 3)
    results["ms_per_token_products"] = {key: per_token(key) for key in
                                        ("bf16", "tinygemm", "triton_int4", "torchao_int8_compiled", "triton_int8")}
    runs.write_json(Path(OUT), results)
    print(results["ms_per_token_products"])


if __name__ == "__main__":
    sys.exit(cli.run(main))
