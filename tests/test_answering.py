"""Opening a run to answer from: as trained, refused before loading where it would not fit, an export's head."""
from pathlib import Path

import pytest
import torch

from kochat import answering, runs
from kochat.errors import UserError
from kochat.known_models import KNOWN_MODELS


def test_load_for_answering_loads_the_run_as_trained(tiny_run_folder, tiny_tokenizer):
    from kochat import modeling
    from kochat.generation import gen

    loaded = answering.load_for_answering(str(tiny_run_folder))  # 4-bit NF4, as finetune_ko.py trains
    assert loaded.run.folder == tiny_run_folder and loaded.tokenizer.eos_token == "<|endoftext|>"
    assert loaded.model.base_model.model.config.quantization_config.bnb_4bit_quant_type == "nf4"
    by_hand = modeling.load_model(loaded.run.base_model, tiny_tokenizer, adapter=loaded.run.adapter).eval()
    question = "한국의 수도는?"
    assert (gen(loaded.model, loaded.tokenizer, loaded.run.template, question, max_new_tokens=12)[0].text
            == gen(by_hand, tiny_tokenizer, loaded.run.template, question, max_new_tokens=12)[0].text)


def test_a_real_size_run_on_a_cpu_is_refused_before_loading(tmp_path, koalpaca_template, tiny_tokenizer,
                                                            monkeypatch):
    from transformers import AutoConfig

    from kochat import modeling

    spec = dict(KNOWN_MODELS["EleutherAI/polyglot-ko-12.8b"].config)
    AutoConfig.for_model(spec.pop("model_type"), **spec).save_pretrained(tmp_path / "merged")
    runs.write_json(tmp_path / "merged" / runs.TEMPLATE_FILE, koalpaca_template.to_dict())
    tiny_tokenizer.save_pretrained(tmp_path / "merged")
    monkeypatch.setattr(modeling.torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="12.9 B parameters and this machine has no CUDA GPU; answer with it on a "
                                        "machine with a CUDA GPU"):
        answering.load_for_answering(str(tmp_path / "merged"))


def test_a_merged_folder_answers_in_16_bits_where_they_fit_the_gpus_else_in_4_bit_saying_so(monkeypatch, caplog):
    """12.8b's 12.9 B parameters in 16 bits, as transformers fills 90 % of free memory, want 26.7 GiB, one
    2,048-token row of cache 1.6 and the headroom 1: 29.2 GiB free. Two 16 GB cards hold them, a 32 GB one not."""
    from transformers import AutoConfig

    from kochat import kv_cache

    spec = dict(KNOWN_MODELS["EleutherAI/polyglot-ko-12.8b"].config)
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    run = runs.Run(Path("outputs/hr-faq-16"), "outputs/hr-faq-16", None, None, None, config)
    monkeypatch.setattr(answering.torch.cuda, "is_available", lambda: True)
    for cards, free_gib, fits in [(2, 15.0, True), (1, 28.0, False)]:
        monkeypatch.setattr(answering.torch.cuda, "device_count", lambda: cards)
        monkeypatch.setattr(kv_cache, "free_bytes", lambda device: free_gib * 2**30)
        with caplog.at_level("WARNING", logger="kochat.answering"):
            assert answering.sixteen_bits_fit(run, config) is fits
    assert caplog.messages == ["outputs/hr-faq-16 in 16 bits wants 29.2 GiB free and the GPU has 28.0 GiB: answering "
                               "in 4-bit NF4, slower (export_ko.py --format=int4 or int8 makes a faster model "
                               "that fits)"]
    monkeypatch.setattr(answering.torch.cuda, "is_available", lambda: False)
    assert answering.sixteen_bits_fit(run, config)  # a CPU holds them in its own memory


def test_an_export_that_does_not_fit_the_gpu_is_one_line_before_it_loads(tmp_path, monkeypatch):
    """The 12.8b shape's int8 export, 12.31 GiB on disk (a sparse file here), wants 14.7 GiB free with transformers'
    90 % and the headroom: a 16 GB card's ~15 GiB take it, a 12 GB card's ~11 do not, and int4 is named instead."""
    from types import SimpleNamespace

    from kochat import kv_cache

    with open(tmp_path / "model.safetensors", "wb") as weights:
        weights.truncate(int(12.31 * 2**30))
    int8 = SimpleNamespace(quantization_config={"quant_method": "torchao",
                                                "quant_type": {"default": {"_type": "Int8WeightOnlyConfig"}}})
    run = runs.Run(tmp_path, str(tmp_path), None, None, None, None)
    monkeypatch.setattr(answering.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(answering.torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(kv_cache, "free_bytes", lambda device: 15.0 * 2**30)
    answering.check_export_fits(run, int8)
    monkeypatch.setattr(kv_cache, "free_bytes", lambda device: 11.0 * 2**30)
    with pytest.raises(UserError, match=rf"^{tmp_path}'s weights take 12.3 GiB and want ~14.7 GiB free on the GPU; "
                                        r"it has 11.0 GiB: free the GPU, answer on a larger one, export the run again "
                                        r"with --format=int4 \(about half the size\), or export --format=gguf"):
        answering.check_export_fits(run, int8)
    monkeypatch.setattr(answering.torch.cuda, "device_count", lambda: 2)  # two cards of 8 GiB free: both take it,
    monkeypatch.setattr(kv_cache, "free_bytes", lambda device: 8.0 * 2**30)  # the one a process is pinned to not
    answering.check_export_fits(run, int8)
    with pytest.raises(UserError, match=r"want ~14.7 GiB free on the GPU; it has 8.0 GiB"):
        answering.check_export_fits(run, int8, device_map={"": 1})
    monkeypatch.setattr(answering.torch.cuda, "is_available", lambda: False)
    answering.check_export_fits(run, int8)  # int8 on a CPU loads into its memory


def test_an_exports_output_head_takes_the_dtype_of_the_rest(tiny_tokenizer):
    """transformers 5.17 left a float32 export's output head in float32 on a GPU while the rest loaded in bf16:
    match_output_head puts it in the dtype of the layers before it, and the model answers again."""
    from kochat import modeling, tiny

    model = modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False).eval()
    rest = model.get_input_embeddings().weight.dtype
    model.get_output_embeddings().to(torch.float16 if rest != torch.float16 else torch.float32)
    ids = torch.randint(3, 300, (1, 5), device=model.device)
    with torch.inference_mode(), pytest.raises(RuntimeError):
        model(input_ids=ids)
    answering.match_output_head(model)
    assert model.get_output_embeddings().weight.dtype == rest
    with torch.inference_mode():
        assert model(input_ids=ids).logits.shape == (1, 5, model.config.vocab_size)
