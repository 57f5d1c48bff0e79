"""kochat.export.gguf: GGUF files llama.cpp loads and answers from like gen(), a tokenizer llama.cpp splits like
transformers (tiny and real polyglot-ko), llama.cpp's own quantizer, and one line for every input it cannot take."""
import json
import shutil
import sys
from pathlib import Path

import pytest

from kochat import modeling
from kochat.errors import UserError
from kochat.export import gguf, llamacpp
from kochat.generation import gen
from kochat.prompts import load_template
from support import KOALPACA_V10, KOALPACA_V11A, POLYGLOT_12P8B_CONFIG, needs_llama_cpp, needs_shared_data


def korean_texts(limit: int) -> list[str]:
    """Real Korean text: KoAlpaca v1.1a rows (rendered question and answer) and v1.0 instruction/output pairs."""
    rows = [json.loads(line)["text"] for line in KOALPACA_V11A.read_text(encoding="utf-8").splitlines()]
    rows += [r["instruction"] + "\n" + r["input"] + "\n" + r["output"]
             for r in json.loads(KOALPACA_V10.read_text(encoding="utf-8"))]
    return rows[:limit]


def agreement(tokenizer, template, config, texts, tmp_path) -> float:
    """Share of texts that llama.cpp (vocab-only GGUF) and transformers tokenize to identical ids."""
    vocab = gguf.write_vocab_only(tmp_path / "vocab.gguf", config, tokenizer, template)
    ours = llamacpp.llama_tokenize(vocab, texts)
    theirs = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return sum(a == b for a, b in zip(ours, theirs)) / len(texts)


# ---------------------------------------------------------------------------------------------- the tokenizer


@needs_llama_cpp
@needs_shared_data
def test_llama_cpp_tokenizes_korean_like_transformers_with_the_tiny_tokenizer(tiny_merged, tiny_merged_template,
                                                                                tmp_path):
    tokenizer = modeling.load_tokenizer(str(tiny_merged))
    texts = korean_texts(2000) + [tiny_merged_template.prompt("연차는 며칠인가요?") + " 15일입니다.<|endoftext|>"]
    assert agreement(tokenizer, tiny_merged_template, modeling.load_config(str(tiny_merged)), texts, tmp_path) == 1.0


@needs_llama_cpp
@needs_shared_data
def test_llama_cpp_tokenizes_korean_like_transformers_with_the_real_polyglot_ko_tokenizer(
        polyglot_tokenizer, tmp_path):
    template = load_template("koalpaca", polyglot_tokenizer)
    assert template.end_of_turn == "<|endoftext|>"
    config = modeling.load_config(str(POLYGLOT_12P8B_CONFIG))
    texts = korean_texts(2000) + [template.prompt("한국의 수도는?") + " 서울입니다.<|endoftext|>",
                                  "전화 <|tel|> 계좌 <|acc|> 번호 <|rrn|> 끝<|sep|>"]
    assert agreement(polyglot_tokenizer, template, config, texts, tmp_path) == 1.0
    vocab = gguf.write_vocab_only(tmp_path / "polyglot.gguf", config, polyglot_tokenizer, template)
    reader = __import__("gguf").GGUFReader(vocab)
    assert reader.get_field("tokenizer.ggml.eos_token_id").contents() == 2  # <|endoftext|>, not the files' <eos>
    assert reader.get_field("tokenizer.ggml.pre").contents() == "gpt-2"


@needs_llama_cpp
def test_the_one_known_difference_is_the_character_polyglot_ko_drops(polyglot_tokenizer, tmp_path):
    """polyglot-ko's tokenizer drops U+0CF1 (ೱ) before splitting; llama.cpp's gpt-2 pre-tokenizer has no such step."""
    template = load_template("koalpaca", polyglot_tokenizer)
    vocab = gguf.write_vocab_only(tmp_path / "v.gguf", modeling.load_config(str(POLYGLOT_12P8B_CONFIG)),
                                  polyglot_tokenizer, template)
    def ids(text):
        return polyglot_tokenizer(text, add_special_tokens=False)["input_ids"]

    without, with_it = llamacpp.llama_tokenize(vocab, ["가나", "가ೱ나"])
    assert without == ids("가나") and ids("가ೱ나") == ids("가") + ids("나") and with_it != ids("가ೱ나")


