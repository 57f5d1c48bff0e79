#!/usr/bin/env bash
# serve_ko.py at polyglot-ko-12.8b's shape on one CUDA GPU, with random weights: the model exported to int4 as
# export_ko.py writes it (kochat.export.quantized), served with its defaults (warm-up, batch kernel) and loaded
# by bench.serve_load, 256 new tokens a request, 1, 16 and 64 clients unless --levels says otherwise.
#   bench/serve_gpu.sh TOKENIZER_DIR RESULTS_DIR [more bench.serve_load options]
# e.g. bench/serve_gpu.sh ../shared/data/polyglot-ko-tokenizer bench/results/serve-h200 --serve_args="--batch_kernel=fp8"
set -euo pipefail
tokenizer=$(realpath "$1") results=$(realpath -m "$2"); shift 2
cd "$(dirname "$0")/.."
model=${TMPDIR:-/tmp}/random-polyglot-ko-12.8b int4=${TMPDIR:-/tmp}/random-polyglot-ko-12.8b-int4
mkdir -p "$results"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# each folder counts as made once its last file is there (a call killed while writing leaves one without it)
[ -f "$model/tokenizer.json" ] || python3 -m bench.random_model --model=EleutherAI/polyglot-ko-12.8b --tokenizer="$tokenizer" --out="$model"
[ -f "$int4/template.json" ] || python3 - "$model" "$int4" <<'PY'
import sys, time
from pathlib import Path
from kochat import runs
from kochat.export import quantized
from kochat.prompts import Template
model, out = Path(sys.argv[1]), Path(sys.argv[2])
if not (model / runs.TEMPLATE_FILE).exists():  # a bare model folder: answered in the KoAlpaca form
    runs.write_json(model / runs.TEMPLATE_FILE, Template.load("koalpaca").to_dict())
start = time.time()
quantized.write_quantized(model, out, "int4")
print(f"int4 export written in {time.time() - start:.1f} s")
PY
python3 -m bench.serve_load --adapter="$int4" --max_tokens=256 --warmup_seconds=10 --seconds=30 \
  --out="$results/serve_int4.json" "$@"
# which kernels answered: the server says so in its log (none of these lines: the export's tinygemm)
grep -E "answering with|moved onto|also on|stays on|batch_kernel" "$results/serve_int4.server.log" || true
