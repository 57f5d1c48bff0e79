source .gpu-data/prefix.sh
model > /dev/null 2>&1 &
MP=$!
timeout $(left 300) python3 -m pytest -q -p no:cacheprovider tests/test_dp4a_kernel.py tests/e2e/test_export_ko.py -k "dp4a" > $OUT/device-tests-dp4a.log 2>&1; echo "pytest rc $? at $(( $(date +%s) - START )) s"
grep -E "passed|failed|Error|assert" $OUT/device-tests-dp4a.log | tail -20 | cut -c1-400
wait $MP; echo "model at $(( $(date +%s) - START )) s"
int8export; tail -1 $OUT/int8-export.log
qk(){ timeout $(left $1) python3 -m bench.quant_kernels --data=$D --kernels=saved --out=$OUT/$2.json "${@:3}" > $OUT/$2.log 2>&1; echo "$2 rc $? at $(( $(date +%s) - START )) s"; grep -o '"answering": "[^"]*"\|"weights_gib": [0-9.]*\|"saved fast, batch [0-9]*[^"]*\|"tok_s": [0-9.]*\|"first_s": [0-9.]*\|"peak_gpu_gib": [0-9.]*\|"error": .\{0,400\}' $OUT/$2.json | tr '\n' ' '; echo; grep -v Loading $OUT/$2.log | grep -iE "stays|fail|error" | head -3 | cut -c1-300; }
qk 592 int8-one-row --model=/tmp/int8 --load=one_row --batches=1,1,1
