"""lm-eval scores the project's loaded model: a KoBEST task's log-likelihoods and accuracy equal a hand
computation on a few items with the tiny model; the base is the same load with the adapter disabled; an
evaluation run again reads its cache instead of the model."""
import types

import pytest
import torch

from kochat.evaluation import harness, suites
from support import SHARED_DATA, needs_shared_data

ITEMS = 4


def flat(lls):
    return [x for item in lls for x in item]


@pytest.fixture(scope="module")
def tiny_4bit():
    from kochat import modeling, tiny

    tokenizer = modeling.load_tokenizer(tiny.MODEL_ID)
    return tokenizer, modeling.load_model(tiny.MODEL_ID, tokenizer, four_bit=True).eval()


def hand_loglikelihoods(model, tokenizer, context: str, choices: list[str]) -> list[float]:
    """Each choice's log-likelihood after the context, as lm-eval defines a multiple-choice request: the context
    and " " + choice encoded together, the choice's tokens those after the context's own encoding, each scored
    by the model's log-softmax at the position before it."""
    found = []
    for choice in choices:
        whole = tokenizer(context + " " + choice).input_ids
        n_context = len(tokenizer(context).input_ids)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([whole])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        found.append(sum(logprobs[i - 1, whole[i]].item() for i in range(n_context, len(whole))))
    return found


@needs_shared_data
def test_copa_accuracy_is_the_hand_computed_argmax_of_the_choices_loglikelihoods(tiny_4bit, tmp_path):
    tokenizer, model = tiny_4bit
    local, _ = suites.resolve(["kobest_copa"], {"kobest": str(SHARED_DATA / "kobest")}, "dev")
    rows = local[0].rows()[:ITEMS]
    hand = [hand_loglikelihoods(model, tokenizer, f"{r['premise']}  {'그래서' if r['question'] == '결과' else '왜냐하면'}",
                                [r["alternative_1"], r["alternative_2"]]) for r in rows]
    accuracy = sum(max(range(2), key=lls.__getitem__) == r["label"] for lls, r in zip(hand, rows)) / ITEMS

    scored = harness.score(model, tokenizer, local, limit=ITEMS, batch_size=4, log_samples=True)
    samples = sorted(scored["samples"]["kobest_copa"], key=lambda s: s["doc_id"])
    lm_eval_lls = [[resp[0] for resp in s["filtered_resps"]] for s in samples]
    assert flat(lm_eval_lls) == pytest.approx(flat(hand), abs=1e-3)
    assert scored["tasks"]["kobest_copa"]["acc"] == pytest.approx(accuracy)
    assert scored["tasks"]["kobest_copa"]["items"] == ITEMS and "f1" in scored["tasks"]["kobest_copa"]

    # The same model with a LoRA on it (random, so it changes the scores): the base, scored inside
    # disable_adapter() on that one load, is the plain model again; each has its own cache.
    from peft import LoraConfig, get_peft_model

    (tmp_path / "adapter_model.safetensors").write_bytes(b"weights")
    run = types.SimpleNamespace(folder=tmp_path, base_model="tiny", adapter=str(tmp_path))
    peft_model = get_peft_model(model, LoraConfig(r=8, target_modules=["query_key_value"], init_lora_weights=False))
    try:
        both = harness.score_base_and_adapter(peft_model, tokenizer, run, local, cache_dir=tmp_path / "cache",
                                              four_bit=True, limit=ITEMS, batch_size=4, log_samples=True)
        base = sorted(both["base"]["samples"]["kobest_copa"], key=lambda s: s["doc_id"])
        adapter = sorted(both["adapter"]["samples"]["kobest_copa"], key=lambda s: s["doc_id"])
        assert flat([[r[0] for r in s["filtered_resps"]] for s in base]) == pytest.approx(flat(hand), abs=1e-3)
        assert flat([[r[0] for r in s["filtered_resps"]] for s in adapter]) != pytest.approx(flat(hand), abs=1e-3)
        assert len(list((tmp_path / "cache").glob("*.db"))) == 2

        # Run again: every request is in the caches, so the model is never called.
        def refuse(*args, **kwargs):
            raise AssertionError("the model was called although every answer is cached")
        peft_model.base_model.model.forward = refuse
        again = harness.score_base_and_adapter(peft_model, tokenizer, run, local, cache_dir=tmp_path / "cache",
                                               four_bit=True, limit=ITEMS, batch_size=4)
        assert {k: v["tasks"] for k, v in again.items()} == {k: v["tasks"] for k, v in both.items()}
    finally:
        del peft_model.base_model.model.forward
        peft_model.unload()
