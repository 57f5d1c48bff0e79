source .gpu-data/prefix.sh
cp .gpu-data/prefix.sh $OUT/prefix.sh
Q=/tmp/random-qwen3-8b
python3 -m bench.random_model --model=Qwen/Qwen3-8B --tokenizer=$T --out=$Q > $OUT/random-qwen3.log 2>&1; echo "model at $(( $(date +%s) - START )) s"
timeout $(left 230) python3 -m bench.dp4a_rows --shape=qwen3-8b --rows_per_warp=1,2 --warps=4,8 --unroll=2,4,8 --out=$OUT/dp4a-qwen3.json > $OUT/dp4a-qwen3.log 2>&1; echo "dp4a_rows rc $? at $(( $(date +%s) - START )) s"
python3 -c "
import json; d = json.load(open('$OUT/dp4a-qwen3.json'))
for size, L in d['layers'].items(): print(size, L['best'], {k: L['us'].get(v) for k, v in L['best'].items()}, 'cuBLAS', L['us']['bf16'], 'humming', L['us'].get('humming'), L['weights_tb_s'])
print(d.get('ms_a_token'))" 2>&1 | tail -6
timeout $(left 585) python3 -m bench.quant_kernels --model=$Q --data=$D --kernels=bf16,gemv16 --batches=1 --dp4a=$OUT/dp4a-qwen3.json --profile=true --out=$OUT/qwen3-gemv16.json > $OUT/qwen3-gemv16.log 2>&1; echo "quant_kernels rc $? at $(( $(date +%s) - START )) s"
grep -o '"name": "[^"]*"\|"tok_s": [0-9.]*\|"gpu_us_per_step": [0-9.]*\|"wall_us_per_step": [0-9.]*\|"peak_gpu_gib": [0-9.]*\|"error": .\{0,300\}' $OUT/qwen3-gemv16.json | tr '\n' ' '
tail -3 $OUT/qwen3-gemv16.log
