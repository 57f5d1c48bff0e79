"""Base models --dry-run knows without a download: their config (from each model's config.json) and what
their licence allows (from each model card). Other models work the same way from their own folder or hub id.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownModel:
    config: dict      # AutoConfig.for_model(config["model_type"], **rest)
    licence: str      # the licence's name
    commercial: bool  # whether a company may use it commercially
    terms: str        # the conditions worth knowing, in a few words
    note: str = ""    # how the shape is counted, where that differs from loading the model


# polyglot-ko sizes, from the model cards (12.8b also in ../shared/data).
_POLYGLOT_KO = dict(model_type="gpt_neox", architectures=["GPTNeoXForCausalLM"], vocab_size=30080,
                    max_position_embeddings=2048, rotary_pct=0.5, rotary_emb_base=10000, layer_norm_eps=1e-5,
                    hidden_act="gelu", use_parallel_residual=True, tie_word_embeddings=False)
_APACHE = dict(licence="Apache-2.0", commercial=True, terms="keep the licence and notices")
# Llama-architecture shapes: Llama 3.1 itself, and models built on its layout.
_LLAMA = dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_act="silu", rms_norm_eps=1e-5,
              hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
              tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
_QWEN3 = dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"], vocab_size=151936, head_dim=128,
              num_key_value_heads=8, hidden_act="silu", rms_norm_eps=1e-6, rope_theta=1000000,
              max_position_embeddings=40960, tie_word_embeddings=False, attention_bias=False)

KNOWN_MODELS = {
    "EleutherAI/polyglot-ko-1.3b": KnownModel(dict(_POLYGLOT_KO, hidden_size=2048, num_hidden_layers=24,
                                                   num_attention_heads=16, intermediate_size=8192), **_APACHE),
    "EleutherAI/polyglot-ko-3.8b": KnownModel(dict(_POLYGLOT_KO, hidden_size=3072, num_hidden_layers=32,
                                                   num_attention_heads=24, intermediate_size=12288), **_APACHE),
    "EleutherAI/polyglot-ko-5.8b": KnownModel(dict(_POLYGLOT_KO, hidden_size=4096, num_hidden_layers=28,
                                                   num_attention_heads=16, intermediate_size=16384), **_APACHE),
    "EleutherAI/polyglot-ko-12.8b": KnownModel(dict(_POLYGLOT_KO, hidden_size=5120, num_hidden_layers=40,
                                                    num_attention_heads=40, intermediate_size=20480), **_APACHE),
    "Qwen/Qwen3-8B": KnownModel(dict(_QWEN3, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                                     num_attention_heads=32), **_APACHE),
    "Qwen/Qwen3-14B": KnownModel(dict(_QWEN3, hidden_size=5120, intermediate_size=17408, num_hidden_layers=40,
                                      num_attention_heads=40), **_APACHE),
    "kakaocorp/kanana-1.5-8b-instruct-2505": KnownModel(
        dict(_LLAMA, vocab_size=128256, num_hidden_layers=32, max_position_embeddings=32768, rope_theta=8000000),
        **_APACHE),
    "meta-llama/Llama-3.1-8B": KnownModel(
        dict(_LLAMA, vocab_size=128256, num_hidden_layers=32, max_position_embeddings=131072, rope_theta=500000,
             rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                               original_max_position_embeddings=8192)),
        licence="Llama 3.1 Community License", commercial=True,
        terms="over 700 million monthly users needs Meta's permission; show 'Built with Llama'; acceptable use policy"),
    "LGAI-EXAONE/EXAONE-3.5-7.8B-Instruct": KnownModel(
        dict(_LLAMA, vocab_size=102400, num_hidden_layers=32, max_position_embeddings=32768, rope_theta=1000000),
        licence="EXAONE AI Model License 1.1 - NC", commercial=False, terms="research and non-commercial use only",
        note="its own code (trust_remote_code), which kochat does not run; counted here as the Llama layout it "
             "shares, as a converted ('llamafied') copy loads"),
    "upstage/SOLAR-10.7B-v1.0": KnownModel(
        dict(_LLAMA, vocab_size=32000, num_hidden_layers=48, max_position_embeddings=4096, rope_theta=10000),
        licence="Apache-2.0", commercial=True, terms="the base model; SOLAR-10.7B-Instruct is CC-BY-NC-4.0 (no)"),
    "google/gemma-3-12b-pt": KnownModel(
        dict(model_type="gemma3", architectures=["Gemma3ForConditionalGeneration"], mm_tokens_per_image=256,
             text_config=dict(hidden_size=3840, intermediate_size=15360, num_hidden_layers=48, num_attention_heads=16,
                              num_key_value_heads=8, head_dim=256, vocab_size=262208, query_pre_attn_scalar=256,
                              sliding_window=1024, rope_theta=1000000, max_position_embeddings=131072,
                              rope_scaling=dict(rope_type="linear", factor=8.0)),
             vision_config=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                                image_size=896, patch_size=14, vision_use_head=False)),
        licence="Gemma Terms of Use", commercial=True, terms="Gemma prohibited use policy; pass the terms on",
        note="the whole model, its vision tower included, as AutoModelForCausalLM loads it; LoRA adapts the "
             "language model only"),
}

# Instruction-tuned (or pretrained) siblings of the same shape: their config.json differs only in token ids.
KNOWN_MODELS["meta-llama/Llama-3.1-8B-Instruct"] = KNOWN_MODELS["meta-llama/Llama-3.1-8B"]
KNOWN_MODELS["google/gemma-3-12b-it"] = KNOWN_MODELS["google/gemma-3-12b-pt"]
KNOWN_MODELS["upstage/SOLAR-10.7B-Instruct-v1.0"] = KnownModel(
    KNOWN_MODELS["upstage/SOLAR-10.7B-v1.0"].config, licence="CC-BY-NC-4.0", commercial=False,
    terms="non-commercial use only, with attribution; the base model SOLAR-10.7B-v1.0 is Apache-2.0")


def licence_line(model_id: str) -> str:
    """What the model's licence allows, in one line; for an unknown model, where to look."""
    known = KNOWN_MODELS.get(model_id)
    if known is None:
        return "licence: not in kochat's table; read the model card before any commercial use"
    allowed = "commercial use allowed" if known.commercial else "NO commercial use"
    return f"licence: {known.licence}, {allowed} ({known.terms})"
