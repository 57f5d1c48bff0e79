"""Weight-only kernels for the int4 and int8 exports, compared at a real shape on one GPU: the 16-bit model loaded
as answering loads it, its linear layers (not the embeddings and output head, as the exports) quantized in memory
by torchao with each candidate kernel, answered by gen()'s fast mode at batch 1 and 16 (256 new tokens each).
From the repository root:

    python3 -m bench.quant_kernels --model=/tmp/random-polyglot-ko-12.8b --data=KOALPACA_1K.jsonl --out=RESULT.json

Kernels (--kernels, by name): tinygemm (torchao's int4, the export's kernel today), gemlite4 and gemlite8 (the
Triton kernels of gemlite, Apache-2.0, through torchao's prototype UIntxWeightOnlyConfig: gemlite==0.5.1.post1, the
release whose API torchao 0.18 calls; gemlite4 runs its model in fp16), int8 (torchao's int8 weight-only, the
export's; torchao turns on its inductor settings for the process where it quantizes, and gen() where it compiles int8
weights, kochat/row_sums.py), int8dyn (int8 weights and int8 activations, torch._int_mm), mslk4 (torchao's int4 in the
`preshuffled` layout of Meta's mslk CUTLASS kernels for Hopper GPUs: needs the mslk-cuda wheel built for the GPU's torch),
mslk4fp8 (the same int4 weights with activations in float8), mslk4plain (torchao's `plain` int4 layout, mslk's
row-wise CUTLASS kernel), fp8 (float8 weights and activations, a scale per row, torch._scaled_mm: Hopper and
Ada GPUs), fp8wo (float8 weights only), humming (tinygemm's int4, then moved onto humming's kernel as an int4
export is where humming-kernels is installed: kochat/humming_kernel.py), dp4a4 and dp4a8 (tinygemm's int4 or
torchao's int8, one row a step then multiplied by kochat/dp4a_kernel.py's kernels in the setting or sweep --dp4a
names, the row rounded to int8; batches on the quantized layers as they were, the int4 weights held twice), bf16
(no quantization: the merged 16-bit model, on cuBLAS), gemv16 (bf16, one row a step through kochat/row16_kernel.py's
bf16_gemv in the setting or sweep --dp4a names instead of cuBLAS, the head too; q/k/v and gate/up fused first),
saved (--model is an export_ko.py int8/int4 folder or a 16-bit one, loaded onto the kernels --load names: one_row as
chat_ko.py loads it, batches as eval_ko.py, both as serve_ko.py, export its own; a 16-bit folder asked one_row or
both: one row on kochat's bf16 kernel in its own settings; nothing quantized here, nothing set for the process).
--compile picks how the decode step is compiled: reduce-overhead (transformers' default: CUDA graphs), tuned (CUDA
graphs and inductor's coordinate-descent tuning of its kernels' block sizes, as gpt-fast compiles), torchao (CUDA
graphs, and torchao's recommended inductor settings set for the whole process, as its int8 and int4 configurations
set them where they quantize: the tuning in all directions among them), max-autotune (also autotuned matmul
templates; a long compile). --profile=true records the GPU kernels that took
the most time in one more batch-1 run (same length: the compiled graphs replay). --cache_8bit=true answers with
the 8-bit key/value cache (kochat/kv_cache.py). --fuse=false multiplies q/k/v and gate/up apart, as gen() did before
kochat/fused_projections.py; --apart=false inlines the MLP's GELU into one-row sums wherever the tuning is on (`tuned`,
or int8's own for the process), as before kochat/row_sums.py; --flash=false attends a batch's pooled cache as one
masked product over the whole pool, as before FlashAttention's kernel; --one_row_kernel=false attends one row's
static cache through sdpa (cuDNN on an H200), as before kochat/one_row_attention.py's kernel; --pdl=false compiles
without programmatic dependent launch, as gen() did before generation.launch_options; --overlap=true launches
kochat's own one-row kernels (bf16_gemv, the dp4a kernels, one row's attention) with it too, each waiting for the
kernel before it (dp4a_kernel.LAUNCH_SOURCE; bf16_gemv's weights on their way to L2 meanwhile). Random weights: speed
and memory only. The JSON is rewritten after each measurement.
"""
import gc
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from bench import dp4a_rows
from bench.speed import attempt, gen_speed
from kochat import (answering, cli, decode_attention, dp4a_kernel, estimate, generation, humming_kernel,
                    one_row_attention, runs)
from kochat.errors import UserError
from kochat.prompts import Template
from kochat.records import read_records

