import subprocess
import sys
from pathlib import Path

import pytest

from kochat.cli import (apply_command_line, auto_or_bool, constant_comments, constant_names, flag, parse_value,
                        require)
from kochat.errors import UserError

SCRIPT = Path(__file__).resolve().parent.parent / "finetune_ko.py"


def constants():
    return {"MODEL_ID": "m", "MAX_STEPS": -1, "LEARNING_RATE": 1e-4, "OVERWRITE": False, "OUTPUT_DIR": None,
            "LORA_TARGETS": ["query_key_value"], "PRESETS": {"x": {}}, "lower": 1}


def apply(argv, namespace=None, presets=None):
    namespace = namespace if namespace is not None else constants()
    given = apply_command_line(namespace, argv, presets or {"tiny": {"MAX_STEPS": 60, "MODEL_ID": "tiny"}},
                               {"dry-run": "no weights"}, SCRIPT, "about")
    return namespace, given


def test_constant_names_are_the_plain_upper_case_globals():
    assert constant_names(constants()) == ["MODEL_ID", "MAX_STEPS", "LEARNING_RATE", "OVERWRITE", "OUTPUT_DIR",
                                           "LORA_TARGETS"]


def test_overrides_take_the_type_of_the_default():
    ns, given = apply(["--max_steps=50", "--learning_rate", "3e-4", "--overwrite=true", "--output_dir=/tmp/x",
                       "--lora_targets=query_key_value,dense", "--model_id=/models/polyglot-ko-5.8b"])
    assert ns["MAX_STEPS"] == 50 and isinstance(ns["MAX_STEPS"], int)
    assert ns["LEARNING_RATE"] == 3e-4
    assert ns["OVERWRITE"] is True
    assert ns["OUTPUT_DIR"] == "/tmp/x"
    assert ns["LORA_TARGETS"] == ["query_key_value", "dense"]
    assert ns["MODEL_ID"] == "/models/polyglot-ko-5.8b"
    assert given == {"constants": {"MAX_STEPS", "LEARNING_RATE", "OVERWRITE", "OUTPUT_DIR", "LORA_TARGETS", "MODEL_ID"}}


def test_preset_applies_first_and_explicit_overrides_win():
    ns, given = apply(["--max_steps=5", "--preset", "tiny", "--dry_run"])  # --dry_run spells --dry-run too
    assert ns["MODEL_ID"] == "tiny" and ns["MAX_STEPS"] == 5
    assert given == {"preset": "tiny", "dry-run": True, "constants": {"MAX_STEPS"}}  # the preset's are not given


@pytest.mark.parametrize("argv, message", [
    (["--max_stpes=3"], "unknown option --max_stpes (did you mean --max_steps?)"),
    (["--lr=3e-4"], "unknown option --lr (did you mean --learning_rate?)"),
    (["--max_steps=abc"], "--max_steps expects a whole number (default -1), got 'abc'"),
    (["--learning_rate=fast"], "--learning_rate expects a number"),
    (["--overwrite=maybe"], "--overwrite expects true or false"),
    (["--preset=huge"], "unknown preset 'huge'; presets: tiny"),
    (["--dry-run=yes"], "--dry-run takes no value"),
    (["--bogus"], "unknown option --bogus"),  # not "--bogus needs a value"
    (["--max_steps"], "--max_steps needs a value"),
    (["max_steps=3"], "unexpected argument 'max_steps=3': did you mean --max_steps=3? (options are --name=value"),
    (["-max_steps=3"], "did you mean --max_steps=3?"),
    (["—max_steps=3"], "did you mean --max_steps=3?"),  # the long dash a word processor makes of "--"
    (["output_dir=/tmp/my run"], "did you mean --output_dir='/tmp/my run'?"),  # quoted for the shell
    (["/models/polyglot"], "options are --name=value, e.g. --model_id=… (see --help)"),  # no guess at a value
])
def test_bad_command_lines_are_one_clear_line(argv, message):
    with pytest.raises(UserError) as e:
        apply(argv)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_option_lists_the_valid_names():
    with pytest.raises(UserError, match="valid: --model_id, --max_steps, --learning_rate"):
        apply(["--nope=1"])


def test_a_preset_with_a_typo_is_refused():
    with pytest.raises(UserError, match="sets unknown constants: MAX_STEP"):
        apply(["--preset=bad"], presets={"bad": {"MAX_STEP": 3}})


def test_help_lists_constants_with_their_comments(capsys):
    with pytest.raises(SystemExit):
        apply(["--help"], namespace={"MAX_STEPS": -1, "DATA": "x"})
    out = capsys.readouterr().out
    assert "--max_steps" in out and "optimizer updates to run; -1 = EPOCHS" in out
    assert "--preset tiny" in out and "--dry-run" in out


@pytest.mark.parametrize("script", ["finetune_ko.py", "chat_ko.py", "serve_ko.py", "index_ko.py", "eval_ko.py",
                                    "export_ko.py"])
