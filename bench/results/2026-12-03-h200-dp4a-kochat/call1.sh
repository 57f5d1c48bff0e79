source .gpu-data/prefix.sh
model > /dev/null 2>&1 &
MP=$!
timeout $(left 290) python3 -m pytest -q -p no:cacheprovider tests/test_dp4a_kernel.py tests/e2e/test_export_ko.py -k "dp4a or int4_answers" > $OUT/device-tests-dp4a.log 2>&1; echo "pytest rc $? at $(( $(date +%s) - START )) s"
grep -E "passed|failed|Error|error" $OUT/device-tests-dp4a.log | tail -15
wait $MP; echo "model at $(( $(date +%s) - START )) s"
[ -d /tmp/int4 ] || python3 -c "
import time; from pathlib import Path; from kochat.export import quantized
s=time.perf_counter(); quantized.write_quantized(Path('$M'), Path('/tmp/int4'), 'int4'); print('int4 export', round(time.perf_counter()-s,1), 's')" > $OUT/int4-export.log 2>&1
tail -1 $OUT/int4-export.log; echo "export at $(( $(date +%s) - START )) s"
timeout $(left 592) python3 -m bench.quant_kernels --model=/tmp/int4 --data=$D --kernels=saved --load=one_row --batches=1,1 --out=$OUT/int4-one-row.json > $OUT/int4-one-row.log 2>&1
echo "bench rc $? at $(( $(date +%s) - START )) s"
grep -o '"answering": "[^"]*"\|"weights_gib": [0-9.]*\|"saved fast, batch 1[^"]*\|"tok_s": [0-9.]*\|"peak_gpu_gib": [0-9.]*\|"error": .\{0,400\}' $OUT/int4-one-row.json
grep -v Loading $OUT/int4-one-row.log | grep -iE "error|stays|fail" | head -5
