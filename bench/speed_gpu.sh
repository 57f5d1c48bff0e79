#!/usr/bin/env bash
# The full speed run of bench/RESULTS.md on one CUDA GPU, at polyglot-ko-12.8b's shape with random weights:
# the recipe end to end first (model load, start to first step: on a fresh machine, with torch.compile's
# cache still empty, as a user's first run), the seed recipe against the defaults in one process, gen()
# fast at batch 1 and 16; then results/latest.json.
#   bench/speed_gpu.sh TOKENIZER_DIR KOALPACA_JSONL RESULTS_DIR
# e.g. bench/speed_gpu.sh ../shared/data/polyglot-ko-tokenizer \
#        ../shared/data/koalpaca/KoAlpaca_v1.1a_textonly_1k.jsonl bench/results/$(date +%F)-h200
set -euo pipefail
tokenizer=$1 data=$2 results=$3
cd "$(dirname "$0")/.."
model=${TMPDIR:-/tmp}/random-polyglot-ko-12.8b
mkdir -p "$results"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
[ -d "$model" ] || python3 -m bench.random_model --model=EleutherAI/polyglot-ko-12.8b --tokenizer="$tokenizer" --out="$model"
bench/recipe_gpu.sh "$tokenizer" "$data" "$results/recipe" > /dev/null
python3 -m bench.speed --model="$model" --data="$data" --out="$results/speed-train.json" --part=train --settings=0,2 --steps=20
python3 -m bench.speed --model="$model" --data="$data" --out="$results/speed-gen.json" --part=gen --gen_modes=fast
python3 -m bench.summarize --train="$results/speed-train.json" --gen="$results/speed-gen.json" \
    --recipe_log="$results/recipe/recipe.log"
