"""The one model loader: a hub id or a local folder, 4-bit NF4 (or not), with or without an adapter.

Also the end-of-text rule. polyglot-ko's tokenizer files say eos = "<eos>" (id 1) and its model
config says eos_token_id = 0, but the released model ends its text with "<|endoftext|>" (id 2), which
the KoAlpaca recipe passes by hand. We resolve it by token string, once, here, and write it into the
tokenizer and generation config we save, so every later reader stops at the same token.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from . import hub, tiny
from .known_models import KNOWN_MODELS
from .cli import flag
from .errors import UserError

END_OF_TEXT = "<|endoftext|>"
CPU_PARAM_LIMIT = 1.5e9  # above this, training or answering on a CPU would take days: refuse early

def hub_hint(model_id: str, option: str = "MODEL_ID") -> str:
    """`option`: the script's constant that names the model (BASE where a run folder's base is missing)."""
    return (f"'{model_id}' is not a local folder and the hub did not provide it: "
            + hub.download_hint(model_id, option=option))


def model_source(model_id: str, option: str = "MODEL_ID") -> str:
    """What from_pretrained loads: a local folder, a hub id, or the built tiny model's folder. `option`: the
    script's constant that names the model, for the line when its folder is missing."""
    if model_id in (tiny.MODEL_ID, tiny.CHAT_MODEL_ID):
        return str(tiny.ensure_built(model_id))
    path = os.path.expanduser(model_id)
    if os.path.isdir(path):
        return path
    if model_id.startswith((".", "/", "~")) or os.path.isfile(path):
        raise UserError(f"model folder {model_id} not found; pass {flag(option, '…')}: a folder holding config.json, "
                        f"or a hub id")
    hub.use_offline_if_unreachable()
    return model_id


def load_config(model_id: str, use_known_table: bool = False, option: str = "MODEL_ID"):
    """The model's config; with use_known_table, fall back to kochat.known_models when offline. A model that
    needs its own code (trust_remote_code) is one line: kochat runs no code downloaded with a model. `option`:
    the script's constant that names the model, for the line saying how to bring it here."""
    source = model_source(model_id, option)
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=False)  # never run code from a model folder
    except (OSError, ValueError) as e:
        if use_known_table and model_id in KNOWN_MODELS:
            return known_config(model_id)
        if "trust_remote_code" in str(e):
            raise UserError(f"{model_id} needs its own Python code (trust_remote_code), which kochat "
                            f"does not run; use a model transformers has a class for, or a copy converted to one "
                            f"(e.g. a 'llamafied' EXAONE 3.5, or EXAONE 4.0)") from None
        if os.path.isdir(source):
            raise UserError(not_a_model_folder(Path(source), e)) from None
        known = (f" (--dry-run knows {', '.join(KNOWN_MODELS)} without a download)"
                 if option == "MODEL_ID" and not use_known_table else "")
        raise UserError(hub_hint(model_id, option) + known) from None


def not_a_model_folder(folder: Path, error: Exception) -> str:
    """Why a folder given as a model is none, with what to pass instead where the folder says what it is."""
    from . import runs

    if (folder / "adapter_config.json").is_file() or (folder / runs.RUN_CONFIG).is_file():
        return (f"{folder} is a training run (an adapter, not a model): chat_ko.py and serve_ko.py take it as "
                f"--adapter={folder}; to train on from it, export it with export_ko.py --format=merged and pass "
                f"that folder")
    if any(folder.glob("*.gguf")):
        return (f"{folder} is a GGUF export, for llama.cpp and Ollama; pass the base model or a merged export "
                f"(export_ko.py --format=merged) instead")
    return f"{folder} has no readable config.json ({error})"


def known_config(model_id: str):
    """The config of a model in kochat.known_models, built without a download."""
    spec = dict(KNOWN_MODELS[model_id].config)
    return AutoConfig.for_model(spec.pop("model_type"), **spec)


def saved_quantization(config) -> str | None:
    """How a model folder was saved quantized ("torchao": an int8/int4 export of export_ko.py), or None: such a
    folder is loaded as it was saved, never quantized again."""
    saved = getattr(config, "quantization_config", None)
    if saved is None:
        return None
    return str(saved.get("quant_method") if isinstance(saved, dict) else getattr(saved, "quant_method", "quantized"))


