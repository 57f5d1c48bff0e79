source .gpu-data/prefix.sh
timeout $(left 150) python3 -m pytest -q -p no:cacheprovider tests/test_kv_cache.py tests/test_decode_attention.py -rf > $OUT/device-tests-pool.log 2>&1; echo "pytest rc $? at $(( $(date +%s) - START )) s"
tail -6 $OUT/device-tests-pool.log
timeout $(left 540) python3 -m pytest -q -p no:cacheprovider tests/test_humming_kernel.py tests/e2e/test_export_ko.py -k "int8 or humming" -rf > $OUT/device-tests-humming.log 2>&1; echo "pytest rc $? at $(( $(date +%s) - START )) s"
tail -8 $OUT/device-tests-humming.log
