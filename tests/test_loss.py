"""The chunked loss equals transformers' own, in value and in the LoRA gradients, on both tiny architectures."""
import pytest
import torch
from peft import LoraConfig, get_peft_model

from kochat import modeling, packing, tiny
from kochat.loss import chunked_loss
from kochat.tokenization import IGNORE


@pytest.mark.parametrize("model_id", [tiny.MODEL_ID, tiny.CHAT_MODEL_ID])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
def test_the_chunked_loss_and_its_gradients_are_transformers_own(model_id, packed):
    tokenizer = modeling.load_tokenizer(model_id)
    config = modeling.load_config(model_id)
    torch.manual_seed(0)
    model = get_peft_model(modeling.load_model(model_id, tokenizer, four_bit=False),
                           LoraConfig(r=4, target_modules=modeling.lora_targets(config, "auto"), init_lora_weights=False))
    ids = torch.randint(10, 500, (2, 40))
    labels = ids.clone()
    labels[:, :12] = IGNORE  # a prompt
    labels[1, 30:] = IGNORE  # and padding
    inputs = {"input_ids": ids}
    if packed:  # two rows in one sequence: positions restart, no attention mask
        inputs["position_ids"] = torch.cat([torch.arange(25), torch.arange(15)]).repeat(2, 1)
        labels[:, 25] = IGNORE
    else:
        inputs["attention_mask"] = (labels != IGNORE) | (torch.arange(40) < 30)

    def loss_and_grads(compute):
        model.zero_grad()
        loss = compute()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    theirs, their_grads = loss_and_grads(lambda: model(**inputs, labels=labels, use_cache=False).loss)  # as in training
    ours, our_grads = loss_and_grads(lambda: chunked_loss(model, inputs, labels, chunk=7))
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert len(our_grads) >= 4 and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(our_grads, their_grads))
    # under gradient accumulation the Trainer divides by the tokens of all its micro-batches
    assert torch.allclose(chunked_loss(model, inputs, labels, 7, num_items=100),
                          theirs * (labels[:, 1:] != IGNORE).sum() / 100, atol=1e-5)


def test_a_lora_on_the_output_head_is_part_of_the_chunked_loss():
    tokenizer = modeling.load_tokenizer(tiny.CHAT_MODEL_ID)
    torch.manual_seed(0)
    model = get_peft_model(modeling.load_model(tiny.CHAT_MODEL_ID, tokenizer, four_bit=False),
                           LoraConfig(r=4, target_modules=["q_proj", "lm_head"], init_lora_weights=False))
    ids = torch.randint(10, 500, (1, 30))
    labels = ids.clone()
    labels[:, :8] = IGNORE
    theirs = model(input_ids=ids, labels=labels, use_cache=False).loss
    ours = chunked_loss(model, {"input_ids": ids}, labels, chunk=7)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_models_that_scale_their_logits_keep_transformers_loss():
    from transformers import AutoConfig

    from kochat.loss import computes_plain_logits

    assert computes_plain_logits(AutoConfig.for_model("qwen3")) and computes_plain_logits(AutoConfig.for_model("gpt_neox"))
    assert not computes_plain_logits(AutoConfig.for_model("cohere"))  # logit_scale
    assert not computes_plain_logits(AutoConfig.for_model("granite"))  # logits_scaling


def test_finetune_ko_says_why_the_chunked_loss_is_not_used():
    from transformers import AutoConfig

    from kochat.loss import chunked_loss_off

    assert chunked_loss_off(AutoConfig.for_model("qwen3"), 1) == ""
    assert chunked_loss_off(AutoConfig.for_model("cohere"), 1).startswith(
        "cohere's logits are not its output head's plain product")
    assert chunked_loss_off(AutoConfig.for_model("qwen3"), 2).startswith("several processes (DDP, FSDP)")
