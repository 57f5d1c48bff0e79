source .gpu-data/prefix.sh
Q=/tmp/random-qwen3-8b
timeout $(left 120) python3 -m pytest -q -x tests/test_row16_kernel.py tests/test_fused_projections.py -p no:cacheprovider > $OUT/device-tests.log 2>&1; echo "tests rc $? at $(( $(date +%s) - START )) s"; tail -3 $OUT/device-tests.log
[ -d $Q ] || python3 -m bench.random_model --model=Qwen/Qwen3-8B --tokenizer=$T --out=$Q > $OUT/random-qwen3.log 2>&1; echo "model at $(( $(date +%s) - START )) s"
run(){ timeout $(left $1) python3 -m bench.quant_kernels --model=$Q --data=$D --kernels=saved --load=one_row --batches=1,1 --out=$OUT/$2.json "${@:3}" > $OUT/$2.log 2>&1; echo "$2 rc $? at $(( $(date +%s) - START )) s"; grep -o '"tok_s": [0-9.]*' $OUT/$2.json | tr '\n' ' '; echo; }
run 290 qwen3-cudnn
run 420 qwen3-flash --one_row_flash=true --profile=true
run 585 qwen3-flash-2 --one_row_flash=true
