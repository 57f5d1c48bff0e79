"""Write a random-weight model of a real shape, with a real tokenizer, as a local model folder.

Speed and memory do not depend on the weights' values, so GPU benchmarks at polyglot-ko-12.8b's shape
need no download: this folder goes through the same safetensors + 4-bit loading path as real weights.
    python3 -m bench.random_model --model=EleutherAI/polyglot-ko-12.8b --tokenizer=DIR --out=/tmp/random-12.8b
--model is a name in kochat.known_models.KNOWN_MODELS or a folder holding a config.json. On a GPU the model is made
there and saved by transformers; on a CPU a GPT-NeoX model's tensors are drawn and written one at a time (a 12.8b
model is larger than the memory of many machines; 259 s on this project's 2 cores).
"""
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from kochat import cli, modeling

# ---- constants: override on the command line as --name=value ------------------------------------------
MODEL = "EleutherAI/polyglot-ko-12.8b"  # a name in kochat.known_models.KNOWN_MODELS, or a folder with a config.json
TOKENIZER = ""                          # a folder with tokenizer.json, copied beside the weights; required
OUT = ""                                # the model folder to write; required


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "TOKENIZER", "OUT")
    out = Path(OUT)
    config = modeling.load_config(MODEL, use_known_table=True)
    config.dtype = "bfloat16"
    start = time.perf_counter()
    torch.manual_seed(0)
    if torch.cuda.is_available() or config.model_type != "gpt_neox" or config.tie_word_embeddings:
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        n = sum(p.numel() for p in model.parameters())
        model.save_pretrained(out, max_shard_size="5GB")
    else:  # a 12.8b model (24 GiB) does not fit a CPU machine's memory at once: made a tensor at a time
        n = write_streamed(config, out)
    for f in Path(TOKENIZER).iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, out / f.name)
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    print(f"random {MODEL}: {n:,} parameters, {size / 2**30:.1f} GiB of safetensors in {out} "
          f"({time.perf_counter() - start:.0f} s)")


def write_streamed(config, out: Path, shard_bytes: int = 5 * 2**30) -> int:
    """A GPT-NeoX model's tensors (untied) drawn one at a time as transformers initialises them (normal(0,
    initializer_range); layer norms' weights 1, biases 0), in bf16 safetensors shards of about `shard_bytes` with
    their index. Returns the parameter count."""
    from safetensors.torch import save_file

    with torch.device("meta"):
        shapes = {name: t.shape for name, t in AutoModelForCausalLM.from_config(config).state_dict().items()}
    if config.model_type == "gpt_neox":  # the output layer's name in polyglot-ko's files, as save_pretrained writes it
        shapes = {name.replace("lm_head.", "embed_out.", 1): shape for name, shape in shapes.items()}
    out.mkdir(parents=True, exist_ok=True)
    shards, shard, size, last = [], {}, 0, list(shapes)[-1]  # shards: the tensor names of each file written
    for name, shape in shapes.items():
        if name.endswith(".bias"):
            tensor = torch.zeros(shape, dtype=torch.bfloat16)
        elif "norm" in name:
            tensor = torch.ones(shape, dtype=torch.bfloat16)
        else:
            tensor = torch.empty(shape, dtype=torch.bfloat16).normal_(0, config.initializer_range)
        shard[name], size = tensor, size + tensor.nbytes
        if size >= shard_bytes or name == last:
            shards.append(list(shard))
            save_file(shard, out / f"part-{len(shards)}.safetensors", metadata={"format": "pt"})
            shard, size = {}, 0
    names = [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    for i, name in enumerate(names, 1):
        (out / f"part-{i}.safetensors").rename(out / name)
    weight_map = {tensor: names[i] for i, tensors in enumerate(shards) for tensor in tensors}
    total = sum(torch.Size(shape).numel() * 2 for shape in shapes.values())
    (out / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n", encoding="utf-8")
    config.save_pretrained(out)
    return total // 2


if __name__ == "__main__":
    sys.exit(cli.run(main))
