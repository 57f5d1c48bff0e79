source .gpu-data/prefix.sh
Q=/tmp/random-qwen3-8b
[ -d $Q ] || python3 -m bench.random_model --model=Qwen/Qwen3-8B --tokenizer=$T --out=$Q > $OUT/random-qwen3.log 2>&1; echo "model at $(( $(date +%s) - START )) s"
timeout $(left 295) python3 -m bench.quant_kernels --model=$Q --data=$D --kernels=bf16 --batches=16,1 --out=$OUT/qwen3-bf16-flash.json > $OUT/qwen3-bf16-flash.log 2>&1
echo "rc $? at $(( $(date +%s) - START )) s"; grep -o '"tok_s": [0-9.]*\|"peak_gpu_gib": [0-9.]*\|"error": .\{0,300\}' $OUT/qwen3-bf16-flash.json
