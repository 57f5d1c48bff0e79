"""Write a random-weight model of a real shape, with a real tokenizer, as a local model folder.

Speed and memory do not depend on the weights' values, so GPU benchmarks at polyglot-ko-12.8b's shape
need no download: this folder goes through the same safetensors + 4-bit loading path as real weights.
    python3 -m bench.random_model --model=EleutherAI/polyglot-ko-12.8b --tokenizer=DIR --out=/tmp/random-12.8b
--model is a name in kochat.known_models.KNOWN_MODELS or a folder holding a config.json.
"""
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
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out, max_shard_size="5GB")
    for f in Path(TOKENIZER).iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, out / f.name)
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    print(f"random {MODEL}: {n:,} parameters, {size / 2**30:.1f} GiB of safetensors in {out} "
          f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    sys.exit(cli.run(main))
