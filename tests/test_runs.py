import os

import pytest

from kochat import runs
from kochat.errors import UserError


def test_a_finished_run_is_not_overwritten_silently(tmp_path):
    run = tmp_path / "run"
    assert runs.prepare_output_dir(str(run), overwrite=False) == run
    assert not run.exists()  # nothing is created before there is something to save
    run.mkdir()
    (run / runs.ADAPTER_FILE).write_bytes(b"weights")
    with pytest.raises(UserError, match="already holds a finished run; pass --run_name=<new name>"):
        runs.prepare_output_dir(str(run), overwrite=False)
    assert runs.prepare_output_dir(str(run), overwrite=True) == run
    assert (run / runs.ADAPTER_FILE).read_bytes() == b"weights"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_output_folder_is_refused_before_training(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(UserError, match="cannot write the output folder"):
        runs.prepare_output_dir(str(locked / "run"), overwrite=False)


def test_a_file_in_the_way_of_the_output_folder_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is not a writable folder"):
        runs.prepare_output_dir(str(tmp_path / "file" / "run"), overwrite=False)


def test_loss_plot_is_a_png(tmp_path):
    history = [{"step": 5, "loss": 2.5}, {"step": 10, "loss": 2.1}, {"step": 10, "eval_loss": 2.3}]
    runs.plot_loss(history, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_json_leaves_no_temporary_file(tmp_path):
    runs.write_json(tmp_path / "a.json", {"한글": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert "한글" in (tmp_path / "a.json").read_text(encoding="utf-8")


def test_open_run_reads_an_adapter_run_and_a_merged_folder(tmp_path, koalpaca_template, tiny_tokenizer):
    from kochat import modeling, tiny

    run = tmp_path / "run"
    run.mkdir()
    runs.write_json(run / runs.TEMPLATE_FILE, koalpaca_template.to_dict())
    runs.write_json(run / "adapter_config.json", {"base_model_name_or_path": "/somewhere/else"})
    runs.write_json(run / runs.RUN_CONFIG, {"constants": {"MODEL_ID": "tiny-gpt-neox"}})
    opened = runs.open_run(str(run))
    assert (opened.base_model, opened.adapter, opened.template) == ("tiny-gpt-neox", str(run), koalpaca_template)

    merged = tmp_path / "merged"
    modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).save_pretrained(merged)
    runs.write_json(merged / runs.TEMPLATE_FILE, koalpaca_template.to_dict())
    opened = runs.open_run(str(merged))
    assert (opened.base_model, opened.adapter) == (str(merged), None)
    (merged / "config.json").unlink()
    with pytest.raises(UserError, match="holds neither an adapter"):
        runs.open_run(str(merged))


def test_a_merged_folder_answers_like_the_run_it_came_from(tiny_run_folder, tmp_path, tiny_tokenizer):
    from kochat import modeling
    from kochat.generation import gen

    merged = runs.save_merged(tiny_run_folder, str(tmp_path / "merged"), tiny_tokenizer,
                              runs.open_run(str(tiny_run_folder)).template)
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    answers = []
    for folder in (tiny_run_folder, merged):
        run = runs.open_run(str(folder))
        model = modeling.load_model(run.base_model, tiny_tokenizer, four_bit=False, adapter=run.adapter).eval()
        answers.append(gen(model, tiny_tokenizer, run.template, ["한국의 수도는?", "하늘은 왜 파란가요?"],
                           max_new_tokens=20))
    assert [a.text for a in answers[0]] == [a.text for a in answers[1]]
