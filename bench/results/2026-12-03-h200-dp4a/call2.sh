source .gpu-data/prefix.sh
model > /dev/null 2>&1 &
MP=$!
timeout $(left 150) python3 -m bench.dp4a_rows --shape=polyglot-ko-12.8b --rows_per_warp=1,2 --warps=4,8 --unroll=2,4,8 --out=$OUT/dp4a-unroll8.json > $OUT/dp4a-unroll8.log 2>&1; echo "dp4a rc $? at $(( $(date +%s) - START )) s"
tail -1 $OUT/dp4a-unroll8.log | cut -c1-600
wait $MP; echo "model at $(( $(date +%s) - START )) s"
qk(){ timeout $(left 540) python3 -m bench.quant_kernels --model=$M --data=$D --batches=1 --out=$OUT/$1.json "${@:2}" > $OUT/$1.log 2>&1; echo "$1 rc $? at $(( $(date +%s) - START )) s"; grep -o '"[a-z0-9]* fast, batch 1\|"tok_s": [0-9.]*\|"gpu_us_per_step": [0-9.]*\|"wall_us_per_step": [0-9.]*\|"error": .\{0,300\}' $OUT/$1.json; }
qk dp4a4-apart-false --kernels=dp4a4 --apart=false --profile=true --dp4a=$OUT/dp4a-unroll8.json
[ $(left 540) -gt 170 ] && qk dp4a8-apart-false --kernels=dp4a8 --apart=false --dp4a=$OUT/dp4a-unroll8.json
