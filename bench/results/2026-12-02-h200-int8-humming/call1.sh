source .gpu-data/prefix.sh
model; int8export; cat $OUT/int8-export.log; ls /tmp/int8 | head
echo "setup done at $(( $(date +%s) - START )) s"
python3 -m bench.quant_kernels --model=/tmp/int8 --data=$D --kernels=saved --batches=16 --out=$OUT/int8-b16-saved.json > $OUT/int8-b16-saved.log 2>&1 &
P=$!
sleep 3
py-spy record --pid $P --subprocesses --rate 20 --duration $(( $(left 540) - 40 )) --format raw -o $OUT/int8-b16-pyspy.txt > $OUT/pyspy.log 2>&1 &
S=$!
sleep 100; py-spy dump --pid $P > $OUT/dump-100.txt 2>&1
sleep 100; py-spy dump --pid $P > $OUT/dump-200.txt 2>&1
wait $S; echo "py-spy rc $?"
kill $P 2>/dev/null; sleep 2; kill -9 $P 2>/dev/null
tail -5 $OUT/int8-b16-saved.log; ls -la $OUT
