source .gpu-data/prefix.sh
model; int8export; tail -1 $OUT/int8-export.log; echo "setup done at $(( $(date +%s) - START )) s"
timeout $(left 300) python3 -m bench.quant_kernels --model=/tmp/int8 --data=$D --kernels=saved --batches=16 --out=$OUT/int8-b16-pooled.json > $OUT/int8-b16-pooled.log 2>&1
echo "bench rc $? at $(( $(date +%s) - START )) s"; grep "saved" $OUT/int8-b16-pooled.log | tail -3
