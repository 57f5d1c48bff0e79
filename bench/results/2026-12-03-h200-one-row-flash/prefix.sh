START=$(date +%s); left(){ echo $(( $1 - ($(date +%s) - START) )); }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .whl-probe/*.whl $( [ -d .whl-serve ] && echo .whl-serve/*.whl ) > $OUT/pip.log 2>&1
export PYTHONPATH=/tmp/site TORCH_LOGS=-inductor PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HUMMING_CACHE_DIR=/tmp/humming-cache PATH=/tmp/site/bin:$PATH
T=$PWD/.gpu-data/polyglot-ko-tokenizer D=$PWD/.gpu-data/koalpaca-1k.jsonl M=/tmp/random-polyglot-ko-12.8b
python3 - > $OUT/versions.txt 2>&1 <<'PY'
import importlib.metadata as m, sys
print("python", sys.version.split()[0])
for p in ["torch", "transformers", "peft", "accelerate", "torchao", "bitsandbytes", "humming-kernels", "cuda-bindings", "triton", "fastapi", "uvicorn", "py-spy"]:
    try: print(p, m.version(p))
    except Exception: print(p, "-")
PY
model(){ [ -d $M ] || python3 -m bench.random_model --model=EleutherAI/polyglot-ko-12.8b --tokenizer=$T --out=$M > $OUT/random_model.log 2>&1; }
int8export(){ [ -d /tmp/int8 ] || python3 -c "
import time; from pathlib import Path; from kochat.export import quantized
s=time.perf_counter(); quantized.write_quantized(Path('$M'), Path('/tmp/int8'), 'int8'); print('int8 export', round(time.perf_counter()-s,1), 's')" > $OUT/int8-export.log 2>&1; }