def saved_dtype(config) -> torch.dtype:
    """The dtype a model's weights were published in (float16 for polyglot-ko, bfloat16 for most newer models);
    bfloat16 where the config does not say. A merged copy keeps it: on a CPU as on a GPU, half the bytes of fp32."""
    dtype = getattr(config, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.bfloat16


def build_on_meta(config):
    """The model's modules with no memory behind them: for counting parameters and estimating memory."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def context_length(config) -> int:
    """The positions the model takes, prompt and answer together (2,048, polyglot-ko's, where the config does not
    say): what chat, serving and eval_ko.py fit a prompt and its answer into."""
    return getattr(config.get_text_config(decoder=True), "max_position_embeddings", None) or 2048


def parameter_count(config) -> int:
    return sum(p.numel() for p in build_on_meta(config).parameters())


def check_machine_can_run(config, answering: bool = False) -> None:
    """A real-size model on a machine without a CUDA GPU: stop before loading anything big. The advice is
    finetune_ko.py's (its tiny preset, its dry run), or, for `answering`, where such a run can answer."""
    if torch.cuda.is_available():
        return
    n = parameter_count(config)
    if n > CPU_PARAM_LIMIT:
        advice = ("answer with it on a machine with a CUDA GPU; on a CPU, a run of the tiny preset answers "
                  "(python3 finetune_ko.py --preset tiny, then --adapter outputs/tiny)" if answering else
                  "run `--preset tiny` for the offline CPU check of every step, or `--dry-run` to see what it "
                  "needs on a GPU")
        raise UserError(f"the model has {n / 1e9:.1f} B parameters and this machine has no CUDA GPU; {advice}")


def language_layers(model) -> list:
    """The decoder layers of the language model (a vision tower's layers, as in Gemma 3, are not among them)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    return [m for m in decoder.modules() if isinstance(m, GradientCheckpointingLayer)]


def lora_targets(config, choice) -> list[str] | str:
    """What LoRA adapts. "auto": GPT-NeoX keeps the KoAlpaca recipe's query_key_value (6,553,600 parameters at
    12.8b); any other model gets every linear layer of its decoder layers, attention and MLP (the QLoRA paper's
    finding: adapting all of them matches full fine-tuning), found from the model built on the meta device.
    Else a list of module names (on the command line: a,b,c) or PEFT's "all-linear", checked against the model:
    a wrong name is one line with the names it has. Where other modules share those names (a vision tower, as in
    Gemma 3), the targets become a pattern over the decoder's layers: text-only training never runs the others,
    and an adapter there would be trained on nothing (and stall DDP, which expects every weight to get a gradient)."""
    names = choice.split(",") if isinstance(choice, str) and choice not in ("auto", "all-linear") else choice
    names = "all-linear" if names == ["all-linear"] else names
    model = build_on_meta(config)
    linear = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    in_layers = {id(m) for layer in language_layers(model) for m in layer.modules()}
    head = model.get_output_embeddings()
    outside = {n for n, m in linear.items() if id(m) not in in_layers and m is not head}
    if isinstance(names, list):
        names = [n.strip() for n in names if n.strip()]
        embeddings = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Embedding)]
        missing = [t for t in names if not any(n == t or n.endswith("." + t) for n in [*linear, *embeddings])]
        if missing or not names:
            have = ", ".join(dict.fromkeys(n.rsplit(".", 1)[-1] for n in linear))
            raise UserError(f"{flag('LORA_TARGETS')}: {config.model_type} has no linear layer named "
                            f"{', '.join(map(repr, missing)) or '(none given)'}; its linear layers are named "
                            f"{have} (or pass auto or all-linear)")
        matched = [n for n in linear if any(n == t or n.endswith("." + t) for t in names)]
        if not set(matched) & outside:
            return names
        if not set(matched) - outside:  # only a vision tower's (or another part text training never runs)
            have = ", ".join(dict.fromkeys(n.rsplit(".", 1)[-1] for n, m in linear.items() if id(m) in in_layers))
            raise UserError(f"{flag('LORA_TARGETS')}: {', '.join(map(repr, names))} name only layers outside "
                            f"{config.model_type}'s decoder layers, which text training never runs; its decoder "
                            f"layers' linear layers are named {have} (or pass auto or all-linear)")
        return decoder_pattern([n for n in matched if n not in outside])
    if names == "all-linear" and not outside:
        return names
    if names == "auto" and config.model_type == "gpt_neox":
        return ["query_key_value"]
    inside = [n for n, m in linear.items() if id(m) in in_layers]
    short = list(dict.fromkeys(n.rsplit(".", 1)[-1] for n in inside))
    return decoder_pattern(inside) if any(n.rsplit(".", 1)[-1] in short for n in outside) else short


def decoder_pattern(names: list[str]) -> str:
    """A pattern PEFT matches against whole module names: exactly these decoder-layer modules, in every layer."""
    return "|".join(dict.fromkeys(re.sub(r"\\\.\d+\\\.", r"\\.\\d+\\.", re.escape(n)) for n in names))


def check_tokenizer_fits(tokenizer, config) -> None:
    """A tokenizer with ids beyond the model's embedding rows belongs to another model (an IndexError later)."""
    rows = config.get_text_config(decoder=True).vocab_size  # a vision-language model's (Gemma 3) is its text model's
    if len(tokenizer) > rows:
        raise UserError(f"the tokenizer has {len(tokenizer):,} tokens but the model only {rows:,} "
                        f"embedding rows: they belong to different models; use the model folder's own tokenizer")


