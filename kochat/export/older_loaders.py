"""A merged folder that loaders still on transformers 4 read as the same model (vLLM and TGI releases pinned to it).

transformers 5 saves a config in its own form: the rotary settings inside `rope_parameters`, `dtype`, and the
tokenizer's class as `TokenizersBackend`. transformers 4 knows none of them: it takes each model type's defaults
instead, silently (GPT-NeoX's rotary share 0.25 where polyglot-ko's is 0.5, Qwen3's rotary base 10,000 where it is
1,000,000, Gemma 3 without its 8× scaling), and it refuses the tokenizer (its class, and its extra special tokens as
a list). So the merged folder's config.json also carries the base's own config.json (as its authors wrote it for
every loader; its sub-configs too) and the older names read from the newer ones where the base has none, and the
tokenizer's config takes transformers 4's names. transformers 5 reads both forms, and the rewrite is kept only
where transformers 5 then reads the very config it saved (else the older names alone, else nothing is changed).
Checked with transformers 4.57.1 on the tiny runs' merged folders (GPT-NeoX, Qwen3): the same logits and token ids
as transformers 5.23 (bench/results/2026-12-03-cpu-transformers4/).
"""
import json
from pathlib import Path

from ..runs import write_json

# transformers 4's names for what transformers 5 keeps in rope_parameters, by model type (others: rope_theta)
ROTARY_KEYS = {"gpt_neox": {"rope_theta": "rotary_emb_base", "partial_rotary_factor": "rotary_pct"}}
LAYER_TYPE_BASES = {"full_attention": "rope_theta", "sliding_attention": "rope_local_base_freq"}  # Gemma 3's in 4
NEVER_FROM_BASE = ("quantization_config", "auto_map")  # the merged weights are not quantized; kochat runs no code
NEW_TOKENIZER_CLASS, OLD_TOKENIZER_CLASS = "TokenizersBackend", "PreTrainedTokenizerFast"  # one class in 5


def older_keys(config: dict) -> dict:
    """transformers 4's keys for what `config` (one config, as transformers 5 saved it) holds in its own form."""
    keys = {"torch_dtype": config["dtype"]} if config.get("dtype") else {}
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict):
        return keys
    if "rope_theta" in rope:
        names = ROTARY_KEYS.get(config.get("model_type"), {"rope_theta": "rope_theta"})
        keys.update({old: rope[new] for new, old in names.items() if new in rope})
        scaled = rope
    else:  # one per layer type (Gemma 3): 4 named the full attention's base and the sliding window's apart
        keys.update({old: rope[kind]["rope_theta"] for kind, old in LAYER_TYPE_BASES.items()
                     if "rope_theta" in rope.get(kind, {})})
        scaled = rope.get("full_attention", {})
    if scaled.get("rope_type", "default") != "default":  # scaled (Llama 3.1's llama3, Gemma 3's linear): 4's form
        keys["rope_scaling"] = {k: v for k, v in scaled.items() if k not in ("rope_theta", "partial_rotary_factor")}
    return keys


def with_older_keys(saved: dict, base: dict) -> dict:
    """`saved` over the base's keys and the older names, in each sub-config (a dict with a model_type) too."""
    config = {**older_keys(saved), **{k: v for k, v in base.items() if k not in NEVER_FROM_BASE}, **saved}
    for key, value in saved.items():
        if isinstance(value, dict) and "model_type" in value:
            config[key] = with_older_keys(value, base.get(key) if isinstance(base.get(key), dict) else {})
    return config


def same_config(saved: dict, read: dict) -> bool:
    """Whether `read` (AutoConfig's to_dict) holds every setting of `saved` unchanged; keys it adds (a base's keys
    transformers 5 does not use) are allowed, at the top and in sub-configs, not inside a setting's value."""
    return all(key in read and (same_config(value, read[key]) if isinstance(value, dict) and "model_type" in value
                                else read[key] == value) for key, value in saved.items())


def base_config(base_source: str) -> dict:
    """The base's own config.json (a folder, or a hub id in the local cache); {} where it cannot be read."""
    from transformers.utils import cached_file

    try:
        path = Path(base_source) / "config.json" if Path(base_source).is_dir() else cached_file(base_source,
                                                                                                 "config.json")
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return {}


def write_for_older_loaders(folder: Path, base_source: str) -> None:
    """Rewrite `folder`'s config.json (and tokenizer_config.json) as saved by transformers 5 so that transformers
    4 reads the same model: the base's keys and the older names added, where transformers 5 still reads the same."""
    from transformers import AutoConfig

    path = folder / "config.json"
    saved = json.loads(path.read_text(encoding="utf-8"))
    reference = AutoConfig.from_pretrained(folder).to_dict()
    for config in (with_older_keys(saved, base_config(base_source)), with_older_keys(saved, {}), saved):
        write_json(path, config)
        if config is saved or same_config(reference, AutoConfig.from_pretrained(folder).to_dict()):
            break
    path = folder / "tokenizer_config.json"
    if path.is_file():
        tokenizer = json.loads(path.read_text(encoding="utf-8"))
        if tokenizer.get("tokenizer_class") == NEW_TOKENIZER_CLASS:
            tokenizer["tokenizer_class"] = OLD_TOKENIZER_CLASS
        if isinstance(tokenizer.get("extra_special_tokens"), list):  # 4 takes a list under the older name only
            tokenizer["additional_special_tokens"] = tokenizer.pop("extra_special_tokens")
        write_json(path, tokenizer)
