"""Training on several processes (one a GPU, or CPU processes with gloo), launched by torchrun or accelerate:
the shared state, and what only one of them does.

`torchrun --nproc_per_node=N finetune_ko.py` (or `accelerate launch --num_processes N`) starts N copies of the
script. Each loads the 4-bit base on its own device and trains the same LoRA on its share of the batches; the
Trainer wraps the model in DistributedDataParallel, which all-reduces the LoRA gradients. What belongs to the run
happens once: the main process prints, checks and clears the output folder first, seals checkpoints, and writes
the adapter, card, plot and demo; the others stay quiet and wait.

Two strategies, chosen by the launcher: DDP (torchrun, or `accelerate launch --config_file configs/ddp.yaml`)
gives each GPU a whole 4-bit copy of the base; FSDP (`accelerate launch --config_file configs/fsdp_qlora.yaml`)
shards it across the GPUs, for a model one GPU cannot hold (FSDP-QLoRA: the 4-bit weights stored in the
compute dtype, `bnb_4bit_quant_storage`, so FSDP can shard them like any 16-bit weight).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import TrainerCallback


def start() -> PartialState:
    """The processes' shared state (the process group is set up here when launched for several). Processes other
    than the main one print nothing: one report, not N interleaved copies (errors still reach stderr)."""
    state = PartialState(cpu=not torch.cuda.is_available())  # gloo between CPU processes, NCCL between GPUs
    if not state.is_main_process:
        sys.stdout = open(os.devnull, "w")
    return state


@dataclass(frozen=True)
class Launch:
    processes: int
    strategy: str  # "one process", "ddp" or "fsdp"

    @property
    def fsdp(self) -> bool:
        return self.strategy == "fsdp"


def optimizer(launch: Launch, optim: str) -> str:
    """The optimizer a launch trains with: FSDP-QLoRA cannot checkpoint paged 8-bit Adam's state (peft's FSDP
    guide), so it takes adamw_torch instead (the LoRA's state is small either way)."""
    return "adamw_torch" if launch.fsdp and optim == "paged_adamw_8bit" else optim


def launch() -> Launch:
    """How this script was launched, read from the launcher's environment without starting anything (--dry-run
    uses it too): torchrun and accelerate set WORLD_SIZE; accelerate's FSDP config sets ACCELERATE_USE_FSDP."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true"):
        return Launch(processes, "fsdp")
    return Launch(processes, "ddp" if processes > 1 else "one process")


def is_main() -> bool:
    """Whether this is the main process (rank 0), before any state is made: --dry-run prints once."""
    return os.environ.get("RANK", "0") == "0"


def device_map(state: PartialState):
    """Where each process loads the model: its own GPU when there are several processes, else "auto"."""
    return {"": state.device} if state.num_processes > 1 else "auto"


def from_main(state: PartialState, compute):
    """compute() run by the main process alone, its result handed to the others (one process: just compute())."""
    if state.num_processes == 1:
        return compute()
    from accelerate.utils import broadcast_object_list

    box = [compute() if state.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def largest_across(value: int, device) -> int:
    """The largest of each process's `value` (one process: the value itself)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    tensor = torch.tensor([value], device=device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return int(tensor.item())


FSDP_PREFIX = "_fsdp_wrapped_module."  # FSDP's wrapper puts the module it wraps under this name


def adapter_weights(model) -> dict:
    """The adapter's trained weights under the names PEFT saves them with, from a model whose layers FSDP wrapped.
    peft picks an adapter's weights by matching the model's module names, which carry FSDP's wrapper in the middle
    (…layers.0._fsdp_wrapped_module.attention…): the names go in as they are and lose the wrapper coming out.
    Stripping it first leaves peft nothing to match, and an empty adapter (bench/results/2026-11-29-h200x2-*)."""
    from peft import get_peft_model_state_dict

    trained = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    adapter = model.active_adapter

    def saved_name(key: str) -> str:  # peft 0.21.2 leaves the adapter's name in a key it was not last in
        head, _, last = key.replace(FSDP_PREFIX, "").rpartition(".")  # (…lora_A.default._fsdp_wrapped_module.weight)
        return f"{head.removesuffix('.' + adapter)}.{last}"
    return {saved_name(k): t for k, t in get_peft_model_state_dict(model, state_dict=trained).items()}


def save_sharded_adapter(model, folder, state: PartialState) -> None:
    """Write the LoRA adapter of a model FSDP has sharded across the processes: every process takes part in
    gathering the full weights of the FSDP units inside `model` (the LoRA model FSDP wrapped; the LoRA weights are
    units of their own) into the main process's CPU memory, and the main one writes them as PEFT would.
    Checked before it takes its name: a run never ends with an adapter missing weights, nor a checkpoint."""
    from safetensors.torch import save_file
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    from .errors import UserError

    weights, expected = {}, 0
    several = state.num_processes > 1  # FSDP on one process keeps whole weights (NO_SHARD), which it cannot offload
    with FSDP.summon_full_params(model, writeback=False, rank0_only=several,  # gathered into the main process's
                                 offload_to_cpu=several and state.device.type == "cuda"):  # CPU memory, from GPUs
        if state.is_main_process:  # gathered, the trained weights are the adapter's own (outside: FSDP's flat ones)
            weights, expected = adapter_weights(model), sum(p.requires_grad for p in model.parameters())
    state.wait_for_everyone()
    if not state.is_main_process:
        return
    if not expected or len(weights) != expected or any(t.numel() == 0 for t in weights.values()):
        raise UserError(f"the adapter gathered from the FSDP shards holds {len(weights)} of its {expected} weights "
                        f"(or empty ones); nothing was written. Train with DDP (torchrun) instead")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".adapter_model.safetensors.tmp"
    save_file(weights, str(tmp), metadata={"format": "pt"})
    config = model.peft_config[model.active_adapter]
    training, config.inference_mode = config.inference_mode, True  # as PeftModel.save_pretrained writes it
    config.save_pretrained(str(folder))
    config.inference_mode = training
    os.replace(tmp, folder / "adapter_model.safetensors")


def init_optimizer_state(optimizer) -> None:
    """Give a fresh optimizer its state (Adam's moments, zero) by one step with zero gradients and learning rate,
    as torch's distributed checkpoint does before loading one: accelerate 1.15 loads FSDP's sharded optimizer
    checkpoint into the shape of the optimizer's own state, and a fresh optimizer has none, so nothing loaded and a
    resumed run restarted Adam from zero (found in review; tests/fixtures/fsdp_adapter_worker.py)."""
    from torch.distributed.checkpoint.state_dict import _init_optim_state

    _init_optim_state(getattr(optimizer, "optimizer", optimizer))  # accelerate's wrapper may skip a step


class SaveShardedAdapter(TrainerCallback):
    """Under FSDP, put the gathered adapter into each checkpoint, before it is sealed. The Trainer's own sharded
    model checkpoint keeps no LoRA weights (accelerate 1.15 asks peft for them by names FSDP has changed: 0
    bytes, bench/results/2026-11-30-h200x2-fsdp/); the optimizer's shards it writes are whole. Resuming loads
    this file into the model before FSDP wraps it (checkpoints.load_adapter)."""

    def __init__(self, model, state: PartialState):
        self.model, self.state = model, state

    def on_save(self, args, state, control, **kwargs):
        save_sharded_adapter(self.model, Path(args.output_dir) / f"checkpoint-{state.global_step}", self.state)
