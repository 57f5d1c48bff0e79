import json
import runpy

import pytest

from kochat import PROJECT_ROOT, checkpoints, modeling, recipe, runs, tiny
from kochat.cli import constant_names
from kochat.errors import UserError

SCRIPT = PROJECT_ROOT / "finetune_ko.py"


@pytest.fixture(scope="module")
def defaults():
    """finetune_ko.py's constants as the tiny preset sets them."""
    namespace = runpy.run_path(str(SCRIPT), run_name="not_main")
    return {**{n: namespace[n] for n in constant_names(namespace)}, **namespace["PRESETS"]["tiny"]}


@pytest.fixture(scope="module")
def tiny_config():
    return modeling.load_config(tiny.MODEL_ID)


def test_the_recipes_own_settings_pass(defaults, tiny_config):
    recipe.check_constants(defaults, tiny_config)


@pytest.mark.parametrize("change, message", [
    ({"LORA_R": -1}, "--lora_r must be at least 1, not -1"),
    ({"LORA_R": 0}, "--lora_r must be at least 1, not 0"),
    ({"LEARNING_RATE": 0.0}, "--learning_rate must be a number above 0, not 0.0"),
    ({"LEARNING_RATE": float("inf")}, "--learning_rate must be a number above 0, not inf"),
    ({"EVAL_FRACTION": 1.0}, "--eval_fraction must be a share from 0 (no eval) up to (not including) 1, not 1.0"),
    ({"EVAL_FRACTION": -0.1}, "--eval_fraction must be a share from 0"),
    ({"LORA_DROPOUT": 1.0}, "--lora_dropout must be auto or from 0 up to (not including) 1"),
    ({"LORA_DROPOUT": "some"}, "--lora_dropout must be auto or from 0 up to (not including) 1, not 'some'"),
    ({"LR_SCHEDULER": "cosin"}, "--lr_scheduler must be one of linear, cosine, "),
    ({"OPTIM": "adam"}, "--optim must be a transformers optimizer name"),
    ({"ATTENTION": "flash"}, "--attention must be one of auto, sdpa, eager, flex_attention, not 'flash'"),
    ({"BATCH_SIZE": 0}, "--batch_size must be auto or a whole number, at least 1, not 0"),
    ({"BATCH_SIZE": "1.5"}, "--batch_size must be auto or a whole number, at least 1, not '1.5'"),
    ({"MAX_STEPS": 0}, "--max_steps must be -1 (run EPOCHS) or at least 1, not 0"),
    ({"SEED": -1}, "--seed must be a whole number from 0 to 4294967295, not -1"),
    ({"SEED": 2**32}, "--seed must be a whole number from 0 to 4294967295, not 4294967296"),
    ({"SAVE_STEPS": 0}, "--save_steps must be at least 1"),
    ({"TOP_P": 0.0}, "--top_p must be above 0 and at most 1"),
    ({"TEMPERATURE": -1.0}, "--temperature must be from 0 (greedy) to 2"),
    ({"KEEP_CHECKPOINTS": 1}, "--keep_checkpoints must be at least 2"),
    ({"GRADIENT_CHECKPOINTING": 1.5}, "--gradient_checkpointing must be auto or a share of the layers, from 0 (none) to 1 (all)"),
    ({"GRADIENT_CHECKPOINTING": "true"}, "--gradient_checkpointing must be auto or a share of the layers, from 0 (none) to 1 (all), not 'true'"),
    ({"RUN_NAME": "a/b"}, "--run_name must be a folder name (--output_dir takes a path)"),
    ({"GROUNDED_DISTRACTORS": -1}, "--grounded_distractors must be 0 or more, not -1"),
    ({"MAX_LEN": 512}, "--max_len (512) is longer than --pack_tokens (256): a row must fit a sequence"),
    ({"RESUME": "/nowhere/checkpoint-5"}, "--resume=/nowhere/checkpoint-5 is not a complete checkpoint folder"),
    ({"LORA_TARGETS": ["q_proj"]}, "--lora_targets: gpt_neox has no linear layer named 'q_proj'; its linear layers are named"),
])
def test_a_value_a_library_would_refuse_is_one_line_before_anything_loads(defaults, tiny_config, change, message):
    with pytest.raises(UserError) as e:
        recipe.check_constants({**defaults, **change}, tiny_config)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_quantized_export_as_the_base_is_one_line(defaults, tiny_config):
    """A new user's trial: --model_id=<an int8 export> trained on until transformers refused it in a traceback."""
    exported = tiny_config.__class__.from_dict({**tiny_config.to_dict(),
                                                "quantization_config": {"quant_method": "torchao"}})
    with pytest.raises(UserError, match=r"is saved quantized \(torchao; an int8/int4 export is.* from a merged export"):
        recipe.check_constants(defaults, exported)
    four_bit = tiny_config.__class__.from_dict({**tiny_config.to_dict(),  # e.g. a "-bnb-4bit" model: it trains
                                                "quantization_config": {"quant_method": "bitsandbytes"}})
    recipe.check_constants(defaults, four_bit)


