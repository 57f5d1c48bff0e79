"""--dry-run's known shapes: each config counted as PEFT counts it, against the model cards' sizes."""
import pytest
import torch
from peft import LoraConfig

from kochat import estimate, modeling
from kochat.errors import UserError
from kochat.known_models import KNOWN_MODELS, licence_line

# parameters as the model cards state them (billions)
PUBLISHED = {"EleutherAI/polyglot-ko-1.3b": 1.3, "EleutherAI/polyglot-ko-3.8b": 3.8, "EleutherAI/polyglot-ko-5.8b": 5.9,
             "EleutherAI/polyglot-ko-12.8b": 12.9, "Qwen/Qwen3-8B": 8.2, "Qwen/Qwen3-14B": 14.8,
             "kakaocorp/kanana-1.5-8b-instruct-2505": 8.0, "meta-llama/Llama-3.1-8B": 8.0,
             "LGAI-EXAONE/EXAONE-3.5-7.8B-Instruct": 7.8, "upstage/SOLAR-10.7B-v1.0": 10.7,
             "google/gemma-3-12b-pt": 12.2, "meta-llama/Llama-3.1-8B-Instruct": 8.0, "google/gemma-3-12b-it": 12.2,
             "upstage/SOLAR-10.7B-Instruct-v1.0": 10.7}
NON_COMMERCIAL = {"LGAI-EXAONE/EXAONE-3.5-7.8B-Instruct", "upstage/SOLAR-10.7B-Instruct-v1.0"}


@pytest.mark.parametrize("model_id", KNOWN_MODELS)
def test_each_known_shape_counts_as_its_model_card_says(model_id):
    config = modeling.known_config(model_id)
    targets = modeling.lora_targets(config, "auto")
    meta, would_quantize = estimate.meta_model_with_lora(config, LoraConfig(r=8, target_modules=targets))
    counts = estimate.count_parameters(meta, would_quantize)
    assert counts.total / 1e9 == pytest.approx(PUBLISHED[model_id], abs=0.1)
    # the trainable count from the model's own layers: r × (in + out) for each adapted linear layer
    plain = modeling.build_on_meta(config)
    adapted = [m for m in modeling.language_layers(plain) for m in m.modules() if isinstance(m, torch.nn.Linear)]
    if config.model_type == "gpt_neox":
        adapted = [m for layer in modeling.language_layers(plain) for m in [layer.attention.query_key_value]]
    assert counts.trainable == sum(8 * (m.in_features + m.out_features) for m in adapted)
    lines = estimate.report(model_id, config, counts, 1, 4096, 0.5, "paged_adamw_8bit", compiled=True)
    assert lines[-1 if not KNOWN_MODELS[model_id].note else -2] == licence_line(model_id)
    assert ("NO commercial use" in licence_line(model_id)) == (model_id in NON_COMMERCIAL)


def test_gemma_3s_vision_language_model_is_read_and_trained_as_its_text_model(tiny_tokenizer):
    """Gemma 3's checkpoint holds a vision tower beside its language model, and its config's sizes are its text
    config's: the tokenizer check, the context length, the layers checkpointed and a LoRA name found only in the
    tower are the language model's."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    gemma = modeling.known_config("google/gemma-3-12b-pt")
    modeling.check_tokenizer_fits(tiny_tokenizer, gemma)
    assert modeling.context_length(gemma) == 131_072
    model = modeling.build_on_meta(gemma)
    language = modeling.language_layers(model)
    tower = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m not in language]
    assert len(language) == 48 and tower  # the tower's 27 come first in the model's modules
    assert modeling.checkpoint_layers(model, 0.5) == 24
    assert [layer.gradient_checkpointing for layer in language] == [True] * 24 + [False] * 24
    assert not any(layer.gradient_checkpointing for layer in tower)
    with pytest.raises(UserError, match=r"--lora_targets: 'fc1' name only layers outside gemma3's decoder layers, "
                                        r"which text training never runs; its decoder layers' linear layers are named "
                                        r"q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj \(or pass "
                                        r"auto or all-linear\)$"):
        modeling.lora_targets(gemma, "fc1")


def test_the_seed_figure_is_unchanged_and_a_vision_tower_gets_no_adapter():
    config = modeling.known_config("EleutherAI/polyglot-ko-12.8b")
    meta, _ = estimate.meta_model_with_lora(config, LoraConfig(r=8, target_modules=modeling.lora_targets(config, "auto")))
    assert estimate.count_parameters(meta).trainable == 6_553_600
    gemma = modeling.known_config("google/gemma-3-12b-pt")
    for choice, per_layer in [("auto", 7), ("all-linear", 7), ("q_proj,v_proj", 2)]:  # the tower has q_proj too
        lora = LoraConfig(r=8, target_modules=modeling.lora_targets(gemma, choice))
        meta, _ = estimate.meta_model_with_lora(gemma, lora)
        adapted = {name.split(".lora_A")[0] for name, _ in meta.named_parameters() if ".lora_A" in name}
        assert len(adapted) == 48 * per_layer and all(".language_model.layers." in name for name in adapted), choice
