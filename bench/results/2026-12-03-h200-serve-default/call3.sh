source .gpu-data/prefix.sh
I=/tmp/random-polyglot-ko-12.8b-int4
qk(){ timeout $(left $1) python3 -m bench.quant_kernels --data=$D --kernels=saved --out=$OUT/$2.json "${@:3}" > $OUT/$2.log 2>&1; echo "$2 rc $? at $(( $(date +%s) - START )) s"; grep -o '"answering": "[^"]*"\|"weights_gib": [0-9.]*\|"saved fast, batch [0-9]*[^"]*\|"tok_s": [0-9.]*\|"peak_gpu_gib": [0-9.]*\|"error": .\{0,400\}' $OUT/$2.json | tr '\n' ' '; echo; }
[ -f $I/template.json ] && qk 500 int4-one-row --model=$I --load=one_row --batches=1,1,1