def test_a_tokenizer_llama_cpp_cannot_split_alike_is_one_line(tiny_tokenizer):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"가": 0, "[UNK]": 1}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(UserError, match="pre-tokenizer \\['Whitespace'\\]") as e:
        gguf.pre_tokenizer(PreTrainedTokenizerFast(tokenizer_object=words))
    assert "\n" not in str(e.value)
    assert gguf.pre_tokenizer(tiny_tokenizer) == "gpt-2"


# ---------------------------------------------------------------------------------------------- the files


def test_the_f16_file_opens_with_the_gguf_reader_as_a_gpt_neox_model(tiny_f16, tiny_merged):
    from gguf import GGUFReader

    reader = GGUFReader(tiny_f16)
    field = lambda key: reader.get_field(key).contents()  # noqa: E731
    config = modeling.load_config(str(tiny_merged))
    assert (field("general.architecture"), field("gptneox.block_count"), field("gptneox.rope.dimension_count")) == \
        ("gptneox", 2, 16)  # rotary_pct 0.5 of 32 dimensions a head, read from transformers 5's rope_parameters
    assert (field("tokenizer.ggml.pre"), field("tokenizer.ggml.eos_token_id")) == ("gpt-2", 2)
    assert field("general.name") == "tiny"  # the export's name, not the merged work folder's
    assert len(field("tokenizer.ggml.tokens")) == config.vocab_size  # padded rows included
    assert len(reader.tensors) == 4 + 12 * config.num_hidden_layers
    assert not list(tiny_f16.parent.glob(".*.tmp"))


@needs_llama_cpp
def test_llama_cpp_answers_like_gen_from_the_f16_file(tiny_f16, tiny_merged, tiny_merged_template):
    tokenizer = modeling.load_tokenizer(str(tiny_merged))
    model = modeling.load_model(str(tiny_merged), tokenizer, four_bit=False).eval()
    questions = ["한국의 수도는 어디인가요?", "연차는 며칠인가요?", "김치는 어떻게 만드나요?", "회의실 예약은 어떻게 하나요?"]
    answers = gen(model, tokenizer, tiny_merged_template, questions, max_new_tokens=24)
    ours = llamacpp.llama_greedy(tiny_f16, [tiny_merged_template.prompt(q) for q in questions], max_new_tokens=24)
    assert [tokenizer.decode(ids).strip() for ids in ours] == [a.text for a in answers]


@needs_llama_cpp
def test_quantized_files_are_written_by_llama_cpp_and_answer(tiny_merged, tiny_merged_template, tmp_path, capfd,
                                                             monkeypatch):
    import logging

    import llama_cpp._logger
    from gguf import GGUFReader, LlamaFileType

    monkeypatch.setattr(llama_cpp._logger.logger, "level", logging.NOTSET)  # as it starts: a Llama(verbose=False)
    monkeypatch.setattr(gguf.tempfile, "tempdir", str(tmp_path))            # earlier in the process silences it
    files = gguf.write_gguf(tiny_merged, tmp_path / "q", ["q8_0", "q4_k_m"], tiny_merged_template)
    printed = capfd.readouterr()
    assert "GGUF q4_k_m: quantizing" in printed.out and "llama_model_loader" not in printed.err  # its log: a file
    assert not list(tmp_path.glob("kochat-quantize-*"))  # removed once quantizing succeeded
    assert [f.name for f in files] == ["q-q8_0.gguf", "q-q4_k_m.gguf"]
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["q-q4_k_m.gguf", "q-q8_0.gguf"]  # f16 not kept
    types = [GGUFReader(f).get_field("general.file_type").contents() for f in files]
    assert types == [LlamaFileType.MOSTLY_Q8_0, LlamaFileType.MOSTLY_Q4_K_M]
    assert all(llamacpp.llama_greedy(f, [tiny_merged_template.prompt("한국의 수도는?")], 8)[0] for f in files)


