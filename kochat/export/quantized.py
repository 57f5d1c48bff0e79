"""The `int8` and `int4` exports: a merged 16-bit model quantized weight-only with torchao (BSD-3-Clause), saved
as a plain transformers folder that records its quantization in config.json, so chat_ko.py, serve_ko.py (and
transformers) load it as it is, and gen()'s fast mode compiles its kernels into the decoding graph.

int8: one byte a weight, a scale per output row; runs on a GPU or a CPU. int4: half a byte a weight, a scale per
128 weights, in the layout of the tinygemm CUDA kernel (`tile_packed_to_4d`): made and run on an NVIDIA GPU.
transformers quantizes the weights as they load; the GPU's peak while doing it was measured at the 12.8b shape
(bench/RESULTS.md): 13.1 GiB for int4, 24.1 GiB for int8, so an int8 export of that size wants a GPU larger
than 24 GB (or a CPU, slowly).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from . import chat_template

FORMATS = ("int8", "int4")
BYTES_PER_WEIGHT = {"int8": 1.0, "int4": 0.55}  # on disk, scales included (12.8b shape: 12.3 and 6.8 GiB)
# The GPU's peak while transformers quantizes as it loads, a weight: measured at the 12.8b shape (12.9e9
# parameters), 24.1 GiB for int8 and 13.1 GiB for int4 (bench/RESULTS.md): 2.01 and 1.09 bytes, rounded
PEAK_GPU_BYTES_PER_WEIGHT = {"int8": 2.05, "int4": 1.1}
TORCHAO_PACKAGE = "torchao==0.18.0"


def torchao_config(fmt: str):
    """The torchao configuration of a format (one line if torchao is missing or the machine cannot make it)."""
    try:
        from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig
    except ImportError:
        raise UserError(f"--format={fmt} needs torchao: pip install {TORCHAO_PACKAGE}") from None
    # set_inductor_config=False: torchao would turn on its inductor settings for the whole process that quantizes,
    # which compiles nothing; gen() turns them on where they help (one row of int8 weights, kochat/row_sums.py) as a
    # process that loads the export does. Left on, a batch of 16 compiled for minutes in the process that exported
    if fmt == "int8":
        return Int8WeightOnlyConfig(set_inductor_config=False)
    if not torch.cuda.is_available():
        raise UserError("--format=int4 is made and run by a CUDA kernel and this machine has no NVIDIA GPU: export "
                        "--format=int8 (GPU or CPU) or --format=gguf (q4_k_m, for llama.cpp on a CPU) instead")
    return Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d", set_inductor_config=False)


def check_gpu_memory(fmt: str, params: int) -> None:
    """One line before the long merge where the GPU that will quantize has too little free memory for `fmt`
    (int8 without a GPU is made in CPU memory)."""
    if not torch.cuda.is_available():
        return
    need, free = params * PEAK_GPU_BYTES_PER_WEIGHT[fmt], torch.cuda.mem_get_info()[0]
    if free < need:
        other = ("--format=int4 (about half), int8 in CPU memory (CUDA_VISIBLE_DEVICES= python3 export_ko.py …), "
                 if fmt == "int8" else "")
        raise UserError(f"quantizing to {fmt} takes ~{need / 2**30:.1f} GiB of GPU memory here, {free / 2**30:.1f} GiB "
                        f"is free: free the GPU, export on a larger one, or choose {other}--format=gguf (CPU)")


def write_quantized(merged_folder: Path, out: Path, fmt: str) -> Path:
    """`merged_folder` (16-bit, with tokenizer and template) quantized into `out`, with the same tokenizer and
    template files. The embeddings and output head stay 16-bit, as torchao leaves them by default."""
    from transformers import AutoModelForCausalLM, TorchAoConfig

    from .. import modeling, runs

    config = torchao_config(fmt)
    tokenizer = modeling.load_tokenizer(str(merged_folder))
    dtype = (torch.bfloat16 if fmt == "int4"  # tinygemm computes in bf16 only
             else modeling.saved_dtype(modeling.load_config(str(merged_folder))))  # the merged copy's own
    model = AutoModelForCausalLM.from_pretrained(merged_folder, dtype=dtype, trust_remote_code=False,
                                                 device_map="cuda" if torch.cuda.is_available() else "cpu",
                                                 quantization_config=TorchAoConfig(config))
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id, cfg.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    model.save_pretrained(out)
    runs.weights_readable(out)
    tokenizer.save_pretrained(out)
    for name in ("template.json", "chat_template.jinja", chat_template.FILE):
        if (merged_folder / name).is_file():
            (out / name).write_bytes((merged_folder / name).read_bytes())
    return out

