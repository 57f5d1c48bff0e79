source .gpu-data/prefix.sh
R=$OUT/serve-flash
timeout $(left 590) bench/serve_gpu.sh $T $R --levels=1,16,64 > $OUT/serve-run.log 2>&1; echo "serve rc $? at $(( $(date +%s) - START )) s"
grep -E "clients:|peak GPU|answering|humming" $OUT/serve-run.log | tail -8
grep -i -E "compiling the decoding step: 100" $R/serve_int4.server.log | tail -1 | tr '\r' '\n' | tail -1
