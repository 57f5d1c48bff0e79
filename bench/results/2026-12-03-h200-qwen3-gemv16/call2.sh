source .gpu-data/prefix.sh
Q=/tmp/random-qwen3-8b
R=bench/results/2026-12-03-h200-qwen3-gemv16
[ -d $Q ] || python3 -m bench.random_model --model=Qwen/Qwen3-8B --tokenizer=$T --out=$Q > $OUT/random-qwen3.log 2>&1; echo "model at $(( $(date +%s) - START )) s"
timeout $(left 585) python3 -m bench.quant_kernels --model=$Q --data=$D --kernels=gemv16,bf16 --batches=1,1 --dp4a=$R/call1/dp4a-qwen3.json --profile=true --out=$OUT/qwen3-gemv16-fused.json > $OUT/qwen3-gemv16-fused.log 2>&1; echo "quant_kernels rc $? at $(( $(date +%s) - START )) s"
grep -o '"name": "[^"]*"\|"tok_s": [0-9.]*\|"gpu_us_per_step": [0-9.]*\|"wall_us_per_step": [0-9.]*\|"peak_gpu_gib": [0-9.]*\|"error": .\{0,300\}' $OUT/qwen3-gemv16-fused.json | tr '\n' ' '
tail -3 $OUT/qwen3-gemv16-fused.log
