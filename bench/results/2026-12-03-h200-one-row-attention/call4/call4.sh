source .gpu-data/prefix.sh
Q=/tmp/random-qwen3-8b
[ -d $Q ] || python3 -m bench.random_model --model=Qwen/Qwen3-8B --tokenizer=$T --out=$Q > $OUT/random-qwen3.log 2>&1; echo "model at $(( $(date +%s) - START )) s"
run(){ timeout $(left $1) python3 -m bench.quant_kernels --model=$Q --data=$D --kernels=saved --load=one_row --batches=1,1,1 --out=$OUT/$2.json "${@:3}" > $OUT/$2.log 2>&1; echo "$2 rc $? at $(( $(date +%s) - START )) s"; grep -o '"tok_s": [0-9.]*\|"error": .\{0,300\}' $OUT/$2.json | tr '\n' ' '; echo; }
run 150 qwen3-kernel
TORCHINDUCTOR_ENABLE_PDL=1 run 250 qwen3-kernel-pdl
run 330 qwen3-kernel-again
TORCHINDUCTOR_ENABLE_PDL=1 run 420 qwen3-kernel-pdl-profile --profile=true
