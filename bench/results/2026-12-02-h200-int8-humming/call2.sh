source .gpu-data/prefix.sh
model; int8export; cat $OUT/int8-export.log | tail -1
echo "setup done at $(( $(date +%s) - START )) s"
timeout $(left 400) python3 -m bench.quant_kernels --model=/tmp/int8 --data=$D --kernels=saved --batches=1,16 --out=$OUT/int8-humming.json > $OUT/int8-humming.log 2>&1
echo "humming done at $(( $(date +%s) - START )) s"; grep -v Loading $OUT/int8-humming.log | tail -8
timeout $(left 570) python3 -m bench.quant_kernels --model=/tmp/int8 --data=$D --kernels=saved --batches=1 --humming=false --out=$OUT/int8-torchao-b1.json > $OUT/int8-torchao-b1.log 2>&1
echo "torchao done at $(( $(date +%s) - START )) s"; grep -v Loading $OUT/int8-torchao-b1.log | tail -4
cp .gpu-data/call2.sh $OUT/
