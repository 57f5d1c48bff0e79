source .gpu-data/prefix.sh
model > /dev/null 2>&1; echo "model at $(( $(date +%s) - START )) s"
[ -d /tmp/int4 ] || python3 -c "
import time; from pathlib import Path; from kochat.export import quantized
s=time.perf_counter(); quantized.write_quantized(Path('$M'), Path('/tmp/int4'), 'int4'); print('int4 export', round(time.perf_counter()-s,1), 's')" > $OUT/int4-export.log 2>&1
tail -1 $OUT/int4-export.log
qk(){ timeout $(left $1) python3 -m bench.quant_kernels --data=$D --kernels=saved --out=$OUT/$2.json "${@:3}" > $OUT/$2.log 2>&1; echo "$2 rc $? at $(( $(date +%s) - START )) s"; grep -o '"answering": "[^"]*"\|"weights_gib": [0-9.]*\|"saved fast, batch [0-9]*[^"]*\|"tok_s": [0-9.]*\|"peak_gpu_gib": [0-9.]*\|"error": .\{0,400\}' $OUT/$2.json | tr '\n' ' '; echo; }
qk 590 int4-one-row --model=/tmp/int4 --load=one_row --batches=1,1
int8export; tail -1 $OUT/int8-export.log; echo "int8 export at $(( $(date +%s) - START )) s"
qk 590 int8-one-row --model=/tmp/int8 --load=one_row --batches=1,1
[ $(left 590) -gt 150 ] && qk 590 int4-both --model=/tmp/int4 --load=both --batches=1,16
