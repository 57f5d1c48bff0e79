"""humming's int4 kernel (humming-kernels, Apache-2.0: vLLM's quantized-GEMM library, compiled at run time by
NVRTC) against the int4 export's tinygemm and 16-bit cuBLAS, and humming's int8 (a scale per row, as the int8
export; --int8=false leaves it out), for each product of one layer at a real shape's sizes, with 1 and 16 rows:
microseconds a call (a CUDA graph of 50 calls), the rate the weights are read at, and each result's distance from
the 16-bit product. The int4 kernels quantize the same weights to 4 bits with a scale and a zero per 128 weights of
a row, each with its own rounding: humming in kochat/humming_kernel.py's scheme (a float zero; --zero=int: an
integer one, as the first measurement of 2026-12-01; --zero=none: no zero, symmetric int4, which humming holds in
another code and dequantizes another way: a hint, not a measure, of what the zero's arithmetic costs). From the
repository root, with
`pip install humming-kernels==0.1.20 cuda-bindings==13.0.3`:

    python3 -m bench.humming_products --shape=polyglot-ko-12.8b --out=RESULT.json
    python3 -m bench.humming_products --configs=bench/humming_configs.json --int8=false --out=RESULT.json

--configs times humming's int4 also with kernel configurations of one's own: humming picks one per number of rows
by its heuristics (recorded as `config`); each entry of the file changes some of its fields (humming's
TuningConfig: stages, CTAs per SM, block shapes, stream-K, PDL...) and is timed beside it, or records why it did not
compile or run (a configuration that leaves the GPU in an error state ends the run, in one line, after the
layer sizes done are written). PDL between back-to-back calls of the same kernel overlaps more than it would
between a model's different kernels. Random weights: speed only. The JSON is rewritten after each layer size.
"""
import dataclasses
import json
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import torch

from bench.row_kernels import SHAPES
from kochat import cli, humming_kernel, runs
from kochat.errors import UserError

# ---- constants: override on the command line as --name=value ------------------------------------------
SHAPE = "polyglot-ko-12.8b"  # polyglot-ko-12.8b or qwen3-8b: which layer sizes
OUT = ""                     # the result JSON; required
ROWS = "1,16"                # rows a product multiplies, comma-separated
CALLS = 50                   # calls in the timed CUDA graph
ZERO = "float"               # humming's zero per group: float (as kochat/humming_kernel.py moves exports), int, none
INT8 = True                  # also humming's int8 (a scale per row, as the int8 export): a candidate for int8's target
CONFIGS = ""                 # a JSON file {name: {TuningConfig fields}}: humming's int4 also timed with its heuristic
                             # choice changed by each; "" = its own choice only
ZEROS = {"float": {"has_zero_point": True, "is_fp_zero_point": True},
         "int": {"has_zero_point": True, "is_fp_zero_point": False},
         "none": {"dtype": "int4", "has_zero_point": False, "is_fp_zero_point": False}}


