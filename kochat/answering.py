"""Opening a run to answer from (chat_ko.py, serve_ko.py, eval_ko.py, finetune_ko.py's demo after FSDP, the tests and
bench): the weights as trained or exported, on the kernels that answer fastest the way it will be asked, refused in
one line before loading where they would not fit the machine.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import torch

from .errors import UserError
from .runs import Run, open_run

log = logging.getLogger(__name__)


class Loaded(NamedTuple):
    run: Run
    tokenizer: object
    model: object


def load_for_answering(folder: str | Run, four_bit: bool | None = None, device_map="auto",
                       kernels: str = "batches", serving: tuple[int, int] = (16, 512)) -> Loaded:
    """(run, tokenizer, model) to answer with, from a run folder of finetune_ko.py or a merged model folder: the
    folder's own tokenizer and template, the adapter on its base, in eval mode; a folder export_ko.py quantized
    (int8, int4) as it was saved (its output head in the dtype of the rest), on a GPU moved onto the kernels
    installed that answer the way it will be asked (`kernels`, onto_kernels: one_row, batches, both or export;
    `serving`: the rows and tokens of a batch whose cache "both" leaves room for); 16-bit weights on a GPU asked
    one_row or both, q/k/v and gate/up fused and each product of one row moved onto kochat's bf16 kernel
    (kochat/row16_kernel.py: the model is then for answering, its state_dict() names the stacked weights). `four_bit`
    True: the base in 4-bit NF4; False: in compute_dtype() (bf16 on a GPU, float32 on a CPU); None (auto): a run
    folder's base in 4-bit NF4, as trained, and a merged folder unquantized where it fits (sixteen_bits_fit). A
    real-size model on a machine without a GPU is refused before it loads, as is an export whose weights do not fit
    the free memory of the GPUs `device_map` puts them on (check_export_fits). chat_ko.py, serve_ko.py, the tests
    and bench all open a run this way."""
    from . import modeling

    if kernels not in KERNELS:
        raise ValueError(f"kernels is one of {', '.join(KERNELS)}, not {kernels!r}")
    run = folder if isinstance(folder, Run) else open_run(folder)
    config = run.config
    modeling.check_machine_can_run(config, answering=True)
    if modeling.saved_quantization(config):  # an int8/int4 export (export_ko.py): loaded as it was saved
        four_bit = False
        if "Int4" in str(config.quantization_config) and not torch.cuda.is_available():
            raise UserError(f"{run.folder} holds int4 weights, which run on an NVIDIA GPU only: answer from it there, "
                            f"or export the run again with --format=int8 (GPU or CPU) or --format=gguf")
        check_export_fits(run, config, device_map)
    elif four_bit is None:
        four_bit = run.adapter is not None or not sixteen_bits_fit(run, config)
    model = modeling.load_model(run.base_model, run.tokenizer, four_bit=four_bit, adapter=run.adapter,
                                device_map=device_map, option="BASE").eval()
    if modeling.saved_quantization(config):
        match_output_head(model)
        for problem in onto_kernels(model, kernels, serving):
            log.warning(problem)
    elif not four_bit and kernels in ("one_row", "both"):  # 16-bit weights: one row on kochat's bf16 kernel
        from . import row16_kernel
        problem = row16_kernel.onto_row16(model)
        if problem:
            log.warning(problem)
    return Loaded(run, run.tokenizer, model)


KERNELS = ("one_row", "batches", "both", "export")


def onto_kernels(model, kernels: str, serving: tuple[int, int]) -> list[str]:
    """An int4/int8 export's layers (as loaded) moved onto the fastest kernels installed for how it will answer,
    in place; the lines that say what stayed where ([] where all went as asked, or nothing applies: no GPU):
    - one_row (chat_ko.py, one answer at a time): one row onto the dp4a kernel (kochat/dp4a_kernel.py), the weights
      held once (a prompt's rows multiply them written out in bf16, a layer at a time); what it does not take onto
      humming's kernel;
    - batches (eval_ko.py): onto humming's kernel (kochat/humming_kernel.py: fast for one row and for batches);
    - both (serve_ko.py): one row on the dp4a kernel and batches on humming's, the weights held twice, where both are
      installed and every GPU also has room for a `serving` batch's cache; else as batches;
    - export: the export's own kernels (tinygemm, torchao's int8)."""
    from . import batch_kernels, dp4a_kernel, humming_kernel

    problems = []
    if kernels == "both" and not (humming_kernel.installed() and dp4a_kernel.installed()):
        kernels = "batches"  # no second kernel to hold beside the first (without humming, serve_ko.py's batch
        #                      kernels take the export's layers: kochat/batch_kernels.py)
    if kernels == "both":
        layers = [module for module in model.modules() if dp4a_kernel.movable(module)]
        short = layers and batch_kernels.what_both_lacks(model, layers, serving, dp4a_kernel.weight_format(layers[0]))
        if short:
            problems.append(f"one row at a time on humming's kernel too: the dp4a kernel's copy of the weights beside "
                            f"it {short}")
            kernels = "batches"
    if kernels in ("one_row", "both"):
        problems.append(dp4a_kernel.onto_dp4a(model, keep=kernels == "both"))
    if kernels != "export":  # and what dp4a did not take (a layer too wide, a failed move) for one row too
        problems.append(humming_kernel.onto_humming(model))
    return [problem for problem in problems if problem]


def match_output_head(model) -> None:
    """The output head in the dtype of the layers before it. transformers 5.17 loaded the tiny run's float32 int8
    export on a GPU with its head still in float32 when asked for bf16 (the rest in bf16), and the last product
    stopped at the mismatch. (Loading the whole export in its saved dtype would not do: torchao's int8 multiplies by
    the int8 levels before their scale, which overflows float16.)"""
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and embeddings is not None and head.weight.dtype != embeddings.weight.dtype:
        head.to(embeddings.weight.dtype)


def check_export_fits(run: Run, config, device_map="auto") -> None:
    """An int8/int4 export's weights against the free memory of the GPUs `device_map` loads them on ("auto": every
    GPU; a dict: the GPUs it names), before they load: transformers would put what does not fit in 90 % of it on
    the CPU, where torchao's quantized weights answer slowly or fail partway. One line that says what to do instead.
    (The key/value cache is not counted: fast mode keeps it in 8 bits where 16 do not fit, kochat/kv_cache.py.)"""
    from . import kv_cache

    cards, free = gpus_free(device_map)
    if not cards:  # no GPU, or placed on the CPU by the caller
        return
    weights = sum(path.stat().st_size for path in Path(run.base_model).glob("*.safetensors"))
    need = weights / 0.9 + kv_cache.HEADROOM_GIB * 2**30 * len(cards)
    if need > free:
        smaller = ("export the run again with --format=int4 (about half the size), " if "Int8" in
                   str(config.quantization_config) else "")
        raise UserError(f"{run.folder}'s weights take {weights / 2**30:.1f} GiB and want ~{need / 2**30:.1f} GiB free "
                        f"on the GPU; {'it has' if len(cards) == 1 else f'the {len(cards)} GPUs have'} "
                        f"{free / 2**30:.1f} GiB: free the GPU, answer on a larger one, {smaller}or export "
                        f"--format=gguf for llama.cpp")


def gpus_free(device_map="auto") -> tuple[list[int], float]:
    """The GPUs a model loaded with `device_map` goes on ("auto": every one; a dict: those it names, 0 or "cuda:0")
    and the memory free on them for it (kv_cache.free_bytes); ([], 0) without a GPU."""
    from . import kv_cache

    if not torch.cuda.is_available():
        return [], 0.0
    cards = (list(range(torch.cuda.device_count())) if device_map == "auto" else
             sorted({place if isinstance(place, int) else torch.device(place).index or 0
                     for place in device_map.values() if isinstance(place, int) or str(place).startswith("cuda")}))
    return cards, sum(kv_cache.free_bytes(torch.device("cuda", i)) for i in cards)


def sixteen_bits_fit(run: Run, config) -> bool:
    """Whether a merged folder's weights in 16 bits fit the GPUs' free memory as transformers places them
    (device_map="auto" fills 90 % of each GPU's free memory; what does not fit would go to the CPU, slower than
    4-bit), with room beside them for one longest answer's key/value cache and static_cache's headroom. Always on
    a CPU, where they load in float32 (compute_dtype). Where they do not fit, one line says so and the folder
    answers in 4-bit NF4."""
    from . import kv_cache, modeling

    cards, free = gpus_free()
    if not cards:
        return True
    longest = modeling.context_length(config)
    need = modeling.parameter_count(config) * 2 / 0.9 + kv_cache.room_for(config, 1, longest, 2)
    if need <= free:
        return True
    log.warning("%s in 16 bits wants %.1f GiB free and %s %.1f GiB: answering in 4-bit NF4, slower (export_ko.py "
                "--format=int4 or int8 makes a faster model that fits)", run.folder, need / 2**30,
                "the GPU has" if len(cards) == 1 else f"the {len(cards)} GPUs have", free / 2**30)
    return False
