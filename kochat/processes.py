"""Training on several processes (one a GPU, or CPU processes with gloo), launched by torchrun or accelerate:
the shared state, and what only one of them does.

`torchrun --nproc_per_node=N finetune_ko.py` (or `accelerate launch --num_processes N`) starts N copies of the
script. Each loads the 4-bit base on its own device and trains the same LoRA on its share of the batches; the
Trainer wraps the model in DistributedDataParallel, which all-reduces the LoRA gradients. What belongs to the run
happens once: the main process prints, checks and clears the output folder first, seals checkpoints, and writes
the adapter, card, plot and demo; the others stay quiet and wait.
"""
from __future__ import annotations

import os
import sys

import torch
from accelerate import PartialState


def start() -> PartialState:
    """The processes' shared state (the process group is set up here when launched for several). Processes other
    than the main one print nothing: one report, not N interleaved copies (errors still reach stderr)."""
    state = PartialState(cpu=not torch.cuda.is_available())  # gloo between CPU processes, NCCL between GPUs
    if not state.is_main_process:
        sys.stdout = open(os.devnull, "w")
    return state


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
