"""--dry-run: count parameters and estimate GPU memory from a model's config, with no weights loaded.

The model is built on the meta device (shapes only) and LoRA is attached for real, so the counts are
PEFT's own. Memory is an estimate of peak allocated bytes in training, from the parts that dominate
(4-bit weights, fp32 leftovers, LoRA optimizer state, activations, logits), within ~10 % of the peaks
measured on an H200 at the 12.8b shape (bench/RESULTS.md).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from .cli import flag
from .known_models import KNOWN_MODELS, licence_line
from .loss import chunked_loss_off
from .modeling import build_on_meta
from .processes import Launch, optimizer

ONE_PROCESS = Launch(1, "one process")

GIB = 2**30
# NF4 with double quantization: 4 bits a weight, plus an 8-bit scale per 64 weights and an fp32 scale
# per 256 of those blocks.
NF4_DQ_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)
FITS_GIB = 22.0  # a 24 GB card, less the CUDA context and allocator slack
OPTIMIZER_BYTES = {"paged_adamw_8bit": 2, "adamw_8bit": 2, "adamw_bnb_8bit": 2}  # per LoRA parameter; else 8


@dataclass(frozen=True)
class ParamCount:
    trainable: int
    total: int       # every parameter, 4-bit weights counted at their real size
    stored: int      # 4-bit weights counted as stored, two to a byte (what the KoAlpaca recipe printed)
    quantized: int   # weights held in 4 bits (real count)
    adapted_inputs: int = 0  # the input widths of all LoRA-adapted layers: each keeps a dropout copy of its input

    def line(self) -> str:
        return (f"trainable params: {self.trainable:,} || all params: {self.stored:,} || "
                f"trainable%: {100 * self.trainable / self.stored:.4f}  (4-bit weights counted as stored, two "
                f"to a byte, as the KoAlpaca recipe printed; of all {self.total:,} parameters: "
                f"{100 * self.trainable / self.total:.4f} %)")


def quantizable_weights(model) -> set[int]:
    """ids of the weights bitsandbytes puts in 4 bits: every Linear but the output head."""
    head = model.get_output_embeddings()
    return {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head}


def count_parameters(model, would_quantize: set[int] = frozenset()) -> ParamCount:
    """Counts for a loaded 4-bit model (Params4bit) or a meta model plus the ids that would be 4-bit."""
    trainable = total = stored = quantized = adapted_inputs = 0
    for name, p in model.named_parameters():
        if "lora_A" in name:  # [r, in_features]
            adapted_inputs += p.shape[1]
        if p.__class__.__name__ == "Params4bit":  # packed two to a byte, in bytes or (FSDP) 16-bit elements
            kept = p.numel() * p.element_size()
            real = kept * 2
        elif id(p) in would_quantize:
            real, kept = p.numel(), p.numel() // 2
        else:
            real = kept = p.numel()
        total += real
        stored += kept
        quantized += real if kept != real else 0
        if p.requires_grad:
            trainable += real
    return ParamCount(trainable, total, stored, quantized, adapted_inputs)


def meta_model_with_lora(config, lora_config):
    from peft import get_peft_model

    model = build_on_meta(config)
    would_quantize = quantizable_weights(model)
    for p in model.parameters():
        p.requires_grad = False
    # a copy: get_peft_model writes the meta model's name into the config it is given, which trains the real one
    return get_peft_model(model, copy.deepcopy(lora_config)), would_quantize


COMPILED_ACTIVATIONS = 0.75  # compiled GPT-NeoX layers keep fewer intermediates: fitted to 12.18 / 19.62 GiB measured


def estimate_training_gib(config, counts: ParamCount, batch: int, seq_len: int, checkpointed: float, optim: str,
                          compiled: bool = False, loss_chunk: int = 0, lora_dropout: float = 0.05,
                          launch: Launch = ONE_PROCESS) -> dict[str, float]:
    """Peak allocated GiB by part on one GPU, for one training step at `batch` × `seq_len` tokens, with the share
    `checkpointed` of the layers recomputed in backward, the layers compiled or not, and the output head's
    logits made `loss_chunk` tokens at a time (kochat/loss.py; 0: all at once, transformers' own loss).
    `launch`: several processes keep transformers' loss (the wrapped model); DDP gives each GPU the whole model,
    FSDP a share of the weights plus the layer being gathered, and no compiled layers (finetune_ko.py)."""
    text = config.get_text_config()  # a multimodal model's language part (Gemma 3)
    if chunked_loss_off(config, launch.processes):  # kochat/loss.py keeps transformers' loss
        loss_chunk = 0
    compiled = compiled and not launch.fsdp
    h, layers, vocab = text.hidden_size, text.num_hidden_layers, text.vocab_size
    inter = getattr(text, "intermediate_size", 4 * h)
    tokens = batch * seq_len
    lora = counts.trainable
    embeddings = vocab * h * (1 if getattr(text, "tie_word_embeddings", False) else 2)
    other = counts.total - counts.quantized - lora - embeddings
    # One layer's saved activations: fp32 norm outputs and residual, bf16 qkv, attention, MLP in and out,
    # the LoRA dropout copy of query_key_value's input (SDPA keeps no seq² scores). Bytes fitted to measured
    # peaks at the 12.8b shape (bench/RESULTS.md). A gated MLP (SwiGLU: Llama, Qwen, Gemma, EXAONE) keeps 7 more
    # bytes a token of its intermediate width, and compiling saved nothing measurable at the Qwen3-8B shape; each
    # further adapted layer keeps a 16-bit dropout copy of its input (fitted there within 6 %, six peaks).
    gated = config.model_type != "gpt_neox"
    per_token = (20 * h + 4 * inter) * (COMPILED_ACTIVATIONS if compiled and not gated else 1.0)
    if gated:
        per_token += 7 * inter
    per_token += 2 * (counts.adapted_inputs / layers - h) if lora_dropout > 0 else -2 * h
    layer_acts = tokens * per_token
    # Checkpointed layers keep only their input, the rest keep everything. Backward meets the kept layers
    # first and frees them, so one layer's recomputed activations only add to the peak when all are checkpointed.
    recomputed = round(layers * checkpointed)
    activations = (recomputed * tokens * h * 4 + (layers - recomputed) * layer_acts
                   + (layer_acts if recomputed == layers else 0))
    parts = {
        "4-bit weights": counts.quantized * NF4_DQ_BYTES_PER_WEIGHT,
        "16-bit embeddings and output head": embeddings * 2,  # modeling.embeddings_in
        "fp32 norms, biases, other": other * 4,  # prepare_model_for_kbit_training upcasts them
        "LoRA weights, grads, optimizer": lora * (4 + 4 + OPTIMIZER_BYTES.get(optim, 8)),
        "activations": activations,
        "dequantized weight in flight": h * inter * 2,
        "logits and loss": min(tokens, loss_chunk or tokens) * vocab * 12,  # bf16 logits, fp32 copy, its gradient
    }
    if launch.fsdp:  # each GPU keeps 1/N of every weight and of the LoRA's state (8-bit paged Adam is swapped
        n = launch.processes  # for adamw_torch); a layer is gathered whole while it runs, the next one prefetched
        layer_weights = counts.quantized * NF4_DQ_BYTES_PER_WEIGHT / layers
        parts["4-bit weights"] = parts["4-bit weights"] / n + 2 * layer_weights
        parts["16-bit embeddings and output head"] = embeddings * 2 / n + vocab * h * 2  # the head gathered
        parts["fp32 norms, biases, other"] = other * 2 / n  # kept in the compute dtype: FSDP flattens one dtype
        parts["LoRA weights, grads, optimizer"] = lora * (4 + 4 + 8) / n
    return {k: v / GIB for k, v in parts.items()}


def checkpointing_to_fit(config, counts: ParamCount, batch: int, seq_len: int, optim: str, compiled: bool = False,
                         loss_chunk: int = 0, lora_dropout: float = 0.05, launch: Launch = ONE_PROCESS) -> float:
    """GRADIENT_CHECKPOINTING = "auto": half the layers (the 12.8b recipe's measured default), or more in steps of
    5 % until the estimate fits a 24 GB card (FITS_GIB); all of them if none does (--dry-run then says so)."""
    for share in [x / 20 for x in range(10, 21)]:
        parts = estimate_training_gib(config, counts, batch, seq_len, share, optim, compiled, loss_chunk,
                                      lora_dropout, launch)
        if sum(parts.values()) <= FITS_GIB:
            return share
    return 1.0


def report(model_id: str, config, counts: ParamCount, batch: int, seq_len: int, checkpointed: float,
           optim: str, compiled: bool = False, loss_chunk: int = 0, lora_dropout: float = 0.05,
           launch: Launch = ONE_PROCESS) -> list[str]:
    parts = estimate_training_gib(config, counts, batch, seq_len, checkpointed, optim, compiled, loss_chunk,
                                  lora_dropout, launch)
    weights = parts["4-bit weights"] + parts["16-bit embeddings and output head"] + parts["fp32 norms, biases, other"]
    peak = sum(parts.values())
    text = config.get_text_config()
    lines = [f"model: {model_id}  ({config.model_type}, {text.num_hidden_layers} layers, hidden {text.hidden_size}, "
             f"vocab {text.vocab_size})", counts.line(),
             f"GPU memory, weights in 4-bit NF4 (double quant), embeddings in 16-bit: {weights:.1f} GiB",
             f"GPU memory, training at batch {batch} × {seq_len} tokens, {round(text.num_hidden_layers * checkpointed)} "
             f"of {text.num_hidden_layers} layers checkpointed ({checkpointed:.0%}), LoRA dropout {lora_dropout:g}"
             f"{', compiled' if compiled and not launch.fsdp else ''}, {optimizer(launch, optim)}: ~{peak:.1f} GiB peak"
             + (f" on each of {launch.processes} GPUs ({launch.strategy})" if launch.processes > 1 or launch.fsdp
                else "")]
    lines += [f"    {name:<34} {gib:6.2f} GiB" for name, gib in parts.items()]
    if peak <= FITS_GIB:
        lines.append(f"fits a 24 GB card (estimate ≤ {FITS_GIB:.0f} GiB leaves room for the CUDA context)")
    else:
        lines.append(f"does NOT fit a 24 GB card (estimate ≤ {FITS_GIB:.0f} GiB leaves room for the CUDA context): "
                     f"raise {flag('GRADIENT_CHECKPOINTING')} toward 1 (auto does, as far as it helps) or lower "
                     f"{flag('PACK_TOKENS')}, or use a larger GPU")
    lines.append(licence_line(model_id))
    if model_id in KNOWN_MODELS and KNOWN_MODELS[model_id].note:
        lines.append(f"note: {KNOWN_MODELS[model_id].note}")
    return lines


def out_of_memory_hint(config, counts: ParamCount, batch: int, seq_len: int, checkpointed: float, optim: str,
                       compiled: bool, loss_chunk: int = 0, lora_dropout: float = 0.05,
                       launch: Launch = ONE_PROCESS) -> str:
    """The one-line error for running out of GPU memory: what was tried, the estimate, what to lower."""
    est = sum(estimate_training_gib(config, counts, batch, seq_len, checkpointed, optim, compiled, loss_chunk,
                                    lora_dropout, launch).values())
    have = torch.cuda.get_device_properties(0).total_memory / GIB if torch.cuda.is_available() else 0.0
    lower = (f"{flag('BATCH_SIZE', 1)}, or lower {flag('PACK_TOKENS')}" if batch > 1 else
             f"lower {flag('PACK_TOKENS')} (or {flag('MAX_LEN')} with padded rows)")
    return (f"out of GPU memory training {batch} × {seq_len} tokens a step with {checkpointed:.0%} of layers "
            f"checkpointed (--dry-run estimate ~{est:.1f} GiB; this GPU has {have:.1f} GiB): {lower}, or raise "
            f"{flag('GRADIENT_CHECKPOINTING')} toward 1; checkpoints already saved are kept, and the same command "
            f"continues from the newest")
