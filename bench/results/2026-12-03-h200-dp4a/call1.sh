source .gpu-data/prefix.sh
model > /dev/null 2>&1 &
MP=$!
timeout $(left 220) python3 -m bench.dp4a_rows --shape=polyglot-ko-12.8b --out=$OUT/dp4a.json > $OUT/dp4a.log 2>&1; echo "dp4a rc $? at $(( $(date +%s) - START )) s"
tail -3 $OUT/dp4a.log | cut -c1-1200
best(){ python3 -c "
import json,re; d=json.load(open('$OUT/dp4a.json'))['ms_a_token']
n=min((k for k in d if k.startswith('$1 ')), key=d.get); print(','.join(re.findall(r'\d+', n.split(' ')[1])))"; }
B4=$(best w4a8); B8=$(best w8a8); B16=$(best gemv16); echo "best w4a8 $B4 w8a8 $B8 gemv16 $B16"
wait $MP; echo "model at $(( $(date +%s) - START )) s"
qk(){ timeout $(left 590) python3 -m bench.quant_kernels --model=$M --data=$D --batches=1 --out=$OUT/$1.json "${@:2}" > $OUT/$1.log 2>&1; echo "$1 rc $? at $(( $(date +%s) - START )) s"; grep -o '"[a-z0-9]* fast, batch 1\|"tok_s": [0-9.]*\|"gpu_us_per_step": [0-9.]*\|"error": .\{0,300\}' $OUT/$1.json; }
[ -n "$B4" ] && qk dp4a4 --kernels=dp4a4,humming --profile=true --dp4a=$B4
[ -n "$B16" ] && [ $(left 590) -gt 150 ] && qk gemv16 --kernels=gemv16,bf16 --dp4a=$B16
[ -n "$B8" ] && [ $(left 590) -gt 100 ] && qk dp4a8 --kernels=dp4a8 --dp4a=$B8
