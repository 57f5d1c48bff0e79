source .gpu-data/prefix.sh
model > /dev/null 2>&1; echo "model at $(( $(date +%s) - START )) s"
python3 -c "
import time; from pathlib import Path; from kochat.export import quantized
s=time.perf_counter(); quantized.write_quantized(Path('$M'), Path('/tmp/int4'), 'int4'); print('int4 export', round(time.perf_counter()-s,1), 's')" > $OUT/int4-export.log 2>&1
tail -1 $OUT/int4-export.log
timeout $(left 345) python3 -m bench.quant_kernels --data=$D --kernels=saved --model=/tmp/int4 --load=one_row --batches=1,1 --out=$OUT/int4-one-row.json > $OUT/int4-one-row.log 2>&1; echo "rc $? at $(( $(date +%s) - START )) s"
grep -o '"answering": "[^"]*"\|"weights_gib": [0-9.]*\|"saved fast, batch [0-9]*[^"]*\|"tok_s": [0-9.]*\|"peak_gpu_gib": [0-9.]*\|"error": .\{0,400\}' $OUT/int4-one-row.json | tr '\n' ' '
grep -v Loading $OUT/int4-one-row.log | grep -iE "stays|fail|error" | head -3
