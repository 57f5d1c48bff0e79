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
its products at ~3.4 TB/s, humming's read at 2.8-3.0). The kernels, and why a weight costs them about one instruction
where the Triton kernels of bench/row_kernels.py spent four, are kochat/dp4a_kernel.py's (measured here first; its
SETTINGS come from this bench's sweep). The row's rounding is the price (`relative_error`: against the float product
of the same quantized weights and the unrounded row). Rounding the row is a few elementwise ops, which a compiled
decoding step fuses into the layer norm or GELU before each product: timed here apart and eager (`quantize_us`).
Through gen(): bench.quant_kernels --kernels=dp4a4,dp4a8 (any setting or sweep: --dp4a), or --kernels=saved on an
export as chat_ko.py loads it. bf16_gemv, the same kind of kernel for 16-bit weights, is timed beside cuBLAS
(--kernels=gemv16 through gen()). Random weights: speed and rounding only. The JSON is rewritten after each layer
size.
"""
import json
import math
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from bench import humming_products
from bench.row_kernels import SHAPES
from kochat import cli, dp4a_kernel, humming_kernel, row16_kernel, runs
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


class Kernels(row16_kernel.Kernels):
    """kochat's w4a8_gemv, w8a8_gemv and bf16_gemv (kochat/row16_kernel.py), compiled with one setting."""

    def __init__(self, rows: int, warps: int, unroll: int):
        try:
            super().__init__(rows, warps, unroll, dp4a_kernel.SOURCE + row16_kernel.KERNEL)
        except RuntimeError as e:  # NVRTC's log or a failed call
            raise UserError(str(e)[:2000]) from None


def quantize_int4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[N, K] weights as (packed [N, K/8] int32, group [N, K/128] int32: bf16 scale and zero, the weights as the
    kernel sees them [N, K] float32): levels 0..15 over each group's range, in tinygemm's scheme."""
    n, k = weight.shape
    groups = weight.float().view(n, k // dp4a_kernel.GROUP, dp4a_kernel.GROUP)
    low, high = groups.amin(-1), groups.amax(-1)
    scale = ((high - low) / 15).clamp(min=1e-8).to(torch.bfloat16).float()
    zero = (low + 8 * scale).to(torch.bfloat16).float()  # level 0 at the group's smallest weight
    q = torch.round((groups - zero[..., None]) / scale[..., None] + 8).clamp(0, 15)
    held = ((q - 8) * scale[..., None] + zero[..., None]).view(n, k)
    return dp4a_kernel.pack_levels(q.view(n, k)), dp4a_kernel.pack_groups(scale, zero), held


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[N, K] weights as (levels [N, K] int8, -127..127; row_scale [N] float32; the weights as the kernel sees them)."""
    scale = weight.float().abs().amax(-1).clamp(min=1e-8) / 127
    q = torch.round(weight.float() / scale[:, None]).clamp(-127, 127)
    return q.to(torch.int8).contiguous(), scale.contiguous(), q * scale[:, None]


# ---- gen() with one row a step through these kernels (bench.quant_kernels --kernels=dp4a4,dp4a8,gemv16) -----
def onto_dp4a(model, setting: str, bf16: bool = False) -> int:
    """Move every int4 (tinygemm) and weight-only int8 (torchao) linear layer of `model` onto kochat's dp4a kernel
    for one row, the export's layer kept for batches (kochat.dp4a_kernel.onto_dp4a with keep), or with `bf16`
    every bf16 product onto kochat's bf16_gemv (kochat.row16_kernel.onto_row16: q/k/v and gate/up fused first, the
    output head too), with the kernels compiled for `setting`: "rows per warp,warps,unroll" for every layer, or a
    bench.dp4a_rows JSON whose best setting for each layer size is taken; how many moved."""
    kernels_for = chooser(setting)
    if bf16:
        problem = row16_kernel.onto_row16(model, kernels=lambda n, k: kernels_for("gemv16", n, k))
        if problem:
            raise UserError(problem)
        return row16_kernel.on_row16(model)
    problem = dp4a_kernel.onto_dp4a(model, keep=True, kernels=kernels_for)
    if problem:
        raise UserError(problem)
    return dp4a_kernel.on_dp4a(model)


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
        act, act_scale = dp4a_kernel.quantize_row(x)
        packed, group, held4 = quantize_int4(weight)
        levels, row_scale, held8 = quantize_int8(weight)
        exact4, exact8 = held4 @ x.float(), held8 @ x.float()  # the same weights, the row unrounded, in float32
        del held4, held8
        int4_bytes, int8_bytes = n * k * (0.5 + 4 / dp4a_kernel.GROUP), n * k  # the levels, and int4's scale pairs
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
            config = Int4WeightOnlyConfig(group_size=dp4a_kernel.GROUP, int4_packing_format="tile_packed_to_4d",
                                          set_inductor_config=False)
            quantize_(tinygemm, config)
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
                    quantize_us=time_us([lambda: dp4a_kernel.quantize_row(x)]))
        for name in us:
            per_token[name] = per_token.get(name, 0.0) + us[name] * layers / 1e3
        print(f"{n}x{k}: best {best}, {here['weights_tb_s']} TB/s; us {us}", flush=True)
        runs.write_json(Path(OUT), results)
    results["ms_a_token"] = {name: round(ms, 2) for name, ms in sorted(per_token.items(), key=lambda item: item[1])}
    runs.write_json(Path(OUT), results)  # the layers' products alone (not the output head)
    print(results["ms_a_token"])


if __name__ == "__main__":
    sys.exit(cli.run(main))
