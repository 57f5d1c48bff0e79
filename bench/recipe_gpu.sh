#!/usr/bin/env bash
# The recipe end to end on one CUDA GPU at polyglot-ko-12.8b's shape, with random weights: written as
# safetensors, loaded by finetune_ko.py's own 4-bit loader, trained for a few steps on real KoAlpaca
# rows, saved, and answered with gen().
#   bench/recipe_gpu.sh TOKENIZER_DIR KOALPACA_JSONL RESULTS_DIR [extra finetune_ko.py overrides]
# e.g. bench/recipe_gpu.sh ../shared/data/polyglot-ko-tokenizer \
#        ../shared/data/koalpaca/KoAlpaca_v1.1a_textonly_1k.jsonl bench/results/recipe-h200
# SHAPE picks another shape: a name in kochat.known_models.KNOWN_MODELS or a folder with a config.json.
set -euo pipefail
tokenizer=$1 data=$2 results=$3; shift 3
cd "$(dirname "$0")/.."
shape=${SHAPE:-EleutherAI/polyglot-ko-12.8b}
model=${TMPDIR:-/tmp}/random-$(basename "$shape") run=${TMPDIR:-/tmp}/recipe-gpu-run
mkdir -p "$results"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
{
  date -u +"date: %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no GPU"
  python3 -c "import torch, transformers, peft, bitsandbytes, datasets, accelerate
print('versions: torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__,
      '| bitsandbytes', bitsandbytes.__version__, '| datasets', datasets.__version__, '| accelerate', accelerate.__version__)"
  [ -d "$model" ] || python3 -m bench.random_model --model="$shape" --tokenizer="$tokenizer" --out="$model"
  rm -rf "$run"
  start=$SECONDS
  python3 finetune_ko.py --model_id="$model" --data="$data" --run_name=recipe-gpu --output_dir="$run" \
    --max_steps=30 --logging_steps=5 --eval_steps=15 --eval_fraction=0.02 --max_new_tokens=64 "$@"
  echo "finetune_ko.py wall time: $((SECONDS - start)) s"
  python3 - "$run" <<'PY'
import sys
from safetensors.torch import load_file
w = load_file(f"{sys.argv[1]}/adapter_model.safetensors")
b = [t for k, t in w.items() if "lora_B" in k]
print(f"adapter: {len(w)} tensors, {sum(t.numel() for t in w.values()):,} parameters, "
      f"lora_B non-zero in {sum(bool(t.abs().sum() > 0) for t in b)}/{len(b)} layers")
PY
} 2>&1 | sed -u -e 's/\r/\n/g' -e 's/\x1b\[A//g' | grep --line-buffered -v -E '[0-9]+%\||^\s*$' | tee "$results/recipe.log"
cp "$run"/{run_config.json,demo.jsonl,loss.png,adapter_config.json} "$results"/