def load_tokenizer(model_id: str):
    """The tokenizer with its end-of-text resolved (see the module doc; for a tokenizer with a chat template,
    prompts.load_template resolves it from the template) and a pad token set."""
    source = model_source(model_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as e:
        if os.path.isdir(source):
            raise UserError(f"{source} has no readable tokenizer ({str(e).splitlines()[0][:120]})") from None
        raise UserError(hub_hint(model_id)) from None
    eot = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    if not tokenizer.chat_template and isinstance(eot, int) and tokenizer.convert_ids_to_tokens(eot) == END_OF_TEXT:
        tokenizer.eos_token = END_OF_TEXT  # a chat model's turns end with its own token (prompts.load_template)
    elif tokenizer.eos_token is None:
        raise UserError(f"the tokenizer of {model_id} has no {END_OF_TEXT} and no eos token; "
                        f"add one to its tokenizer_config.json")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # safe: labels are padded with -100 on their own
    return tokenizer


def training_attention(choice: str, packed: bool) -> str:
    """"auto": flex_attention for packed rows on a GPU, since it skips the scores a block-diagonal mask
    throws away (+22 % tokens/s at the 12.8b shape, bench/RESULTS.md); sdpa otherwise (flex has no CPU backward)."""
    if choice != "auto":
        return choice
    return "flex_attention" if packed and torch.cuda.is_available() else "sdpa"


def transformers_model(model):
    """The transformers model itself: `model`, or the one a PEFT wrapper holds."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def checkpoint_layers(model, share: float) -> int:
    """Recompute activations in backward for the first `share` of the decoder layers (after
    gradient_checkpointing_enable): 1.0 least memory, 0 fastest. Returns how many layers."""
    if not 0 <= share <= 1:
        raise UserError(f"GRADIENT_CHECKPOINTING must be a share between 0 and 1, not {share}")
    layers = language_layers(model)
    count = round(len(layers) * share)
    for i, layer in enumerate(layers):
        layer.gradient_checkpointing = i < count
    return count


def compile_layers(model, on: bool = True) -> None:
    """torch.compile each decoder layer ("regional compilation": one layer's code, compiled once, reused by
    all). It fuses the casts, rotary embedding, LoRA and residual arithmetic that otherwise run as hundreds
    of small kernels a layer: +23 % tokens/s and less activation memory at the 12.8b shape (bench/RESULTS.md).
    on=False restores plain eager layers, for answering, where shapes change every token."""
    if on:
        cast_4bit_biases(model)
    for layer in language_layers(model):
        if on:
            layer.compile()
        else:
            layer._compiled_call_impl = None  # what nn.Module.compile() set; there is no public undo


def cast_4bit_biases(model) -> None:
    """Do ahead what a bitsandbytes 4-bit layer does on its first forward: cast its bias to the layer's
    compute dtype (peft's prepare_model_for_kbit_training made it float32). bitsandbytes does it by
    assigning `.data`, which torch.compile cannot trace: the graph break in every layer's first step cost
    the compiled layers their memory savings (22.7 instead of 19.6 GiB at the 12.8b shape, bench/RESULTS.md)."""
    from bitsandbytes.nn import Linear4bit

    for module in model.modules():
        if isinstance(module, Linear4bit) and module.bias is not None and module.compute_type_is_set \
                and module.compute_dtype is not None:
            module.bias.data = module.bias.data.to(module.compute_dtype)


def embeddings_in(model, dtype: torch.dtype) -> None:
    """Put the frozen input embedding and output head back in `dtype` after peft's
    prepare_model_for_kbit_training upcast every weight that is not 4-bit to fp32 (the norms' sake). They need
    no fp32: the head runs under autocast in 16-bit anyway (a 16-bit copy of an fp32 head is made every step), and
    an embedding lookup is exact. In 16-bit they take half the memory: 2.3 GiB less at Qwen3-8B's 151,936-token
    vocabulary, 0.6 GiB at polyglot-ko-12.8b's 30,080 (bench/RESULTS.md)."""
    for module in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m}.values():
        module.to(dtype)


def compute_dtype() -> torch.dtype:
    """bf16 on GPUs that have it, fp16 on older GPUs, fp32 on the CPU."""
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def nf4_config(dtype: torch.dtype) -> BitsAndBytesConfig:
    """The QLoRA quantization: 4-bit NF4 with double quantization, computing in `dtype`. finetune_ko.py
    writes the same call out in step 4, where the reader looks for it; a test holds the two equal."""
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=dtype)


def load_model(model_id: str, tokenizer, *, four_bit: bool = True, adapter: str | None = None,
               trainable: bool = False, merge: bool = False, attention: str | None = None,
               device_map: str = "auto", quantization_config: BitsAndBytesConfig | None = None,
               dtype: torch.dtype | None = None, option: str = "MODEL_ID"):
    """Load the base in 4-bit NF4 with double quantization (or in the compute dtype), on device_map="auto",
    then the LoRA adapter from `adapter` (a run folder) if given. End of text and pad come from `tokenizer`.
    `quantization_config`: the BitsAndBytesConfig to load with, instead of nf4_config() (implies 4-bit).
    `trainable`: the model will be trained (the adapter loads trainable; see keep_cpu_4bit_trainable).
    `attention`: a transformers attn_implementation ("sdpa", "eager", "flex_attention"); None = its default.
    `merge`: fold the adapter into the base weights (a plain transformers model, faster to answer with);
    only for a 16-bit base: merging into 4-bit weights would round the update away.
    `dtype`: the weights' dtype when not 4-bit; None = compute_dtype() (bf16 on a GPU, fp32 on a CPU).
    `option`: the script's constant that names the base, for the lines saying what to pass instead."""
    four_bit = four_bit or quantization_config is not None
    if merge and (four_bit or adapter is None):
        raise UserError("merging needs an adapter and a 16-bit base (four_bit=False), never 4-bit weights")
    dtype = compute_dtype() if four_bit or dtype is None else dtype
    kwargs = {"dtype": dtype, "device_map": device_map, "attn_implementation": attention}
    if four_bit:
        kwargs["quantization_config"] = quantization_config or nf4_config(dtype)
    from safetensors import SafetensorError

    source = model_source(model_id, option)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, trust_remote_code=False, **kwargs)
    except SafetensorError as e:  # a file cut short (a copy that stopped, a full disk)
        raise UserError(f"the weights in {source} are damaged ({str(e).splitlines()[0][:160]}): copy or download "
                        f"them again") from None
    except OSError as e:
        if os.path.isdir(source):
            raise UserError(f"cannot load weights from {source}: {str(e).splitlines()[0][:160]}") from None
        raise UserError(hub_hint(model_id, option)) from None
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id = tokenizer.eos_token_id
        cfg.pad_token_id = tokenizer.pad_token_id
    if trainable:
        keep_cpu_4bit_trainable(model)
    if adapter is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
        except SafetensorError as e:
            raise UserError(f"the adapter in {adapter} is damaged ({str(e).splitlines()[0][:160]}): copy it again, "
                            f"or train again") from None
        except torch.OutOfMemoryError:  # a RuntimeError too, but not a sign of the wrong base
            raise
        except (RuntimeError, ValueError) as e:  # its layers' names or shapes are not this base's
            raise UserError(f"the adapter in {adapter} does not fit {model_id} ({str(e).splitlines()[0][:160]}): "
                            f"pass {flag(option, '…')} the base it was trained on") from None
        if merge:
            model = model.merge_and_unload()
    return model


def keep_cpu_4bit_trainable(model) -> None:
    """On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a 4-bit layer's weight for inference the first
    time it runs in eval mode, and never packs it back; the next training step then fails ("a view of a
    leaf Variable ... in-place"). An eval pass in the middle of training does exactly that, so a model
    that will be trained keeps the training layout."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
