source .gpu-data/prefix.sh
Q=/tmp/random-qwen3-8b
python3 -m bench.random_model --model=Qwen/Qwen3-8B --tokenizer=$T --out=$Q > $OUT/random-qwen3.log 2>&1; echo "model at $(( $(date +%s) - START )) s"
python3 - $Q /tmp/qwen3-int4 > $OUT/qwen3-int4-export.log 2>&1 <<'PY'
import sys, time
from pathlib import Path
from kochat import runs
from kochat.export import quantized
from kochat.prompts import Template
model, out = Path(sys.argv[1]), Path(sys.argv[2])
runs.write_json(model / runs.TEMPLATE_FILE, Template.load("koalpaca").to_dict())  # a bare model folder: KoAlpaca form
start = time.time()
quantized.write_quantized(model, out, "int4")
print(f"int4 export written in {time.time() - start:.1f} s")
PY
tail -1 $OUT/qwen3-int4-export.log; echo "export at $(( $(date +%s) - START )) s"
timeout $(left 330) python3 -m bench.quant_kernels --data=$D --kernels=saved --model=/tmp/qwen3-int4 --load=one_row --batches=1,1,1 --out=$OUT/qwen3-int4-one-row.json > $OUT/qwen3-int4-one-row.log 2>&1; echo "rc $? at $(( $(date +%s) - START )) s"
grep -o '"answering": "[^"]*"\|"weights_gib": [0-9.]*\|"tok_s": [0-9.]*\|"first_s": [0-9.]*\|"peak_gpu_gib": [0-9.]*\|"error": .\{0,400\}' $OUT/qwen3-int4-one-row.json | tr '\n' ' '
