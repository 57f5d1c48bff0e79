source .gpu-data/prefix.sh
Q=/tmp/random-qwen3-8b
timeout $(left 200) python3 -m pytest -q tests/test_one_row_attention.py tests/test_decode_attention.py tests/test_row16_kernel.py tests/test_dp4a_kernel.py tests/test_kv_cache.py -p no:cacheprovider > $OUT/device-tests.log 2>&1; echo "tests rc $? at $(( $(date +%s) - START )) s"; tail -5 $OUT/device-tests.log
[ -d $Q ] || python3 -m bench.random_model --model=Qwen/Qwen3-8B --tokenizer=$T --out=$Q > $OUT/random-qwen3.log 2>&1; echo "model at $(( $(date +%s) - START )) s"
run(){ timeout $(left $1) python3 -m bench.quant_kernels --model=$Q --data=$D --kernels=saved --load=one_row --batches=1,1 --out=$OUT/$2.json "${@:3}" > $OUT/$2.log 2>&1; echo "$2 rc $? at $(( $(date +%s) - START )) s"; grep -o '"tok_s": [0-9.]*\|"error": .\{0,300\}' $OUT/$2.json | tr '\n' ' '; echo; }
run 330 qwen3-kernel --profile=true
run 430 qwen3-sdpa --one_row_kernel=false
run 585 qwen3-kernel-2
