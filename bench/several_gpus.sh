#!/usr/bin/env bash
# finetune_ko.py at polyglot-ko-12.8b's shape (random weights) on one GPU, then on N GPUs with DDP (torchrun) and
# FSDP-QLoRA (accelerate launch --config_file configs/fsdp_qlora.yaml, every layer checkpointed), each run
# as a user starts it; the speed (real tokens/s after the first step, all GPUs) and the fullest GPU's peak come
# from each run's run_config.json. Checkpoints are saved mid-run and the demo answers, so saving, sealing and
# the demo are exercised under each launcher too.
#   bench/several_gpus.sh TOKENIZER_DIR KOALPACA_JSONL RESULTS_DIR [N=2] [STEPS=20] [LAUNCHES="one-gpu ddp fsdp"]
# Then results/several-gpus.json holds one row a run (those in RESULTS_DIR) and each run's speed-up over one GPU.
set -uo pipefail  # one launcher failing leaves the others to run
tokenizer=$1 data=$2 results=$3 n=${4:-2} steps=${5:-20} launches=${6:-one-gpu ddp fsdp}
cd "$(dirname "$0")/.."
model=${TMPDIR:-/tmp}/random-polyglot-ko-12.8b
mkdir -p "$results"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TORCH_LOGS=-inductor
[ -d "$model" ] || python3 -m bench.random_model --model=EleutherAI/polyglot-ko-12.8b --tokenizer="$tokenizer" --out="$model"
common=(--model_id="$model" --data="$data" --max_steps="$steps" --eval_fraction=0 --save_steps=$((steps / 2))
        --logging_steps=5 --max_new_tokens=16 --overwrite=true)
run() {  # run NAME COMMAND...: the run's output filtered into NAME.log, its run_config.json beside it
  local name=$1; shift
  [[ " $launches " == *" ${name%-[0-9]*} "* ]] || return 0  # NAME less its -N
  echo "== $name: $*" | tee "$results/$name.log"
  "$@" "${common[@]}" --output_dir="${TMPDIR:-/tmp}/run-$name" 2>&1 | sed -u -e 's/\r/\n/g' \
    | grep --line-buffered -v -E '[0-9]+%\||^\s*$|select_algorithm' | tee -a "$results/$name.log" | grep -E '^\[[0-9]\]|error'
  cp "${TMPDIR:-/tmp}/run-$name/run_config.json" "$results/$name-run_config.json" 2>/dev/null
}
run one-gpu env CUDA_VISIBLE_DEVICES=0 python3 finetune_ko.py
run "ddp-$n" torchrun --nproc_per_node="$n" finetune_ko.py
run "fsdp-$n" accelerate launch --config_file configs/fsdp_qlora.yaml --num_processes="$n" finetune_ko.py \
    --gradient_checkpointing=1
[ -d "${TMPDIR:-/tmp}/run-fsdp-$n" ] && python3 -m bench.inspect_run --run="${TMPDIR:-/tmp}/run-fsdp-$n" \
  > "$results/fsdp-$n-inspect.txt"  # the adapter gathered from the shards, and each checkpoint's
python3 - "$results" "$n" <<'PY'
import json, sys
from pathlib import Path
results, n = Path(sys.argv[1]), sys.argv[2]
rows = {}
for name in ("one-gpu", f"ddp-{n}", f"fsdp-{n}"):
    path = results / f"{name}-run_config.json"
    if path.exists():
        c = json.loads(path.read_text())
        rows[name] = {"processes": c["processes"], "strategy": c["strategy"],
                      "real_tok_s": c["timing"]["real_tok_s_after_first_step"],
                      "peak_gib_fullest_gpu": c["gpu_peak_gib"]["after_training"],
                      "gradient_checkpointing": c["gradient_checkpointing"], "versions": c["versions"]}
one = rows.get("one-gpu", {}).get("real_tok_s")
for row in rows.values():
    row["speedup_over_one_gpu"] = round(row["real_tok_s"] / one, 3) if one and row["real_tok_s"] else None
(results / "several-gpus.json").write_text(json.dumps(rows, indent=2) + "\n")
print(json.dumps(rows, indent=2))
PY
