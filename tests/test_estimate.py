import pytest
from peft import LoraConfig

import finetune_ko as defaults  # the recipe's default settings: its constants block
from kochat import estimate, modeling, recipe
from support import POLYGLOT_12P8B_CONFIG, needs_shared_data

ONE, DDP2 = estimate.ONE_PROCESS, estimate.Launch(2, "ddp")


def recipe_lora(config):  # a fresh one each time: get_peft_model writes the base model's name into it
    targets = modeling.lora_targets(config, defaults.LORA_TARGETS)
    return LoraConfig(r=defaults.LORA_R, lora_alpha=defaults.LORA_ALPHA, target_modules=targets, task_type="CAUSAL_LM",
                      lora_dropout=recipe.lora_dropout(defaults.LORA_DROPOUT, targets))


def counts_for(model_id):
    config = modeling.load_config(model_id, use_known_table=True)
    model, would_quantize = estimate.meta_model_with_lora(config, recipe_lora(config))
    return config, estimate.count_parameters(model, would_quantize)


def test_12p8b_gives_the_koalpaca_recipe_figure_from_the_known_table():
    _, counts = counts_for("EleutherAI/polyglot-ko-12.8b")
    assert counts.trainable == 6_553_600
    assert counts.stored == 6_608_701_440  # what the KoAlpaca QLoRA notebook printed as "all params"
    assert counts.total == 12_900_157_440
    assert "trainable params: 6,553,600 || all params: 6,608,701,440 || trainable%: 0.0992" in counts.line()


@needs_shared_data
def test_12p8b_figure_from_the_real_config_file():
    _, counts = counts_for(str(POLYGLOT_12P8B_CONFIG))
    assert counts.trainable == 6_553_600 and round(100 * counts.trainable / counts.stored, 3) == 0.099


def test_counts_of_a_loaded_4bit_model_match_the_meta_estimate(tiny_tokenizer):
    from peft import get_peft_model
    from kochat import tiny

    config, meta_counts = counts_for(tiny.MODEL_ID)
    model = get_peft_model(modeling.load_model(tiny.MODEL_ID, tiny_tokenizer), recipe_lora(config))
    loaded = estimate.count_parameters(model)
    assert (loaded.trainable, loaded.total, loaded.quantized) == \
           (meta_counts.trainable, meta_counts.total, meta_counts.quantized)


def test_memory_estimate_for_the_recipe_fits_a_24gb_card_and_grows_with_tokens():
    config, counts = counts_for("EleutherAI/polyglot-ko-12.8b")
    seed = estimate.estimate_training_gib(config, counts, 2, 600, True, "paged_adamw_8bit")
    assert 6.0 < seed["4-bit weights"] < 6.1  # 12.58 B weights at ~0.516 bytes
    # peaks measured on an H200 at this shape (bench/results/2026-11-28-h200-speed): estimates within 10 %
    # (and bench/results/2026-11-28-h200-profile): (batch, tokens, share checkpointed, compiled, measured GiB)
    for batch, tokens, share, compiled, measured in [
            (2, 600, 1, False, 8.76), (1, 4096, 1, False, 12.19), (1, 8192, 1, False, 16.82),
            (1, 4096, 0, False, 34.56), (1, 4096, 0.5, False, 22.74), (1, 4096, 1, True, 12.18),
            (1, 4096, 0.5, True, 19.62)]:
        parts = estimate.estimate_training_gib(config, counts, batch, tokens, share, "paged_adamw_8bit", compiled)
        assert abs(sum(parts.values()) - measured) / measured < 0.1, (batch, tokens, share, compiled)
    big = estimate.estimate_training_gib(config, counts, 16, 1024, 0, "adamw_torch")
    assert sum(big.values()) > 2 * sum(seed.values())
    lines = estimate.report("m", config, counts, 1, 4096, 0.5, "paged_adamw_8bit", compiled=True)
    assert lines[-2].startswith("fits a 24 GB card") and lines[-1].startswith("licence: not in kochat's table")
    assert estimate.report("m", config, counts, 16, 2048, 0, "adamw_torch")[-2].startswith("does NOT fit")
    chunked = estimate.estimate_training_gib(config, counts, 1, 4096, 0.5, "paged_adamw_8bit", True, loss_chunk=1024)
    measured_since = estimate.estimate_training_gib(config, counts, 1, 4096, 0.5, "paged_adamw_8bit", True, 1024)
    assert abs(sum(measured_since.values()) - 17.82) / 17.82 < 0.1  # 16-bit embeddings, chunked loss (2026-11-29)
    assert chunked["logits and loss"] == pytest.approx(parts["logits and loss"] / 4)


