source .gpu-data/prefix.sh
model > /dev/null 2>&1 &
MP=$!
timeout $(left 330) python3 -m pytest -q -p no:cacheprovider tests/test_humming_kernel.py tests/e2e/test_export_ko.py -k "int8 or humming" > $OUT/device-tests.log 2>&1; echo "pytest rc $? at $(( $(date +%s) - START )) s"
tail -8 $OUT/device-tests.log
wait $MP; int8export; tail -1 $OUT/int8-export.log
echo "setup done at $(( $(date +%s) - START )) s"
timeout $(left 585) python3 -m bench.quant_kernels --model=/tmp/int8 --data=$D --kernels=saved --batches=1,16 --out=$OUT/int8-humming-levels.json > $OUT/int8-humming-levels.log 2>&1
echo "bench rc $? at $(( $(date +%s) - START )) s"; grep -v Loading $OUT/int8-humming-levels.log | tail -8
