"""The Markdown table: base vs adapter with the difference, and a merged folder scored alone."""
from kochat.evaluation import scores


def doc(models):
    row = {"acc": 0.5, "acc_stderr": 0.1, "f1": 0.4, "items": 10}
    better = {"acc": 0.7, "acc_stderr": 0.1, "f1": 0.65, "items": 10}
    tasks = {"kobest_boolq": {m: (better if m != "base" else row) for m in models},
             "kobest_copa": {m: row for m in models}}
    return {"run": "outputs/hr", "base_model": "EleutherAI/polyglot-ko-12.8b", "models": models, "split": "test",
            "limit": None, "four_bit": True, "harness": {"version": "0.4.13"}, "tasks": tasks}


def test_base_vs_adapter_table():
    text = scores.markdown(doc(["base", "adapter"]))
    assert "| kobest_boolq | accuracy | 0.500 ± 0.100 | 0.700 ± 0.100 | +0.200 | 10 |" in text
    assert "| kobest_boolq | macro-F1 | 0.400 | 0.650 | +0.250 | 10 |" in text
    assert "| mean of 2 tasks | accuracy | 0.500 | 0.600 | +0.100 |  |" in text
    assert "lm-evaluation-harness 0.4.13" in text


def test_a_merged_folder_is_scored_alone():
    text = scores.markdown(doc(["model"]))
    assert "| kobest_boolq | accuracy | 0.700 ± 0.100 | 10 |" in text and "its base is not in it" in text
