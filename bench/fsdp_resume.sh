#!/usr/bin/env bash
# FSDP-QLoRA on 2 GPUs at polyglot-ko-1.3b's shape (random weights): a run stopped by SIGTERM to the launcher
# after its first sealed checkpoint, then continued by the same command, against a run that went straight
# through (24 steps, a checkpoint every 6). Writes both logs, the loss of each step side by side and the adapters'
# relative difference (resume-compare.txt), and what the resumed run's adapter and checkpoints hold.
#   bench/fsdp_resume.sh TOKENIZER_DIR KOALPACA_JSONL RESULTS_DIR
set -uo pipefail
tokenizer=$1 data=$2 results=$3
cd "$(dirname "$0")/.."
model=${TMPDIR:-/tmp}/random-polyglot-ko-1.3b straight=${TMPDIR:-/tmp}/fsdp-straight stopped=${TMPDIR:-/tmp}/fsdp-stopped
mkdir -p "$results"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TORCH_LOGS=-inductor
[ -d "$model" ] || python3 -m bench.random_model --model=EleutherAI/polyglot-ko-1.3b --tokenizer="$tokenizer" --out="$model"
common=(--model_id="$model" --data="$data" --eval_fraction=0 --gradient_checkpointing=1 --logging_steps=1
        --max_steps=24 --save_steps=6 --demo_questions=)
launch=(accelerate launch --config_file configs/fsdp_qlora.yaml --num_processes=2 finetune_ko.py "${common[@]}")
filter() { sed -u -e 's/\r/\n/g' | grep --line-buffered -v -E '[0-9]+%\||^\s*$'; }
"${launch[@]}" --output_dir="$straight" --overwrite=true 2>&1 | filter > "$results/resume-straight-through.log"
"${launch[@]}" --output_dir="$stopped" --overwrite=true > "$results/resume-stopped-then-resumed.log" 2>&1 &
pid=$!
for _ in $(seq 400); do [ -f "$stopped/checkpoints/checkpoint-6/kochat-complete.json" ] && break; sleep 0.5; done
kill -TERM "$pid"; wait "$pid"; echo "== stopped (exit $?); the same command again" >> "$results/resume-stopped-then-resumed.log"
"${launch[@]}" --output_dir="$stopped" 2>&1 | filter >> "$results/resume-stopped-then-resumed.log"
python3 - "$straight" "$stopped" > "$results/resume-compare.txt" <<'PY'
import json, sys
from safetensors.torch import load_file
straight, resumed = sys.argv[1], sys.argv[2]
def losses(run):
    history = json.load(open(f"{run}/run_config.json"))["train"]["log_history"]
    return {e["step"]: e["loss"] for e in history if "loss" in e}
a, b = losses(straight), losses(resumed)
print("step  straight  resumed  relative difference")
for step in sorted(a.keys() & b.keys()):
    print(f"{step:4d} {a[step]:.4f} {b[step]:.4f} {abs(a[step] - b[step]) / abs(a[step]):.2e}")
wa, wb = load_file(f"{straight}/adapter_model.safetensors"), load_file(f"{resumed}/adapter_model.safetensors")
def norm(keys, diff):
    return sum(float(((wa[k] - wb[k]) if diff else wa[k]).float().norm() ** 2) for k in keys) ** 0.5
lora_b = [k for k in wa if "lora_B" in k]
print(f"adapters: {len(wa)} tensors; relative difference all {norm(wa, True) / norm(wa, False):.2e}, "
      f"lora_B {norm(lora_b, True) / norm(lora_b, False):.2e}")
PY
python3 -m bench.inspect_run --run="$stopped" >> "$results/resume-compare.txt"
cat "$results/resume-compare.txt"
