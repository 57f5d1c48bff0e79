"""export_ko.py as a user runs it on the tiny run: the merged folder answers as the adapter on a 16-bit base does;
the int8 folder (and int4, on an NVIDIA GPU: the device) answers in chat_ko.py and keeps the merged model's loss;
humming's and serve_ko.py's batch kernels answer as the export's; int4 on a machine without an NVIDIA GPU, a wrong
format, an occupied output folder and a run whose base is gone are each one line, before anything is written."""
import importlib.util
import json
import shutil

import pytest
import torch

from kochat import PROJECT_ROOT, answering, batch_kernels, dp4a_kernel, humming_kernel, modeling, recipe, tiny
from kochat.export import llamacpp
from kochat.generation import gen, mode_line

QUESTIONS = ["한국의 수도는 어디인가요?", "건강하게 살기 위한 세 가지 방법은?", "파인튜닝이란 무엇인가요?"]


@pytest.fixture(scope="module")
def merged(tiny_run, run_script, tmp_path_factory):
    run, _ = tiny_run
    out = tmp_path_factory.mktemp("export") / "tiny-merged"
    result = run_script("export_ko.py", f"--adapter={run}", "--format=merged", f"--out={out}", cwd=out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {out}/" in result.stdout and f"vllm serve {out} --chat-template {out}/template.jinja" in result.stdout
    return out


def relative_logit_gap(loaded, other) -> float:
    """The largest gap between two loaded models' next-token logits on the questions' prompts, against the
    largest logit: kernels that add in another order differ by rounding, not by a flipped greedy token."""
    gaps = []
    for question in QUESTIONS:
        ids = loaded.tokenizer(loaded.run.template.prompt(question, ""), return_tensors="pt")["input_ids"]
        with torch.no_grad():
            a, b = (m.model(input_ids=ids.to(m.model.device)).logits.float() for m in (loaded, other))
        gaps.append(((a - b).abs().max() / a.abs().max()).item())
    return max(gaps)


def greedy(folder, four_bit=None):
    loaded = answering.load_for_answering(str(folder), four_bit=four_bit)
    return [a.text for a in gen(loaded.model, loaded.tokenizer, loaded.run.template, QUESTIONS, max_new_tokens=24)]


def held_out_loss(folder):
    """The mean loss on the rows the tiny preset held out (its EVAL_FRACTION and SEED), answer tokens only."""
    loaded = answering.load_for_answering(str(folder), four_bit=False)
    prepared = recipe.prepare(str(PROJECT_ROOT / "data" / "ko_tiny_qa.jsonl"), loaded.tokenizer, loaded.run.template,
                              max_chars=20_000, max_len=256, eval_fraction=0.1, seed=42)
    total = count = 0
    with torch.no_grad():
        for row in prepared.eval:
            labels = torch.tensor([row["labels"]], device=loaded.model.device)
            ids = torch.tensor([row["input_ids"]], device=loaded.model.device)
            loss = loaded.model(input_ids=ids, labels=labels).loss.item()
            n = int((labels[:, 1:] != -100).sum())
            total, count = total + loss * n, count + n
    return total / count


def test_merged_answers_as_the_adapter_does_and_is_a_plain_model_folder(tiny_run, merged):
    """Folding B·A into the weights changes only float rounding: the same next-token logits within 1e-4 on every
    question's prompt, and the same greedy answer where no near tie flips a token (the first question)."""
    run, _ = tiny_run
    adapter = answering.load_for_answering(str(run), four_bit=False)
    folded = answering.load_for_answering(str(merged))  # auto: a merged folder unquantized (on a CPU, always)
    assert not getattr(folded.model, "is_loaded_in_4bit", False)
    for question in QUESTIONS:
        ids = torch.tensor([adapter.tokenizer(adapter.run.template.prompt(question, ""))["input_ids"]])
        with torch.no_grad():
            assert torch.allclose(adapter.model(input_ids=ids).logits, folded.model(input_ids=ids).logits, atol=1e-4)
    assert greedy(merged) == greedy(run, four_bit=False) and greedy(merged)[0] == "7입니다."
    assert {"config.json", "model.safetensors", "template.json", "template.jinja", "tokenizer.json"} <= \
        {p.name for p in merged.iterdir()}
    config = json.loads((merged / "config.json").read_text())
    assert "quantization_config" not in config  # and transformers 4 (vLLM, TGI pinned to it) reads the same model:
    assert (config["rotary_pct"], config["rotary_emb_base"]) == (0.5, 10000.0) == (
        config["rope_parameters"]["partial_rotary_factor"], config["rope_parameters"]["rope_theta"])
    tokenizer = json.loads((merged / "tokenizer_config.json").read_text())
    assert tokenizer["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tokenizer["additional_special_tokens"] == ["<|endoftext|>", "<|sep|>"]
    # safetensors writes for its owner only; the export is as readable as its other files (a vLLM service account)
    assert (merged / "model.safetensors").stat().st_mode == (merged / "config.json").stat().st_mode
    card = (merged / "README.md").read_text()  # the licences travel with the export
    assert f"from `{run.name}`" in card and "- Base model `tiny-gpt-neox`: a 2-layer model that kochat builds" in card
    # it travels with the folder (to a serving machine): its commands name the folder, not where it was made
    commands = [line[4:] for line in card.split("## Use it")[1].splitlines() if line.startswith("    ")]
    assert commands == ["python3 chat_ko.py --adapter tiny-merged",  # one shell command a line
                        "vllm serve tiny-merged --chat-template tiny-merged/template.jinja"]
    assert str(merged.parent) not in card


def test_int8_loads_as_saved_in_chat_and_keeps_the_merged_models_loss(tiny_run, merged, run_script, tmp_path):
    run, _ = tiny_run
    out = tmp_path / "tiny-int8"
    result = run_script("export_ko.py", f"--adapter={run}", "--format=int8", f"--out={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "torchao"
    assert (out / "model.safetensors").stat().st_mode == (out / "config.json").stat().st_mode
    answer = run_script("chat_ko.py", f"--adapter={out}", "--question", QUESTIONS[0], "--temperature=0", cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr[-3000:]
    on_gpu = (" through humming's kernel on cuda, fast mode on" if importlib.util.find_spec("humming")
              else " on cuda, fast mode on")  # chat moves it onto humming's kernel where installed
    assert "answering with Int8WeightOnlyConfig weights (torchao)" + (
        on_gpu if torch.cuda.is_available() else " on cpu, fast mode off") in answer.stderr
    # a wait is announced where the first answer compiles (a GPU), and only there
    assert ("the first answer compiles the decoding step" in answer.stderr) == torch.cuda.is_available()
    assert answer.stdout.strip()
    int8_loss, merged_loss = held_out_loss(out), held_out_loss(merged)
    assert abs(int8_loss - merged_loss) < 0.02 * merged_loss, (int8_loss, merged_loss)


@pytest.fixture(scope="module")
def int4_export(tiny_run, run_script, tmp_path_factory):
    """The tiny run exported to int4 by export_ko.py (for tests marked to run on a CUDA GPU only)."""
    run, _ = tiny_run
    out = tmp_path_factory.mktemp("int4") / "tiny-int4"
    result = run_script("export_ko.py", f"--adapter={run}", "--format=int4", f"--out={out}", cwd=out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="int4 is made and run by a CUDA kernel (tested on the device)")
def test_int4_answers_in_chat_and_keeps_near_the_merged_models_loss(int4_export, merged, run_script, tmp_path):
    out = int4_export
    answer = run_script("chat_ko.py", f"--adapter={out}", "--question", QUESTIONS[0], "--temperature=0", cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr[-3000:]
    through = (", one row at a time through the dp4a kernel" if dp4a_kernel.installed()  # chat moves it there
               else " through humming's kernel" if importlib.util.find_spec("humming") else "")
    assert f"answering with Int4WeightOnlyConfig weights (torchao){through} on cuda, fast mode on" in answer.stderr
    assert "the first answer compiles the decoding step" in answer.stderr
    assert answer.stdout.strip()
    int4_loss, merged_loss = held_out_loss(out), held_out_loss(merged)
    assert abs(int4_loss - merged_loss) < 0.05 * merged_loss, (int4_loss, merged_loss)


@pytest.mark.skipif(importlib.util.find_spec("mslk") is None or not torch.cuda.is_available()
                    or torch.cuda.get_device_capability()[0] != 9,
                    reason="mslk's kernels run on Hopper GPUs with mslk-cuda installed (tested on the device)")
def test_int4_on_mslks_batch_kernels_answers_as_tinygemm(int4_export):
    """serve_ko.py's batch kernels on a Hopper GPU: exact (and both) within rounding of tinygemm's logits, fp8
    farther, all answering through the compiled loop."""
    saved, exact, fp8, both = (answering.load_for_answering(str(int4_export), kernels="export") for _ in range(4))
    assert "the same int4 levels" in batch_kernels.onto_batch_kernel(exact.model, "exact")
    assert "8-bit float activations" in batch_kernels.onto_batch_kernel(fp8.model, "fp8")
    assert "tinygemm's kept for one row" in batch_kernels.onto_batch_kernel(both.model, "both")
    exact_gap, fp8_gap = relative_logit_gap(saved, exact), relative_logit_gap(saved, fp8)
    assert exact_gap < 0.03 and exact_gap < fp8_gap < 0.5, (exact_gap, fp8_gap)  # fp8 rounds the weights again
    assert relative_logit_gap(saved, both) < 0.03
    for moved in (exact, fp8, both):  # and they answer through gen()'s compiled loop
        assert all(a.text for a in gen(moved.model, moved.tokenizer, moved.run.template, QUESTIONS[:2],
                                       max_new_tokens=8, fast=True))


@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("humming") is None,
                    reason="humming's kernels run on an NVIDIA GPU with humming-kernels installed (tested on the "
                           "device)")
@pytest.mark.parametrize("fmt, dtype", [("int4", torch.bfloat16), ("int8", torch.float32), ("int8", torch.bfloat16)],
                         ids=["int4", "int8-float32", "int8-bf16"])
def test_an_export_moves_onto_hummings_kernel_with_the_same_levels(fmt, dtype, request, tmp_path):
    """Every int4 or int8 layer moves as the export loads (the default where humming is installed), its products
    within rounding of the export's own kernel's (tinygemm, torchao's int8), and answers through gen()'s compiled
    loop, one row and a batch; the mode line says so. int8 from the tiny run's float32 merged model (loaded in bf16,
    its output head too: answering.match_output_head) and from a bf16 copy, whose layers mostly have no weight at level
    -128 and take humming's sign-magnitude int8 form (humming_kernel.load_levels)."""
    from torchao.quantization import Int4TilePackedTo4dTensor, Int8Tensor
    from transformers import AutoModelForCausalLM

    from kochat.export import quantized
    if fmt == "int4":
        out = request.getfixturevalue("int4_export")
    else:
        merged = request.getfixturevalue("merged")
        if dtype == torch.bfloat16:  # tokenizer and template copied; weights and config rewritten in bf16
            shutil.copytree(merged, tmp_path / "tiny-merged-bf16")
            AutoModelForCausalLM.from_pretrained(merged, dtype=dtype).save_pretrained(tmp_path / "tiny-merged-bf16")
            merged = tmp_path / "tiny-merged-bf16"
        out = quantized.write_quantized(merged, tmp_path / "tiny-int8", "int8")
    exported = Int4TilePackedTo4dTensor if fmt == "int4" else Int8Tensor
    saved, moved = answering.load_for_answering(str(out), kernels="export"), answering.load_for_answering(str(out))
    layers = sum(isinstance(getattr(m, "weight", None), exported) for m in saved.model.modules())
    assert humming_kernel.on_humming(moved.model) == layers > 0
    assert not any(isinstance(getattr(m, "weight", None), exported) for m in moved.model.modules())
    assert relative_logit_gap(saved, moved) < 0.03  # the same levels
    for questions in (QUESTIONS[:1], QUESTIONS[:4]):
        assert all(a.text for a in gen(moved.model, moved.tokenizer, moved.run.template, questions,
                                       max_new_tokens=8, fast=True))
    assert mode_line(moved.model, True) == (f"answering with {fmt.capitalize()}WeightOnlyConfig weights (torchao) "
                                            "through humming's kernel on cuda, fast mode on")


def one_row_logit_gap(loaded, other) -> float:
    """relative_logit_gap for one token at a time (one row through every layer: the dp4a kernel's products)."""
    ids = loaded.tokenizer(loaded.run.template.prompt(QUESTIONS[0], ""), return_tensors="pt")["input_ids"][0]
    gaps = []
    for token in ids[:12].tolist():
        with torch.no_grad():
            a, b = (m.model(input_ids=torch.tensor([[token]], device=m.model.device)).logits.float()
                    for m in (loaded, other))
        gaps.append(((a - b).abs().max() / a.abs().max()).item())
    return max(gaps)


@pytest.mark.skipif(not torch.cuda.is_available() or not dp4a_kernel.installed(),
                    reason="the dp4a kernels run on an NVIDIA GPU with cuda-bindings installed (tested on the device)")
@pytest.mark.parametrize("fmt, kernels", [("int4", "one_row"), ("int8", "one_row"), ("int4", "both"),
                                          ("int8", "both")])
def test_an_export_answers_one_row_on_the_dp4a_kernel(fmt, kernels, request, tmp_path):
    """As chat_ko.py loads an export (one_row: the weights held once, no export layer left beside the kernel's
    levels, which for int8 are the export's own tensor: tests/test_dp4a_kernel.py; a prompt's rows on
    torchao's int8 or int4 dequantized) and serve_ko.py (both: humming's kernel beside it for batches, where
    installed): every layer's one row on the dp4a kernel within the row's rounding of the export's own kernel,
    several rows within rounding, and gen()'s compiled loop answers one row and a batch; the mode line says so."""
    from torchao.quantization import Int4TilePackedTo4dTensor, Int8Tensor
    from transformers import AutoModelForCausalLM

    from kochat.export import quantized
    if fmt == "int4":
        out = request.getfixturevalue("int4_export")
    else:  # from a bf16 copy of the merged model, as a real export is made
        merged, bf16 = request.getfixturevalue("merged"), tmp_path / "tiny-merged-bf16"
        shutil.copytree(merged, bf16)
        AutoModelForCausalLM.from_pretrained(merged, dtype=torch.bfloat16).save_pretrained(bf16)
        out = quantized.write_quantized(bf16, tmp_path / "tiny-int8", "int8")
    exported = Int4TilePackedTo4dTensor if fmt == "int4" else Int8Tensor
    saved = answering.load_for_answering(str(out), kernels="export")
    moved = answering.load_for_answering(str(out), kernels=kernels)
    layers = sum(isinstance(getattr(m, "weight", None), exported) for m in saved.model.modules())
    assert dp4a_kernel.on_dp4a(moved.model) == layers > 0
    on_humming = kernels == "both" and humming_kernel.installed()
    assert humming_kernel.on_humming(moved.model) == (layers if on_humming else 0)
    held_once = kernels == "one_row"  # no export layer left beside the kernel's levels (int8's: its very tensor)
    assert all((m.rows is None) == held_once for m in moved.model.modules() if isinstance(m, dp4a_kernel.Dp4aLinear))
    assert not any(isinstance(getattr(m, "weight", None), exported) for m in moved.model.modules())
    assert one_row_logit_gap(saved, moved) < 0.05  # the row rounded to int8
    assert relative_logit_gap(saved, moved) < 0.03  # a prompt: the export's levels, dequantized or on humming
    for questions in (QUESTIONS[:1], QUESTIONS[:4]):
        assert all(a.text for a in gen(moved.model, moved.tokenizer, moved.run.template, questions,
                                       max_new_tokens=8, fast=True))
    through = " through humming's kernel" if on_humming else ""
    assert mode_line(moved.model, True) == (f"answering with {fmt.capitalize()}WeightOnlyConfig weights (torchao)"
                                            f"{through}, one row at a time through the dp4a kernel on cuda, fast "
                                            "mode on")


@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("gemlite") is None,
                    reason="gemlite's int8 kernel runs on an NVIDIA GPU with gemlite installed (tested on the device)")
def test_int8_on_gemlites_kernel_answers_as_torchaos_int8(merged, tmp_path):
    """A bf16 int8 export (gemlite computes in 16 bits; the tiny base is float32) answers the same on both kernels."""
    from transformers import AutoModelForCausalLM

    from kochat.export import quantized
    bf16, out = tmp_path / "tiny-merged-bf16", tmp_path / "tiny-int8"
    shutil.copytree(merged, bf16)  # tokenizer and template; weights and config rewritten in bf16
    AutoModelForCausalLM.from_pretrained(merged, dtype=torch.bfloat16).save_pretrained(bf16)
    quantized.write_quantized(bf16, out, "int8")
    # as --batch_kernel=both
    saved, moved = (answering.load_for_answering(str(out), kernels="export") for _ in range(2))
    assert "moved onto gemlite's int8 kernel" in batch_kernels.onto_batch_kernel(moved.model, "both")
    assert relative_logit_gap(saved, moved) < 0.03  # the same int8 weights
    assert all(a.text for a in gen(moved.model, moved.tokenizer, moved.run.template, QUESTIONS[:2], max_new_tokens=8,
                                   fast=True))


def test_bad_exports_are_one_line_and_write_nothing(tiny_run, run_script, tmp_path):
    run, _ = tiny_run

    def refused_run(folder, *args):
        result = run_script("export_ko.py", f"--adapter={folder}", *args, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        return result.stderr.strip().splitlines()[-1]

    def refused(*args):
        return refused_run(run, *args)

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "link").symlink_to(tmp_path / "full")
    if not torch.cuda.is_available():  # int4 is made on an NVIDIA GPU: without one, it is refused
        assert "int4 is made and run by a CUDA kernel" in refused("--format=int4", f"--out={tmp_path / 'a'}")
    assert "is a file" in refused("--format=merged", f"--out={tmp_path / 'full' / 'keep.txt'}")
    assert "would replace the run folder" in refused("--format=merged", f"--out={run}", "--overwrite=true")
    assert "is not one of merged, int8, int4, gguf" in refused("--format=onnx", f"--out={tmp_path / 'b'}")
    assert "already holds files" in refused("--format=merged", f"--out={tmp_path / 'full'}")
    assert "is not an earlier export" in refused("--format=merged", f"--out={tmp_path / 'full'}", "--overwrite=true")
    assert "is a symbolic link" in refused("--format=merged", f"--out={tmp_path / 'link'}", "--overwrite=true")
    (tmp_path / "my-ollama").mkdir()  # a user's own Ollama folder: a Modelfile, but not one export_ko.py wrote
    (tmp_path / "my-ollama" / "Modelfile").write_text("FROM ./llama3.gguf\n")
    assert "is not an earlier export" in refused("--format=gguf", f"--out={tmp_path / 'my-ollama'}", "--overwrite=true")
    assert "is the folder you are in" in refused("--format=merged", "--out=.", "--overwrite=true")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    moved = tmp_path / "moved-run"  # a run whose base folder is gone
    shutil.copytree(run, moved, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    config = json.loads((moved / "run_config.json").read_text())
    config["constants"]["MODEL_ID"] = str(tmp_path / "no-such-base")
    (moved / "run_config.json").write_text(json.dumps(config))
    assert refused_run(moved, "--format=merged", f"--out={tmp_path / 'c'}") == (
        f"error: the base model of {moved}: model folder {tmp_path / 'no-such-base'} not found; pass --base=…: a "
        "folder holding config.json, or a hub id")
    wrong = modeling.model_source(tiny.CHAT_MODEL_ID)  # another architecture: the adapter's layers are not in it
    line = refused_run(moved, f"--base={wrong}", "--format=merged", f"--out={tmp_path / 'c'}")
    assert line.startswith(f"error: the adapter in {moved} does not fit {wrong} (") and line.endswith(
        "): pass --base=… the base it was trained on"), line
    base = modeling.model_source(tiny.MODEL_ID)  # the advice followed: the base where it is here
    result = run_script("export_ko.py", f"--adapter={moved}", f"--base={base}", "--format=merged",
                        f"--out={tmp_path / 'e'}", cwd=tmp_path)
    assert result.returncode == 0 and (tmp_path / "e" / "model.safetensors").is_file(), result.stderr[-2000:]
    (tmp_path / "weightless-base").mkdir()  # a base with its config but no weights: the merge itself fails
    shutil.copy(modeling.model_source(tiny.MODEL_ID) + "/config.json", tmp_path / "weightless-base")
    config["constants"]["MODEL_ID"] = str(tmp_path / "weightless-base")
    (moved / "run_config.json").write_text(json.dumps(config))
    result = run_script("export_ko.py", f"--adapter={moved}", "--format=merged", f"--out={tmp_path / 'c' / 'd'}",
                        cwd=tmp_path)
    assert result.returncode == 2 and "cannot load weights from" in result.stderr  # and c/ it made is gone again
    assert not any(p.name in ("a", "b", "c") for p in tmp_path.iterdir()) and (run / "adapter_model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]


def test_too_little_disk_or_memory_is_one_line_before_anything_is_written(tmp_path, monkeypatch):
    """export_ko.py's check before its merge (the 12.8b shape: a 25.8 GB merged copy, then the format): the disk
    under OUT, exports killed before they finished named where they hold it, then the CPU memory the merge needs,
    and int8 made without a GPU."""
    import export_ko
    from kochat.errors import UserError

    stale = tmp_path / ".export-k1ll3d"
    stale.mkdir()
    with open(stale / "model.safetensors", "wb") as weights:
        weights.truncate(2 * 10**9)  # sparse: takes no disk here
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(export_ko.shutil, "disk_usage", lambda path: usage._replace(free=int(30e9)))
    with pytest.raises(UserError, match=rf"^not enough disk for a merged export: needs ~40.6 GB under {tmp_path}, "
                                        r"30.0 GB free; 1 unfinished exports \(.export-\*\) hold 2.0 GB there: remove "
                                        r"them if no export is running$"):
        export_ko.check_room(25.8e9 + 12.9e9, tmp_path / "out", int(25.8e9))
    monkeypatch.setattr(export_ko.shutil, "disk_usage", lambda path: usage._replace(free=int(100e9)))
    monkeypatch.setattr(export_ko, "available_memory", lambda: int(20e9))
    with pytest.raises(UserError, match=r"^merging needs ~28.4 GB of free CPU memory for the 16-bit base, 20.0 GB is "
                                        r"free: close other programs or export on a larger machine$"):
        export_ko.check_room(25.8e9, tmp_path / "out", int(25.8e9))
    export_ko.check_room(25.8e9, tmp_path / "out", 0)  # a merged folder is read in place: no merge to hold
    with pytest.raises(UserError, match=r"^making int8 without a GPU needs ~29.1 GB of free CPU memory, 20.0 GB is "
                                        r"free"):
        export_ko.check_room(12.9e9, tmp_path / "out", 0, int(12.9e9 * 2.05))  # a merged 12.8b folder to int8
    assert not (tmp_path / "out").exists()


def test_too_little_disk_stops_the_script_before_it_writes_anything(tiny_run, tmp_path, monkeypatch):
    """export_ko.py itself (not only its check): refused before the merge, and not even OUT's parent is made."""
    import export_ko
    from kochat.errors import UserError

    run, _ = tiny_run
    for name in ("ADAPTER", "BASE", "FORMAT", "OUT", "GGUF_QUANTS", "OVERWRITE"):
        monkeypatch.setattr(export_ko, name, getattr(export_ko, name))  # main() sets them: as they were, after
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(export_ko.shutil, "disk_usage", lambda path: usage._replace(free=10**6))
    with pytest.raises(UserError, match=rf"^not enough disk for a merged export: needs ~0.0 GB under {tmp_path}, "
                                        r"0.0 GB free$"):
        export_ko.main([f"--adapter={run}", "--format=merged", f"--out={tmp_path / 'new' / 'out'}"])
    assert list(tmp_path.iterdir()) == []


def test_gguf_export_writes_the_file_and_an_ollama_modelfile_beside_it(tiny_run, run_script, tmp_path):
    import gguf

    run, _ = tiny_run
    out = tmp_path / "tiny-gguf"
    result = run_script("export_ko.py", f"--adapter={run}", "--format=gguf", "--gguf_quants=f16", f"--out={out}",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "README.md", "tiny-gguf-f16.gguf"]
    assert gguf.GGUFReader(out / "tiny-gguf-f16.gguf").get_field("general.architecture").contents() == "gptneox"
    # llama.cpp answers from the trained run's file as gen() answers from the run (its adapter on the 16-bit base)
    adapter = answering.load_for_answering(str(run), four_bit=False)
    prompts = [adapter.run.template.prompt(q, "") for q in QUESTIONS]
    ours = llamacpp.llama_greedy(out / "tiny-gguf-f16.gguf", prompts, max_new_tokens=24)
    assert [adapter.tokenizer.decode(ids).strip() for ids in ours] == greedy(run, four_bit=False)
    assert "FROM ./tiny-gguf-f16.gguf" in (out / "Modelfile").read_text() and "ollama create" in result.stdout
    card = (out / "README.md").read_text()
    commands = [line[4:] for line in card.split("## Use it")[1].splitlines() if line.startswith("    ")]
    assert commands == ["cd tiny-gguf && ollama create NAME -f Modelfile && ollama run NAME",
                        "llama-server -m tiny-gguf/tiny-gguf-f16.gguf --jinja",
                        "pip install 'llama-cpp-python[server]==0.3.36' && python3 -m llama_cpp.server --model "
                        "tiny-gguf/tiny-gguf-f16.gguf"] and str(tmp_path) not in card
    again = run_script("export_ko.py", f"--adapter={run}", "--format=GGUF", "--gguf_quants=Q4_K_M,q8_0",
                       f"--out={out}", "--overwrite=true", cwd=tmp_path)  # an earlier export is replaced, only once
    assert again.returncode == 0, again.stderr[-3000:]  # the new is made (names as llama.cpp writes them, too)
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", "README.md", "tiny-gguf-q4_k_m.gguf",
                                                     "tiny-gguf-q8_0.gguf"]
    assert "FROM ./tiny-gguf-q4_k_m.gguf" in (out / "Modelfile").read_text()  # the smallest
    sizes = {name: (out / name).stat().st_size / 2**20 for name in ("tiny-gguf-q4_k_m.gguf", "tiny-gguf-q8_0.gguf")}
    assert all(f"    {name} ({size:.1f} MiB)" in again.stdout.splitlines() for name, size in sizes.items())
    assert all(llamacpp.llama_greedy(out / "tiny-gguf-q4_k_m.gguf", prompts[:2], max_new_tokens=8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-gguf"]  # nothing left beside it
    refused = run_script("chat_ko.py", f"--adapter={out}", cwd=tmp_path)
    assert refused.returncode == 2 and "is a GGUF export, for llama.cpp and Ollama" in refused.stderr
    modelfile = (out / "Modelfile").read_text()
    assert 'LICENSE """# gguf export of' in modelfile and "- Data `" in modelfile and modelfile.endswith('"""\n')