# ---- constants: override on the command line as --name=value ------------------------------------------
MODEL = ""                  # a 16-bit model folder of a real shape; required
DATA = ""                   # KoAlpaca-v1.1a rows (.jsonl), for real questions; required
OUT = ""                    # the result JSON; required
KERNELS = ["gemlite4", "gemlite8"]  # which kernels to measure, in order
BATCHES = "1,16"            # rows answered at once, comma-separated (one again: measured again)
COMPILE = "reduce-overhead"  # reduce-overhead, tuned, torchao or max-autotune (see above)
PROFILE = False             # profile one more batch-1 run: the GPU kernels that took the most time
CACHE_8BIT = "auto"         # gen()'s key/value cache in 8 bits: auto (where 16 bits would not fit), true, false
FUSE = True                 # gen()'s fused q/k/v and gate/up products (kochat/fused_projections.py); false: apart
APART = True                # where one-row products are sums, GELU out of them (kochat/row_sums.py)
DP4A = "1,8,2"              # dp4a4, dp4a8, gemv16: the kernels' rows per warp, warps a block and loads in flight,
                            # or a bench.dp4a_rows JSON of the shape: its best for each layer size
ONE_ROW_KERNEL = True       # one row's static cache attended by kochat/one_row_attention.py's kernel; false: sdpa
PDL = True                  # programmatic dependent launch where gen() compiles with it (generation.launch_options)
OVERLAP = False             # kochat's one-row kernels launched so too, each waiting for the one before (dp4a_kernel)
FLASH = True                # a batch's pooled cache attended by FlashAttention where it runs; false: one masked
                            # product over the whole pool (kochat/decode_attention.py)
LOAD = "one_row"            # saved: where an int4/int8 export's layers go as it loads (answering.onto_kernels): one_row
                            # as chat_ko.py (dp4a for one row), batches as eval_ko.py (humming's), both as
                            # serve_ko.py, export (its own kernels: tinygemm, torchao's int8); a 16-bit folder's:
                            # one row on kochat's bf16 kernel for one_row and both

COMPILE_OPTIONS = {"reduce-overhead": {"triton.cudagraphs": True},
                   "tuned": {"triton.cudagraphs": True, "coordinate_descent_tuning": True},
                   "torchao": {"triton.cudagraphs": True},  # and torchao's settings for the process (main)
                   "max-autotune": {"triton.cudagraphs": True, "coordinate_descent_tuning": True, "max_autotune": True}}


