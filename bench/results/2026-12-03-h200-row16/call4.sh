source .gpu-data/prefix.sh
Q=/tmp/random-qwen3-8b
timeout $(left 150) python3 -m pytest -q -x tests/test_row16_kernel.py tests/test_fused_projections.py -p no:cacheprovider > $OUT/device-tests.log 2>&1; echo "tests rc $? at $(( $(date +%s) - START )) s"; tail -3 $OUT/device-tests.log
[ -d $Q ] || python3 -m bench.random_model --model=Qwen/Qwen3-8B --tokenizer=$T --out=$Q > $OUT/random-qwen3.log 2>&1; echo "model at $(( $(date +%s) - START )) s"
timeout $(left 440) python3 -m bench.quant_kernels --model=$Q --data=$D --kernels=saved --load=both --batches=1,16 --out=$OUT/qwen3-row16.json > $OUT/qwen3-row16.log 2>&1; echo "row16 rc $? at $(( $(date +%s) - START )) s"
grep -o '"name": "[^"]*"\|"answering": "[^"]*"\|"tok_s": [0-9.]*\|"peak_gpu_gib": [0-9.]*\|"error": .\{0,300\}' $OUT/qwen3-row16.json | tr '\n' ' '; echo
timeout $(left 585) python3 -m bench.quant_kernels --model=$Q --data=$D --kernels=bf16 --batches=1 --out=$OUT/qwen3-cublas.json > $OUT/qwen3-cublas.log 2>&1; echo "cublas rc $? at $(( $(date +%s) - START )) s"
grep -o '"name": "[^"]*"\|"tok_s": [0-9.]*\|"peak_gpu_gib": [0-9.]*\|"error": .\{0,300\}' $OUT/qwen3-cublas.json | tr '\n' ' '
