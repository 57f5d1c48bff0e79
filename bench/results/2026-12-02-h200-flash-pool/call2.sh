source .gpu-data/prefix.sh
model > /dev/null 2>&1 &
MP=$!
python3 -c "import torch; print(torch._C._jit_get_schemas_for_operator('aten::_flash_attention_forward')[0])" > $OUT/flash-schema.txt 2>&1; cat $OUT/flash-schema.txt
timeout $(left 200) python3 -m pytest -q -p no:cacheprovider tests/test_decode_attention.py tests/test_kv_cache.py -x -k "pooled or compiled or switches" > $OUT/device-tests-flash.log 2>&1; echo "pytest rc $? at $(( $(date +%s) - START )) s"
tail -6 $OUT/device-tests-flash.log
wait $MP; echo "model at $(( $(date +%s) - START )) s"
for f in true false; do
  timeout $(left 500) python3 -m bench.quant_kernels --model=$M --data=$D --kernels=bf16 --batches=16 --flash=$f --out=$OUT/bf16-b16-flash-$f.json > $OUT/bf16-b16-flash-$f.log 2>&1
  echo "flash=$f rc $? at $(( $(date +%s) - START )) s"; grep -o '"tok_s": [0-9.]*\|"peak_gpu_gib": [0-9.]*\|"error": .\{0,300\}' $OUT/bf16-b16-flash-$f.json
done