def torchao_config(kernel: str):
    from torchao.quantization import (Float8DynamicActivationFloat8WeightConfig,
                                      Float8DynamicActivationInt4WeightConfig, Float8WeightOnlyConfig,
                                      Int4WeightOnlyConfig,
                                      Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, PerRow)
    if kernel in ("bf16", "saved", "gemv16"):
        return None
    if kernel.startswith("gemlite"):
        from torchao.prototype.quantization.quant_api import UIntxWeightOnlyConfig
        bits = int(kernel.removeprefix("gemlite"))
        return UIntxWeightOnlyConfig(bit_width=bits, group_size=128 if bits == 4 else None)
    tinygemm = Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d")
    return {"tinygemm": lambda: tinygemm, "humming": lambda: tinygemm, "dp4a4": lambda: tinygemm,
            "dp4a8": lambda: Int8WeightOnlyConfig(set_inductor_config=False),
            "mslk4": lambda: Int4WeightOnlyConfig(group_size=128, int4_packing_format="preshuffled"),
            "mslk4fp8": lambda: Float8DynamicActivationInt4WeightConfig(int4_packing_format="preshuffled"),
            "mslk4plain": lambda: Int4WeightOnlyConfig(group_size=128, int4_packing_format="plain"),
            "fp8": lambda: Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
            "fp8wo": Float8WeightOnlyConfig,
            "int8": Int8WeightOnlyConfig,
            "int8dyn": Int8DynamicActivationInt8WeightConfig}[kernel]()


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "MODEL", "DATA", "OUT")
    if not torch.cuda.is_available():
        raise UserError("this bench measures CUDA kernels and this machine has no NVIDIA GPU")
    if LOAD not in answering.KERNELS:
        raise UserError(f"--load={LOAD}: one of {', '.join(answering.KERNELS)}")
    if COMPILE not in COMPILE_OPTIONS:
        raise UserError(f"--compile={COMPILE}: one of {', '.join(COMPILE_OPTIONS)}")
    cache_8bit = cli.auto_or_bool("CACHE_8BIT", CACHE_8BIT)
    if not FUSE:  # gen() as it answered before kochat/fused_projections.py, for the comparison
        generation.fuse_projections = lambda model: 0
    if not FLASH:  # every row's query against the whole pool, as gen() attended a pool before
        decode_attention.flash_runs = lambda query: False
    dp4a_kernel.OVERLAP = OVERLAP  # before any of kochat's kernels compiles
    if not ONE_ROW_KERNEL:  # one row's new token through sdpa, as gen() attended it before
        one_row_attention.takes = lambda *args: False
    if not APART:  # the activation inlined into the sums, as gen() compiled before kochat/row_sums.py
        generation.row_sums.keep_apart = lambda model: 0
    from torchao.quantization import quantize_
    from transformers import CompileConfig
    if COMPILE == "torchao":
        from torchao.quantization.utils import recommended_inductor_config_setter
        recommended_inductor_config_setter()

    results = {"device": torch.cuda.get_device_name(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "versions": runs.versions(), "model": MODEL,
               "command": " ".join(["python3 -m bench.quant_kernels", *argv])}
    model_dir = Path(MODEL)
    if not (model_dir / runs.TEMPLATE_FILE).exists():  # a bare model folder: answered in the KoAlpaca form
        runs.write_json(model_dir / runs.TEMPLATE_FILE, Template.load("koalpaca").to_dict())
    batches = [int(b) for b in BATCHES.split(",")]
    rows = list(read_records(DATA))
    questions = [r.get("instruction") or r["text"].split("### 답변:")[0] for r in rows[:max(batches)]]

    def save():
        runs.write_json(Path(OUT), results)

    head = {"embed_in", "embed_out", "embed_tokens", "lm_head"}
    for kernel in KERNELS:
        torch.cuda.empty_cache()
        run, tokenizer, model = answering.load_for_answering(str(model_dir), four_bit=False,
                                                             kernels=LOAD if kernel == "saved" else "export")
        if kernel != "saved":  # gemlite's 4-bit weights take the dtype of HQQ's fp16 scales, its kernel its input's
            model = model.to(torch.float16 if kernel == "gemlite4" else torch.bfloat16)
        launch = generation.launch_options(model.device) if PDL else {}  # as gen() compiles its step
        options = {**COMPILE_OPTIONS[COMPILE], **launch}
        model.generation_config.compile_config = CompileConfig(mode=None, options=options)

        def quantize():
            if torchao_config(kernel) is not None:
                quantize_(model, torchao_config(kernel),
                          filter_fn=lambda m, name: isinstance(m, torch.nn.Linear) and name.split(".")[-1] not in head)
            if kernel == "humming" and (problem := humming_kernel.onto_humming(model) or
                                        ("" if humming_kernel.on_humming(model) else "humming is not installed")):
                raise UserError(problem)
            if kernel.startswith("dp4a") or kernel == "gemv16":  # one row a step through kochat's one-row
                if not dp4a_rows.onto_dp4a(model, DP4A, bf16=kernel == "gemv16"):  # kernels, batches as they were
                    raise UserError(f"{kernel}: no layer to move onto kochat's one-row kernels")
            torch.cuda.empty_cache()
            return {"weights_gib": round(torch.cuda.memory_allocated() / estimate.GIB, 2),
                    "answering": generation.mode_line(model, fast=True)}
        attempt(results, f"{kernel} quantize", quantize)
        save()
        if "error" in results[f"{kernel} quantize"]:
            continue
        for i, batch in enumerate(batches):
            torch.cuda.empty_cache()

            def measure():
                figures = gen_speed(model, tokenizer, run.template, questions[:batch], name=f"{kernel} fast",
                                    fast=True, repeats=1, cache_8bit=cache_8bit)
                return {**figures, "cache_8bit": CACHE_8BIT}
            label = f"{kernel} fast, batch {batch}"  # --batches=1,1: the same batch again, kept apart
            attempt(results, label + (f", run {batches[:i + 1].count(batch)}" if batches.count(batch) > 1 else ""),
                    measure)
            save()
            if batch == 1 and PROFILE:
                attempt(results, f"{kernel} profile, batch 1",
                        lambda: profile(model, tokenizer, run.template, questions[0], cache_8bit))
                save()
        model = None  # freed before the next kernel's copy loads
        torch._dynamo.reset()
        gc.collect()  # the compiled forward and the model refer to each other


def profile(model, tokenizer, template, question, cache_8bit, steps: int = 256, top: int = 30) -> dict:
    """The GPU kernels that took the most time in one answer of `steps` tokens, as gen_speed measured (the same
    cache length: its graphs replay, nothing compiles), each with its share of the GPU time and its microseconds
    a step (the prefill is counted in: one forward of the prompt)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from kochat.generation import gen
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        wall = gen(model, tokenizer, template, question, max_new_tokens=steps, min_new_tokens=steps,
                   fast=True, cache_8bit=cache_8bit)[0].seconds * 1e6
    kernels = [e for e in prof.key_averages() if e.device_type.name == "CUDA" and e.self_device_time_total > 0]
    total = sum(e.self_device_time_total for e in kernels)
    kernels.sort(key=lambda e: e.self_device_time_total, reverse=True)
    return {"steps": steps, "gpu_us_per_step": round(total / steps, 1), "wall_us_per_step": round(wall / steps, 1),
            "top": [{"kernel": e.key[:120], "share": round(e.self_device_time_total / total, 3),
                     "us_per_step": round(e.self_device_time_total / steps, 1), "calls_per_step": e.count / steps}
                    for e in kernels[:top]]}


if __name__ == "__main__":
    sys.exit(cli.run(main))
