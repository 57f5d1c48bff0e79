"""Write a random-weight model of a real shape, with a real tokenizer, as a local model folder.

Speed and memory do not depend on the weights' values, so GPU benchmarks at polyglot-ko-12.8b's shape
need no download: this folder goes through the same safetensors + 4-bit loading path as real weights.
    python bench/random_model.py --model EleutherAI/polyglot-ko-12.8b --tokenizer DIR --out /tmp/random-12.8b
--model is a name in kochat.modeling.KNOWN_CONFIGS or a folder holding a config.json.
"""
import argparse
import shutil
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kochat import modeling  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokenizer", required=True, help="a folder with tokenizer.json")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    config = modeling.load_config(args.model, use_known_table=True)
    config.dtype = "bfloat16"
    start = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out, max_shard_size="5GB")
    for f in Path(args.tokenizer).iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, out / f.name)
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    print(f"random {args.model}: {n:,} parameters, {size / 2**30:.1f} GiB of safetensors in {out} "
          f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
