"""Out of GPU memory in training: one line naming what to lower, with the estimate; nothing half-written."""
import importlib.util

import pytest
import torch
from transformers import Trainer

from kochat import PROJECT_ROOT
from kochat.errors import UserError


def test_out_of_memory_names_the_constants_to_lower(tmp_path, monkeypatch):
    def no_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "train", no_memory)
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("finetune_ko", PROJECT_ROOT / "finetune_ko.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(UserError) as failure:
        script.main(["--preset", "tiny", "--demo_questions="])
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("out of GPU memory training 2 × 256 tokens a step with 50% of layers checkpointed")
    assert "--dry-run estimate ~" in message and "): --batch_size=1, or lower --pack_tokens" in message
    assert "--gradient_checkpointing toward 1" in message
    assert not (tmp_path / "outputs" / "tiny" / "adapter_model.safetensors").exists()