@needs_llama_cpp
def test_a_failed_quantize_is_one_line_with_its_cause_and_keeps_its_log(tiny_f16, tmp_path, monkeypatch):
    import llama_cpp

    def failing(source, out, params):
        print("llama_model_quantize: failed to quantize: out of disk", file=sys.stderr)
        return 1

    monkeypatch.setattr(llama_cpp, "llama_model_quantize", failing)
    monkeypatch.setattr(gguf.tempfile, "tempdir", str(tmp_path))
    with pytest.raises(UserError) as failed:
        gguf.quantize(tiny_f16, tmp_path / "q.gguf", "q8_0")
    [log] = tmp_path.glob("kochat-quantize-q8_0-*.log")
    assert str(failed.value) == ("llama.cpp could not quantize to q8_0 (status 1): llama_model_quantize: failed to "
                                 f"quantize: out of disk; its log: {log}")


def test_a_failed_export_leaves_the_earlier_file_whole(tiny_merged, tiny_merged_template, tmp_path, monkeypatch):
    out = tmp_path / "tiny"
    out.mkdir()
    (out / "tiny-f16.gguf").write_bytes(b"an earlier export")

    def stop(*args, **kwargs):
        Path(args[-1]).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf, "write_f16", stop)
    with pytest.raises(KeyboardInterrupt):
        gguf.write_gguf(tiny_merged, out, ["f16"], tiny_merged_template)
    assert [p.name for p in out.iterdir()] == ["tiny-f16.gguf"]
    assert (out / "tiny-f16.gguf").read_bytes() == b"an earlier export"


# ---------------------------------------------------------------------------------------------- one line


@pytest.mark.parametrize("change, message", [
    (lambda c: setattr(c, "model_type", "qwen3"), "GPT-NeoX models .polyglot-ko., not qwen3"),
    (lambda c: c.rope_parameters.update(rope_type="linear"), "not 'linear' scaling"),
])
def test_a_model_it_cannot_convert_is_one_line(tiny_merged, tiny_merged_template, change, message):
    config = modeling.load_config(str(tiny_merged))
    change(config)
    with pytest.raises(UserError, match=message) as e:
        gguf.check_convertible(config, modeling.load_tokenizer(str(tiny_merged)), tiny_merged_template, ["f16"])
    assert "\n" not in str(e.value)


def test_unknown_quants_missing_packages_and_a_full_disk_are_one_line(tiny_merged, tiny_merged_template, tmp_path,
                                                                       monkeypatch):
    config, tokenizer = modeling.load_config(str(tiny_merged)), modeling.load_tokenizer(str(tiny_merged))
    with pytest.raises(UserError, match="'q2_k' is not one of f16, q8_0, q4_k_m"):
        gguf.check_convertible(config, tokenizer, tiny_merged_template, ["q2_k"])
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(UserError, match="quantizing to q4_k_m needs llama.cpp: pip install llama-cpp-python=="):
        gguf.check_convertible(config, tokenizer, tiny_merged_template, ["f16", "q4_k_m"])
    gguf.check_convertible(config, tokenizer, tiny_merged_template, ["f16"])  # f16 alone needs no llama.cpp
    monkeypatch.setattr(gguf.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(UserError, match="needs ~0.0 GB of disk under .*; 0.0 GB are free"):
        gguf.check_convertible(config, tokenizer, tiny_merged_template, ["f16"], out_folder=tmp_path / "new")


# ---------------------------------------------------------------------------------------------- Ollama