def test_memory_estimate_at_the_qwen3_8b_shape_is_within_6_percent_of_the_h200():
    """A gated MLP and LoRA on all 7 linear layers keep about twice GPT-NeoX's activations a layer
    (bench/results/2026-11-29-h200-qwen3-8b, 2026-11-30-qwen3-8b): (LoRA dropout, share checkpointed, LOSS_CHUNK,
    measured GiB)."""
    config = modeling.known_config("Qwen/Qwen3-8B")
    for dropout, share, chunk, measured in [(0.05, 0.5, 0, 32.86), (0.0, 0.5, 0, 28.08), (0.0, 1.0, 0, 15.09),
                                            (0.05, 0.5, 1024, 27.77), (0.0, 0.5, 1024, 22.97),
                                            (0.0, 0.6, 1024, 20.10), (0.0, 0.55, 1024, 21.55)]:
        lora = LoraConfig(r=8, lora_dropout=dropout, target_modules=modeling.lora_targets(config, "auto"))
        counts = estimate.count_parameters(*estimate.meta_model_with_lora(config, lora))
        parts = estimate.estimate_training_gib(config, counts, 1, 4096, share, "paged_adamw_8bit", True, chunk, dropout)
        assert abs(sum(parts.values()) - measured) / measured < 0.06, (dropout, share, chunk)


@pytest.mark.parametrize("model_id, launch, dropout, batch, share", [
    ("EleutherAI/polyglot-ko-12.8b", ONE, 0.05, 1, 0.5),  # the KoAlpaca recipe, unchanged: 18.7 GiB measured
    ("Qwen/Qwen3-8B", ONE, 0.0, 2, 0.85),   # 19.62 GiB measured (2026-12-01); at batch 1, 0.55: 21.55
    ("Qwen/Qwen3-8B", DDP2, 0.0, 1, 0.75),  # batch 2 fits no share on each of 2 GPUs (the full logits): 1
    ("Qwen/Qwen3-14B", ONE, 0.0, 2, 0.95)])
def test_auto_dropout_batch_and_checkpointing_fit_a_24gb_card(model_id, launch, dropout, batch, share):
    config = modeling.load_config(model_id, use_known_table=True)
    targets = modeling.lora_targets(config, "auto")
    lora = LoraConfig(r=8, target_modules=targets, lora_dropout=recipe.lora_dropout("auto", targets))
    counts = estimate.count_parameters(*estimate.meta_model_with_lora(config, lora))
    settings = dict(seq_len=4096, optim="paged_adamw_8bit", compiled=True, loss_chunk=1024,
                    lora_dropout=lora.lora_dropout, launch=launch)
    chosen_batch = recipe.batch_size("auto", targets, config, counts, **settings)
    chosen = recipe.checkpointing_share("auto", config, counts, batch=chosen_batch, **settings)
    assert (lora.lora_dropout, chosen_batch, chosen) == (dropout, batch, share)
    fits = sum(estimate.estimate_training_gib(config, counts, chosen_batch, 4096, chosen, "paged_adamw_8bit", True,
                                              1024, dropout, launch).values())
    assert fits <= estimate.FITS_GIB
    assert recipe.checkpointing_share("0.3", config, counts, batch=1, **settings) == 0.3  # a number is kept as given
    assert recipe.batch_size("3", targets, config, counts, **settings) == 3  # as the command line gives it
    assert recipe.lora_dropout(0.1, targets) == 0.1


def test_per_gpu_estimate_under_several_processes():
    """DDP: each GPU holds the whole model and keeps transformers' loss (full logits); FSDP: a share of the
    weights plus the layers being gathered, no compiled layers, adamw_torch for the LoRA."""
    from kochat.processes import Launch

    config, counts = counts_for("EleutherAI/polyglot-ko-12.8b")
    one = estimate.estimate_training_gib(config, counts, 1, 4096, 1.0, "paged_adamw_8bit", True, 1024)
    ddp = estimate.estimate_training_gib(config, counts, 1, 4096, 1.0, "paged_adamw_8bit", True, 1024,
                                         launch=Launch(2, "ddp"))
    assert ddp["4-bit weights"] == one["4-bit weights"] and ddp["logits and loss"] == pytest.approx(4 * one["logits and loss"])
    fsdp2, fsdp4 = (estimate.estimate_training_gib(config, counts, 1, 4096, 1.0, "paged_adamw_8bit", True, 1024,
                                                   launch=Launch(n, "fsdp")) for n in (2, 4))
    layer = one["4-bit weights"] / 40
    assert fsdp2["4-bit weights"] == pytest.approx(one["4-bit weights"] / 2 + 2 * layer)
    assert fsdp4["4-bit weights"] < fsdp2["4-bit weights"] and fsdp2["activations"] > one["activations"]  # eager
    assert sum(fsdp2.values()) < 16  # the target for FSDP-QLoRA at this shape, all layers checkpointed
    line = estimate.report("m", config, counts, 1, 4096, 1.0, "paged_adamw_8bit", compiled=True,
                           launch=Launch(2, "fsdp"))[3]
    assert line.endswith("on each of 2 GPUs (fsdp)") and "adamw_torch" in line and "compiled" not in line

