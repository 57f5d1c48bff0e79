from kochat import card


def test_the_model_card_says_what_was_trained_its_licences_and_how_to_use_it(tmp_path, koalpaca_template):
    config = {"constants": {"MODEL_ID": "EleutherAI/polyglot-ko-12.8b", "DATA": "beomi/KoAlpaca-v1.1a",
                            "LORA_R": 8, "LORA_ALPHA": 32, "LORA_TARGETS": ["query_key_value"], "MAX_STEPS": 50},
              "data_report": {"read": 100, "kept": 97, "skipped": {"empty answer": 3}},
              "quantization": {"bnb_4bit_quant_type": "nf4"},
              "train": {"steps": 50, "log_history": [{"step": 10, "loss": 2.0}, {"step": 50, "loss": 1.5}]}}
    text = card.model_card(tmp_path / "hr-faq", config, koalpaca_template)
    assert "base_model: EleutherAI/polyglot-ko-12.8b" in text and "license: cc-by-nc-4.0" in text
    assert "50 optimizer steps on `beomi/KoAlpaca-v1.1a` (97 of 100 rows kept, 3 skipped); train loss 2.000 → 1.500" in text
    assert "Apache-2.0" in text and "CC BY-NC 4.0" in text and "non-commercial" in text
    assert f"python3 chat_ko.py --adapter {tmp_path / 'hr-faq'}" in text and "PeftModel.from_pretrained" in text
    assert "| LORA_R | `8` |" in text
    own = card.model_card(tmp_path / "mine", {"constants": {"MODEL_ID": "/models/my-model", "DATA": "./qa.csv"}},
                          koalpaca_template)
    assert "base_model" not in own and "license:" not in own  # a local path is no hub id; licences unknown
    assert "not known to kochat: see the terms of ./qa.csv" in own
    # the project's own data by its path in the project: a card says nothing of the training machine's folders
    tiny = card.model_card(tmp_path / "tiny", {"constants": {"MODEL_ID": "tiny-gpt-neox", "DATA": str(
        card.PROJECT_ROOT / "data" / "ko_tiny_qa.jsonl")}}, koalpaca_template)
    assert "`data/ko_tiny_qa.jsonl`" in tiny and str(card.PROJECT_ROOT) not in tiny
