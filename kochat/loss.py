"""The training loss without the full logits: the output head run over a few positions at a time.

transformers computes a causal LM's logits for every position before its loss: in a packed step of 4,096
tokens that is 4,096 × vocabulary × (2-byte logits + their fp32 copy + its gradient), 6.96 GiB at Qwen3-8B's
151,936-token vocabulary (1.4 GiB at polyglot-ko's 30,080). Here the head and cross-entropy run over the
decoder's last hidden states `chunk` positions at a time, each chunk recomputed in backward (activation
checkpointing), so only one chunk's logits exist at once. Chunks are fixed slices, not the trained positions
picked out: picking them makes the host wait for the GPU every step, which cost 3-6 % of the tokens/s.
The loss is transformers' (the sum over trained tokens divided by their number, or by the Trainer's
num_items_in_batch under gradient accumulation), and so are the gradients: a test compares both with the
model's own. The same idea as Liger's fused linear cross-entropy, in plain torch, for every architecture and
on the CPU too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import Trainer

from .modeling import transformers_model
from .tokenization import IGNORE


# Model types whose logits are their output head applied to the decoder's output (Gemma 2's soft-capping aside);
# others (Cohere's logit_scale, Granite's logits_scaling, Falcon-H1's lm_head_multiplier, …) keep transformers' loss.
PLAIN_LOGITS = {"gpt_neox", "llama", "mistral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "gemma", "gemma2",
                "gemma3", "gemma3_text", "exaone4"}


def head_loss_sum(head, hidden: torch.Tensor, targets: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Summed cross-entropy of one chunk: the head module itself (its bias, a LoRA on it), the logits in fp32,
    as transformers' loss takes them."""
    logits = head(hidden).float()
    if softcap:  # Gemma 2's final logit soft-capping
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, reduction="sum")


def chunked_loss(model, inputs: dict, labels: torch.Tensor, chunk: int, num_items=None) -> torch.Tensor:
    """The causal LM loss of `model` (a transformers model, or PEFT's wrapper of one) on `inputs`, the head
    applied to `chunk` positions at a time."""
    core = transformers_model(model)
    hidden = core.get_decoder()(**inputs, use_cache=False).last_hidden_state[:, :-1].flatten(0, 1)
    targets = labels[:, 1:].flatten()  # -100 where nothing is trained: cross_entropy skips it
    head = core.get_output_embeddings()
    softcap = getattr(core.config.get_text_config(), "final_logit_softcapping", None)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, len(targets), chunk):  # fixed chunks, not the trained positions: no wait for the GPU
        total = total + checkpoint(head_loss_sum, head, hidden[start:start + chunk], targets[start:start + chunk],
                                   softcap, use_reentrant=False)
    return total / (num_items if num_items is not None else (targets != IGNORE).sum())


def computes_plain_logits(config) -> bool:
    """Whether the model's logits are its head applied to its decoder's output (see PLAIN_LOGITS)."""
    return config.model_type in PLAIN_LOGITS


def chunked_loss_off(config, processes: int) -> str:
    """Why training keeps transformers' own loss (the whole batch's logits at once) for this model and launch, or
    "" where the chunked loss runs: finetune_ko.py prints it, kochat/estimate.py counts the logits so."""
    if not computes_plain_logits(config):
        return (f"{config.model_type}'s logits are not its output head's plain product (kochat/loss.py PLAIN_LOGITS): "
                f"transformers' own loss, the batch's logits at once")
    if processes > 1:
        return "several processes (DDP, FSDP) keep transformers' own loss: their wrapper's forward shares the gradients"
    return ""


class ChunkedLossTrainer(Trainer):
    """The Hugging Face Trainer, its loss computed by `chunked_loss` (`chunk` = 0: transformers' own loss). A model
    wrapped for several processes (DDP, FSDP) keeps transformers' loss, full logits on every GPU: the wrapper's
    own forward must run for the gradients to be shared. Resuming under FSDP, the optimizer is given its state's
    shape before the Trainer loads the checkpoint's (processes.init_optimizer_state)."""

    def __init__(self, *args, loss_chunk: int = 1024, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_chunk = loss_chunk

    def _load_optimizer_and_scheduler(self, checkpoint):
        if checkpoint is not None and self.is_fsdp_enabled:
            from .processes import init_optimizer_state

            init_optimizer_state(self.optimizer)
        super()._load_optimizer_and_scheduler(checkpoint)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        wrapped = self.accelerator.unwrap_model(model) is not model  # DDP/FSDP: their forward syncs the gradients
        config = self.accelerator.unwrap_model(model).config
        if not self.loss_chunk or "labels" not in inputs or wrapped or not computes_plain_logits(config):
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        with self.accelerator.autocast():  # what accelerate wraps the model's own forward in (bf16 mixed precision)
            loss = chunked_loss(model, inputs, labels, self.loss_chunk, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # the Trainer's own rule: num_items counts every process's
        return (loss, {"loss": loss}) if return_outputs else loss
