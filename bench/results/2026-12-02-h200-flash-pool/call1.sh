source .gpu-data/prefix.sh
R=$OUT/serve-pooled
timeout $(left 560) bench/serve_gpu.sh $T $R --levels=1,16,64 > $OUT/serve-run.log 2>&1; echo "serve rc $? at $(( $(date +%s) - START )) s"
grep -E "clients:|peak GPU|answering|humming|warm" $OUT/serve-run.log | tail -12
grep -i -E "warm|compil" $R/serve_int4.server.log | tail -12
if [ $(left 590) -gt 150 ]; then
  timeout $(left 590) python3 -m bench.quant_kernels --model=/tmp/random-polyglot-ko-12.8b-int4 --data=$D --kernels=saved --batches=1 --profile=true --out=$OUT/int4-b1-profile.json > $OUT/int4-b1-profile.log 2>&1
  echo "profile rc $? at $(( $(date +%s) - START )) s"; tail -3 $OUT/int4-b1-profile.log
fi