def time_us(calls, count: int = 0) -> float:
    """Microseconds a call, from one replay of a CUDA graph of `count` (CALLS where 0) calls of `calls`: one
    callable, or a list of them taken in turn (bench.dp4a_rows: each over its own copy of a layer's weights);
    warmed up on a side stream."""
    calls, count = (calls if isinstance(calls, list) else [calls]), count or CALLS
    calls[0]()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for call in calls:
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(count):
            calls[i % len(calls)]()
    graph.replay()
    torch.cuda.synchronize()
    start = time.perf_counter()
    graph.replay()
    torch.cuda.synchronize()
    return round((time.perf_counter() - start) / count * 1e6, 1)


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "OUT")
    if SHAPE not in SHAPES:
        raise UserError(f"--shape={SHAPE}: one of {', '.join(SHAPES)}")
    if ZERO not in ZEROS:
        raise UserError(f"--zero={ZERO}: one of {', '.join(ZEROS)}")
    configs = read_configs(CONFIGS) if CONFIGS else {}
    if not torch.cuda.is_available():
        raise UserError("this bench measures CUDA kernels and this machine has no NVIDIA GPU")
    from humming.config.config import TuningConfig
    from humming.layer import HummingLayer
    from humming.tune import get_heuristics_config

    fields = {f.name for f in dataclasses.fields(TuningConfig)}
    for name, change in configs.items():  # a misspelt field: one line before anything is timed
        if set(change) - fields:
            raise UserError(f"--configs={CONFIGS}: {name!r} sets {', '.join(sorted(set(change) - fields))}, not "
                            f"fields of humming's TuningConfig ({', '.join(sorted(fields))})")
    from torchao.quantization import Int4WeightOnlyConfig, quantize_

    results = {"device": torch.cuda.get_device_name(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "versions": runs.versions(),
               "shape": SHAPE, "command": " ".join(["python3 -m bench.humming_products", *argv]), "layers": {}}
    torch.manual_seed(0)
    for n, k in SHAPES[SHAPE][0]:
        here = results["layers"][f"{n}x{k}"] = {}
        weight = torch.randn(n, k, dtype=torch.bfloat16, device="cuda") / 50
        humming = HummingLayer(shape_n=n, shape_k=k, torch_dtype=torch.bfloat16,
                               weight_config={**humming_kernel.WEIGHTS, **ZEROS[ZERO]}).cuda()
        humming.load_from_unquantized(weight)
        humming.transform()
        tinygemm = torch.nn.Linear(k, n, bias=False, dtype=torch.bfloat16, device="cuda")
        tinygemm.weight.data.copy_(weight)
        quantize_(tinygemm, Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d",
                                                 set_inductor_config=False))
        int8 = None
        if INT8:
            try:  # a failure here is recorded; the int4 figures are what this bench is for
                int8 = HummingLayer(shape_n=n, shape_k=k, torch_dtype=torch.bfloat16,
                                    weight_config=dict(humming_kernel.INT8_WEIGHTS)).cuda()
                int8.load_from_unquantized(weight)
                int8.transform()
            except Exception as e:
                int8, here["humming_int8_error"] = None, f"{type(e).__name__}: {str(e)[:300]}"
        gigabytes = n * k / 2 / 1e9  # the int4 levels read a call (scales and zeros not counted)
        for rows in (int(r) for r in ROWS.split(",")):
            x = torch.randn(rows, k, dtype=torch.bfloat16, device="cuda")
            exact = x @ weight.t()
            own = get_heuristics_config(humming.humming_config, shape_m=rows)
            # humming's kernel for this many rows, named: its first call without one compiles every range of rows
            # (~90 kernels a layer size) where this compiles one
            kernels = {"humming": partial(humming, tuning_config=own), "tinygemm": tinygemm,
                       **({"humming_int8": partial(int8, tuning_config=get_heuristics_config(
                           int8.humming_config, shape_m=rows))} if int8 else {})}
            us = {name: time_us(lambda f=f: f(x)) for name, f in kernels.items()}
            us["bf16"] = time_us(lambda: x @ weight.t())
            here[f"{rows} rows"] = {
                "us": us,
                "weights_tb_s": {name: round(gigabytes * (2 if name == "humming_int8" else 1) / us[name] * 1e3, 2)
                                 for name in kernels},
                "relative_error": {name: round(float((f(x) - exact).norm() / exact.norm()), 4)
                                   for name, f in kernels.items()},
                "config": json.loads(json.dumps(own, default=str))}  # humming's int4 choice, its enums as text
            if configs:
                timed = here[f"{rows} rows"]["configs"] = {}
                for name, change in configs.items():
                    timed[name] = timed_config(humming, x, exact, {**own, **change})
                    if "gpu_error" in timed[name]:
                        runs.write_json(Path(OUT), results)
                        raise UserError(f"the configuration {name!r} ({n}x{k}, {rows} rows) left the GPU in an error "
                                        f"state ({timed[name]['gpu_error']}): {OUT} holds what was measured before")
        print(f"{n}x{k}: {here}", flush=True)
        runs.write_json(Path(OUT), results)


def read_configs(path: str) -> dict:
    try:
        configs = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"--configs={path}: not a readable JSON file ({e})") from None
    if not isinstance(configs, dict) or not all(isinstance(c, dict) for c in configs.values()):
        raise UserError(f"--configs={path}: a JSON object of named objects of humming's TuningConfig fields, e.g. "
                        '{"three stages": {"num_stages": 3}}')
    return configs


def timed_config(humming, x, exact, config: dict) -> dict:
    """Microseconds a call of humming's int4 product with `config` (its own choice changed), the weights' rate and
    its distance from the 16-bit product; or why it did not compile or run."""
    def product():
        return humming(x, tuning_config=config)
    try:
        product()
        torch.cuda.synchronize()  # a failing kernel is blamed on its own configuration, not the next one
        us = time_us(product)
        return {"us": us, "weights_tb_s": round(x.shape[1] * humming.shape_n / 2 / 1e9 / us * 1e3, 2),
                "relative_error": round(float((product() - exact).norm() / exact.norm()), 4)}
    except Exception as e:  # an illegal or failing configuration is a result too
        error = f"{type(e).__name__}: {str(e)[:300]}"
        try:
            torch.cuda.synchronize()
        except Exception:  # a sticky CUDA error: nothing after it on this GPU can be trusted
            return {"gpu_error": error}
        return {"error": error}


if __name__ == "__main__":
    sys.exit(cli.run(main))
