source .gpu-data/prefix.sh
model > /dev/null 2>&1; echo "model at $(( $(date +%s) - START )) s"
int8export; tail -1 $OUT/int8-export.log
untuned(){ python3 -c "
import contextlib, sys
from kochat import row_sums
row_sums.one_row_tuning = lambda model, rows: contextlib.nullcontext()  # A/B: the compile without torchao's settings
from bench import quant_kernels
quant_kernels.main(sys.argv[1:])" "$@"; }
show(){ echo "$1 rc $2 at $(( $(date +%s) - START )) s"; grep -o '"saved fast, batch [0-9]*[^"]*\|"tok_s": [0-9.]*\|"first_s": [0-9.]*' $OUT/$1.json | tr '\n' ' '; echo; }
timeout $(left 330) untuned --data=$D --kernels=saved --model=/tmp/int8 --load=one_row --batches=1,1 --out=$OUT/int8-untuned.json > $OUT/int8-untuned.log 2>&1; show int8-untuned $?
timeout $(left 520) python3 -m bench.quant_kernels --data=$D --kernels=saved --model=/tmp/int8 --load=one_row --batches=1,1 --out=$OUT/int8-tuned.json > $OUT/int8-tuned.log 2>&1; show int8-tuned $?
