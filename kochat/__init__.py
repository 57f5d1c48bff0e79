"""What the entry scripts (finetune_ko.py, index_ko.py, chat_ko.py, serve_ko.py) share; ARCHITECTURE.md maps it.

One concern a module: `errors` (the one-line UserError), `cli` (constants and overrides), `hub` (offline use),
`records` (reading data files), `data` (rows in, checked), `conversations` (turns checked; rows as trained and
untrained pieces), `prompts` (templates or the model's chat template, the one renderer), `tokenization` (pieces
to trained-on tokens), `packing` (rows into fixed-size sequences), `modeling` (the one model loader),
`known_models` (shapes and licences for the dry run), `tiny` (the offline presets' models and tokenizers),
`estimate` (dry run), `recipe` (the recipe's step helpers), `loss` (the Trainer, its loss's head in chunks),
`processes` (several training processes), `checkpoints` (sealed checkpoints, resume), `runs` (the run folder),
`card` (its model card),
`generation` (the one gen()), `streaming` (its rows' ends and streams); packages `documents/` (files ->
index folder -> retrieved passages -> grounded prompts) and `server/` (serve_ko.py's HTTP app).
"""
import logging
import warnings
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# bitsandbytes' CPU backend warns at import that the optional `kernels` package (which downloads
# kernels from the hub) is missing. Its own CPU kernels work without it, so on an offline machine
# the warning only misleads.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
# transformers 5.2x renamed gradient checkpointing to activation checkpointing; peft and the GPU image's
# transformers 5.17 still use the old names, which work. Nothing for a user to act on.
warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*is deprecated", category=FutureWarning)
# torchao (the int8/int4 exports) tries to load its CUDA and Hopper kernels at import and logs each one that a CPU
# build of torch cannot load; weight-only int8 runs without them. Its enum registrations warn through torch's pytree
# logger. Neither is anything for a user to act on.
logging.getLogger("torchao").setLevel(logging.ERROR)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
# Resuming an FSDP run, the Trainer loads its sharded model checkpoint, which holds no weights (the adapter comes
# from the checkpoint's adapter file: processes.SaveShardedAdapter); FSDP logs each of the hundreds of frozen and
# LoRA weights it did not find there. Nothing is missing.
logging.getLogger("torch.distributed.fsdp._state_dict_utils").setLevel(logging.ERROR)
# The recipe's paged 8-bit Adam on a CPU (the tiny preset): bitsandbytes keeps its state in ordinary memory there, as
# it warns, which is all a CPU can do. Nothing for a user to act on.
warnings.filterwarnings("ignore", message="Paged optimizers are not supported on CPU", category=UserWarning)
