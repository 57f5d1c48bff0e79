"""kochat/export/older_loaders.py: a merged folder's config and tokenizer config also in transformers 4's names (the
tiny run's merged folder, in tests/e2e/test_export_ko.py, loads in transformers 5 as the adapter answers)."""
import json
import shutil
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from kochat import modeling, tiny
from kochat.export.older_loaders import older_keys, same_config, write_for_older_loaders


def test_rotary_settings_get_the_names_each_model_type_had_in_transformers_4():
    neox = {"model_type": "gpt_neox", "dtype": "float16",
            "rope_parameters": {"partial_rotary_factor": 0.5, "rope_theta": 10000.0, "rope_type": "default"}}
    assert older_keys(neox) == {"torch_dtype": "float16", "rotary_pct": 0.5, "rotary_emb_base": 10000.0}
    qwen3 = {"model_type": "qwen3", "dtype": "bfloat16", "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}}
    assert older_keys(qwen3) == {"torch_dtype": "bfloat16", "rope_theta": 1e6}  # 4's default would be 10,000
    llama31 = {"model_type": "llama", "rope_parameters": {
        "rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}}
    assert older_keys(llama31) == {"rope_theta": 500000.0, "rope_scaling": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}}
    gemma3 = {"model_type": "gemma3_text", "rope_parameters": {
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}
    assert older_keys(gemma3) == {"rope_theta": 1e6, "rope_local_base_freq": 1e4,
                                  "rope_scaling": {"rope_type": "linear", "factor": 8.0}}  # 4 names them apart


def test_the_bases_keys_join_and_transformers_5_reads_the_same_config_and_tokenizer(tmp_path):
    base = Path(modeling.model_source(tiny.MODEL_ID))  # its files as transformers 5 saved them stand for a merge's
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(base / name, tmp_path / name)
    before = AutoConfig.from_pretrained(tmp_path).to_dict()
    text = "### 질문: 한국의 수도는?<|endoftext|>"
    saved = AutoTokenizer.from_pretrained(tmp_path)
    ids, special = saved(text)["input_ids"], sorted(saved.all_special_tokens)
    authors = tmp_path / "base"
    authors.mkdir()  # a base's config.json as its authors wrote it: a key transformers 5 does not keep, one it does
    (authors / "config.json").write_text(json.dumps({"model_type": "gpt_neox", "hidden_size": 999,
                                                     "use_cache_quantization": False}))
    write_for_older_loaders(tmp_path, str(authors))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["use_cache_quantization"] is False and config["hidden_size"] == 128  # the saved keys win
    assert config["rotary_pct"] == before["rope_parameters"]["partial_rotary_factor"] == 0.5
    after = AutoConfig.from_pretrained(tmp_path).to_dict()
    assert {k: v for k, v in after.items() if k != "use_cache_quantization"} == before
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert tokenizer(text)["input_ids"] == ids and ids[-1] == 2
    assert sorted(tokenizer.all_special_tokens) == special and "<|sep|>" in special
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_a_sub_configs_keys_join_too_and_a_base_key_that_would_change_the_model_is_left_out(tmp_path):
    """Gemma 3 (a text config inside the vision-language one): its scaling, in 4's names, inside text_config. A
    base key transformers 5 would read over the saved settings (a rope_scaling the saved config has not) is not
    written: the older names alone are, and transformers 5 reads the saved config either way."""
    gemma = tmp_path / "gemma"
    modeling.known_config("google/gemma-3-12b-pt").save_pretrained(gemma)
    before = AutoConfig.from_pretrained(gemma).to_dict()
    write_for_older_loaders(gemma, str(tmp_path / "no-base"))
    text = json.loads((gemma / "config.json").read_text())["text_config"]
    assert (text["rope_theta"], text["rope_local_base_freq"], text["rope_scaling"]) == (
        1000000, 10000.0, {"rope_type": "linear", "factor": 8.0})
    assert same_config(before, AutoConfig.from_pretrained(gemma).to_dict())

    neox, authors = tmp_path / "neox", tmp_path / "authors"
    shutil.copytree(modeling.model_source(tiny.MODEL_ID), neox)
    authors.mkdir()
    (authors / "config.json").write_text(json.dumps({"model_type": "gpt_neox", "auto_map": {"x": "y"},
                                                     "rope_scaling": {"rope_type": "linear", "factor": 2.0}}))
    before = AutoConfig.from_pretrained(neox).to_dict()
    write_for_older_loaders(neox, str(authors))
    config = json.loads((neox / "config.json").read_text())
    assert "rope_scaling" not in config and "auto_map" not in config and config["rotary_pct"] == 0.5
    assert same_config(before, AutoConfig.from_pretrained(neox).to_dict())
    assert not same_config(before, {**before, "rope_parameters": {**before["rope_parameters"], "factor": 2.0}})

