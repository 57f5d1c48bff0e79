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


def test_an_fsdp_checkpoint_keeps_the_whole_adapter_and_the_optimizer_state_and_both_load_back(tmp_path):
    """Two CPU processes (gloo) shard the tiny model with FSDP as configs/fsdp_qlora.yaml does; the checkpoint's
    adapter holds every weight under PEFT's names, equal to the unsharded ones, and loads into a fresh model as a
    resumed run loads it; the optimizer's sharded state loads into a fresh optimizer as the Trainer resumes it
    (tests/fixtures/fsdp_adapter_worker.py; the GPU run: bench/results/2026-11-30-h200x2-fsdp)."""
    import os
    import subprocess
    import sys

    from kochat import PROJECT_ROOT

    worker = PROJECT_ROOT / "tests" / "fixtures" / "fsdp_adapter_worker.py"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(worker),
                             str(tmp_path)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "adapter of 4 tensors gathered from 2 shards and loaded back" in result.stdout
    assert "optimizer state of 4 sharded weights saved and loaded back" in result.stdout  # Adam's moments resume too
    assert (tmp_path / "checkpoint-3" / "adapter_config.json").is_file()
