source .gpu-data/prefix.sh
timeout $(left 200) python3 -m pytest -q tests/test_fused_projections.py tests/test_row16_kernel.py -p no:cacheprovider > $OUT/device-tests-2.log 2>&1; echo "tests rc $? at $(( $(date +%s) - START )) s"; tail -3 $OUT/device-tests-2.log
