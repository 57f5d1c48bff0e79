source .gpu-data/prefix.sh
model > /dev/null 2>&1 &
MP=$!
timeout $(left 170) python3 -m pytest -q -p no:cacheprovider tests/test_kv_cache.py tests/test_decode_attention.py -x > $OUT/device-tests-pool.log 2>&1; echo "pytest rc $? at $(( $(date +%s) - START )) s"
tail -4 $OUT/device-tests-pool.log
wait $MP
[ -d /tmp/int4 ] || python3 -c "
import time; from pathlib import Path; from kochat.export import quantized
s=time.perf_counter(); quantized.write_quantized(Path('$M'), Path('/tmp/int4'), 'int4'); print('int4 export', round(time.perf_counter()-s,1), 's')" > $OUT/int4-export.log 2>&1
tail -1 $OUT/int4-export.log; echo "setup done at $(( $(date +%s) - START )) s"
timeout $(left 590) python3 -m bench.quant_kernels --model=/tmp/int4 --data=$D --kernels=saved --batches=16 --out=$OUT/int4-b16-pooled.json > $OUT/int4-b16-pooled.log 2>&1
echo "bench rc $? at $(( $(date +%s) - START )) s"; grep -v Loading $OUT/int4-b16-pooled.log | grep -v "layers onto" | tail -6
