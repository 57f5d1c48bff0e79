source .gpu-data/prefix.sh
R=$OUT/serve-default
timeout $(left 585) bench/serve_gpu.sh $T $R --levels=1,16,64 > $OUT/serve-run.log 2>&1; echo "serve rc $? at $(( $(date +%s) - START )) s"
grep -E "clients:|peak GPU|answering|humming|dp4a|one row" $OUT/serve-run.log | tail -12
grep -iE "answering with|one row|dp4a|does not fit|needs" $R/serve_int4.server.log | head -8