def test_prepare_is_steps_1_to_3_as_the_recipe_runs_them(tiny_tokenizer, koalpaca_template):
    from kochat import data

    prepared = recipe.prepare(str(tiny.DATA_FILE), tiny_tokenizer, koalpaca_template, max_chars=20_000, max_len=48,
                              eval_fraction=0.1, seed=42)
    rows, report = data.load_rows(str(tiny.DATA_FILE), data.Columns(), koalpaca_template, 20_000)
    texts = recipe.render(rows, koalpaca_template, report)
    train, held_out = recipe.split(recipe.tokenize(texts, tiny_tokenizer, 48, False, report), 0.1, 42, report)
    assert prepared.report.to_dict() == report.to_dict() and report.reasons["longer than MAX_LEN (48 tokens)"] > 0
    assert prepared.train["input_ids"] == train["input_ids"] and prepared.eval["labels"] == held_out["labels"]
    assert len(prepared.train) + len(prepared.eval) == report.kept
    with pytest.raises(UserError, match="every row is longer than MAX_LEN=4 tokens; raise --max_len"):
        recipe.prepare(str(tiny.DATA_FILE), tiny_tokenizer, koalpaca_template, max_chars=20_000, max_len=4)


def fake_run(folder, step, constants, finished):
    """A run folder as finetune_ko.py leaves it: sealed checkpoint-<step>, its settings, and the adapter if finished."""
    ckpt = folder / "checkpoints" / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 10}))
    checkpoints.seal(ckpt)
    runs.write_json(folder / "checkpoints" / runs.RUN_SETTINGS, constants)
    if finished:
        (folder / runs.ADAPTER_FILE).write_bytes(b"weights")
    return str(ckpt)


SETTINGS = {"DATA": "a.jsonl", "SAVE_STEPS": 5}
MAY_CHANGE = {"SAVE_STEPS"}


def test_resume_continues_the_same_settings_even_when_told_to_overwrite(tmp_path):
    ckpt = fake_run(tmp_path, 5, SETTINGS, finished=False)
    assert recipe.resume_point(tmp_path, {**SETTINGS, "SAVE_STEPS": 2}, "auto", False, MAY_CHANGE) == ckpt
    # starting over would end at the same adapter: the interrupted run is continued
    assert recipe.resume_point(tmp_path, SETTINGS, "auto", True, MAY_CHANGE) == ckpt


def test_overwrite_replaces_a_finished_run_or_checkpoints_of_other_settings(tmp_path):
    fake_run(tmp_path / "finished", 10, SETTINGS, finished=True)
    (tmp_path / "finished" / "mine.txt").write_text("kept")
    assert recipe.resume_point(tmp_path / "finished", SETTINGS, "auto", True, MAY_CHANGE) is None
    assert not runs.holds_finished_run(tmp_path / "finished")
    assert not (tmp_path / "finished" / "checkpoints" / "checkpoint-10").exists()
    assert (tmp_path / "finished" / "mine.txt").read_text() == "kept"

    fake_run(tmp_path / "other", 5, SETTINGS, finished=False)
    other = {**SETTINGS, "DATA": "b.jsonl"}
    with pytest.raises(UserError, match=r"other settings \(--data='a.jsonl'\); rerun with those, or --overwrite=true"):
        recipe.resume_point(tmp_path / "other", other, "auto", False, MAY_CHANGE)
    assert recipe.resume_point(tmp_path / "other", other, "auto", True, MAY_CHANGE) is None
    saved = json.loads((tmp_path / "other" / "checkpoints" / runs.RUN_SETTINGS).read_text())
    assert saved == other  # the new run's settings are recorded for its own checkpoints


def test_the_callbacks_are_one_list_with_the_two_the_script_reads(tmp_path):
    from transformers.integrations import TensorBoardCallback

    callbacks = recipe.Callbacks(tmp_path / "logs", process_start=0.0)
    kinds = [type(c) for c in callbacks]
    assert kinds == [TensorBoardCallback, recipe.StepTimer, checkpoints.SealCheckpoints, checkpoints.StopOnSignal]
    assert callbacks.step_timer is callbacks[1] and callbacks.stop is callbacks[3]


@pytest.mark.parametrize("targets, dropout", [
    (["query_key_value"], 0.05), (["q_proj", "v_proj"], 0.0), ("all-linear", 0.0),
    (r"model\.language_model\.layers\.\d+\.self_attn\.q_proj", 0.05),  # a pattern (Gemma 3): one module a block
    (r"model\.language_model\.layers\.\d+\.self_attn\.q_proj|model\.language_model\.layers\.\d+\.mlp\.up_proj", 0.0)])
def test_auto_lora_dropout_is_the_recipes_on_one_module_a_block_and_none_on_several(targets, dropout):
    assert recipe.lora_dropout("auto", targets) == dropout
    assert recipe.lora_dropout("0.1", targets) == 0.1  # as the command line gives it
    assert recipe.adapts_several(targets) == (dropout == 0)  # auto BATCH_SIZE: 2 where several, if they fit