def test_every_option_of_an_entry_script_is_a_commented_constant_of_its_block(script):
    """What --help lists and --name=value sets: an upper-case name imported or used inside the script (chat_ko.py's
    CHAT_TEMPLATE and COMMANDS were) is no option."""
    import runpy

    path = SCRIPT.parent / script
    namespace = runpy.run_path(str(path), run_name="not_main")
    assert set(constant_names(namespace)) <= set(constant_comments(path))


def test_parse_value_keeps_text_verbatim():
    assert parse_value("DATA", "./my qa.csv", "x") == "./my qa.csv"
    assert parse_value("DATA", "'quoted'", "x") == "quoted"
    assert parse_value("OUTPUT_DIR", "None", None) is None
    assert parse_value("MAX_STEPS", "1_000", 1) == 1000


def test_list_constants_accumulate_when_repeated_and_hyphens_work():
    ns, _ = apply(["--lora-targets", "query_key_value", "--lora_targets=dense,dense_h_to_4h"])
    assert ns["LORA_TARGETS"] == ["query_key_value", "dense", "dense_h_to_4h"]


def test_a_script_without_presets_never_offers_preset(capsys):
    def chat_like(argv):
        return apply_command_line({"ADAPTER": "x", "MAX_TURNS": 8}, argv, {}, {}, SCRIPT, "about")

    with pytest.raises(UserError) as e:
        chat_like(["--presett=tiny"])
    assert "--preset" not in str(e.value).replace("--presett", "") and "valid: --adapter, --max_turns" in str(e.value)
    with pytest.raises(UserError, match="unknown option --preset; valid: --adapter, --max_turns$"):
        chat_like(["--preset", "tiny"])
    with pytest.raises(SystemExit):
        chat_like(["--help"])
    assert "--preset" not in capsys.readouterr().out


def test_flag_is_how_error_texts_name_a_constant():
    assert flag("OVERWRITE", "true") == "--overwrite=true"
    assert flag("LORA_TARGETS") == "--lora_targets"


def test_the_constants_a_resume_may_change_are_data_of_the_script_not_knobs():
    import runpy

    namespace = runpy.run_path(str(SCRIPT), run_name="not_main")
    names = constant_names(namespace)
    assert "RESUME_MAY_CHANGE" not in names
    assert namespace["RESUME_MAY_CHANGE"] <= set(names)  # a typo there would let nothing change
    assert {"DATA", "MODEL_ID", "LORA_R", "LEARNING_RATE", "TEMPLATE", "SEED"}.isdisjoint(namespace["RESUME_MAY_CHANGE"])


def test_required_constants_left_empty_are_named_in_one_line():
    require({"MODEL": "m", "OUT": "x"}, "MODEL", "OUT")
    with pytest.raises(UserError, match=r"^--out=… is required \(see --help\)$"):
        require({"MODEL": "m", "OUT": ""}, "MODEL", "OUT")


def test_help_reads_a_comment_continued_on_the_lines_under_its_constant():
    comments = constant_comments(SCRIPT)
    assert comments["LORA_TARGETS"].startswith("auto: query_key_value for GPT-NeoX") and \
        comments["LORA_TARGETS"].endswith("or names: a,b,c; all-linear")
    assert comments["MAX_LEN"] == "rows (conversations) longer than this many tokens are skipped, never cut"


def test_auto_or_bool_reads_fast_before_anything_loads():
    assert auto_or_bool("FAST", "auto") is None and auto_or_bool("FAST", " AUTO ") is None
    assert auto_or_bool("FAST", "true") is True and auto_or_bool("FAST", False) is False
    with pytest.raises(UserError, match=r"--fast is auto, true or false, not 'maybe'"):
        auto_or_bool("FAST", "maybe")


def test_output_read_only_in_part_ends_quietly():
    """`chat_ko.py --help | head -1` ended in a BrokenPipeError traceback (from an HR admin's trial)."""
    proc = subprocess.Popen([sys.executable, str(SCRIPT.parent / "chat_ko.py"), "--help"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the script writes
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 141 and stderr == ""


def test_index_ko_marks_questions_by_the_relevance_chat_and_serve_answer_from():
    import runpy

    constants = {script: runpy.run_path(str(SCRIPT.parent / script), run_name="not_main")
                 for script in ("index_ko.py", "chat_ko.py", "serve_ko.py")}
    assert len({c["MIN_RELEVANCE"] for c in constants.values()}) == 1
    assert constants["index_ko.py"]["ANSWER_TOP_K"] == constants["chat_ko.py"]["TOP_K"] == constants["serve_ko.py"]["TOP_K"]


def test_a_broken_pipe_other_than_standard_output_is_not_hidden(monkeypatch):
    """Review: a worker's pipe breaking ended silently with 141 as if a reader had gone."""
    from kochat import cli

    def main(argv):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr(sys, "argv", ["x"])
    with pytest.raises(BrokenPipeError):  # standard output (pytest's capture) is fine: not hidden
        cli.run(main)
