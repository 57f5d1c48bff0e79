source .gpu-data/prefix.sh
model > /dev/null 2>&1; echo "model at $(( $(date +%s) - START )) s"
timeout $(left 235) python3 -m bench.quant_kernels --model=$M --data=$D --batches=1,1 --kernels=dp4a4,humming --apart=false --dp4a=bench/results/2026-12-03-h200-dp4a/dp4a-unroll8.json --out=$OUT/dp4a4-again.json > $OUT/dp4a4-again.log 2>&1; echo "rc $? at $(( $(date +%s) - START )) s"
grep -o '"[a-z0-9]* fast, batch 1[^"]*\|"tok_s": [0-9.]*\|"error": .\{0,300\}' $OUT/dp4a4-again.json
