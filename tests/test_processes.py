from kochat import processes


def test_the_launch_is_read_from_the_launchers_environment(monkeypatch):
    for name in ("WORLD_SIZE", "ACCELERATE_USE_FSDP", "RANK"):
        monkeypatch.delenv(name, raising=False)
    assert processes.launch() == processes.Launch(1, "one process") and processes.is_main()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert processes.launch() == processes.Launch(4, "ddp") and not processes.is_main()
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what accelerate launch --config_file configs/fsdp_qlora.yaml sets
    assert processes.launch().fsdp


def test_the_adapter_of_fsdp_wrapped_layers_keeps_its_weights_under_peft_names(tiny_tokenizer):
    """FSDP wraps each decoder layer, so module names carry its wrapper in the middle; the adapter written from
    such a model has PEFT's own names and every weight (stripping the wrapper first made peft keep none)."""
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    from kochat import modeling, tiny

    model = get_peft_model(modeling.load_model(tiny.MODEL_ID, tiny_tokenizer, four_bit=False, device_map="cpu"),
                           LoraConfig(r=4, target_modules=["query_key_value"], init_lora_weights=False))
    expected = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}

    class Wrapper(torch.nn.Module):  # what FullyShardedDataParallel puts around a layer, for its names
        def __init__(self, inner):
            super().__init__()
            self._fsdp_wrapped_module = inner

    layers = model.base_model.model.gpt_neox.layers
    for i in range(len(layers)):
        layers[i] = Wrapper(layers[i])
    assert any(processes.FSDP_PREFIX in name for name, _ in model.named_parameters())
    weights = processes.adapter_weights(model)
    assert weights.keys() == expected.keys() and len(weights) == 4
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
