source .gpu-data/prefix.sh
timeout $(left 200) python3 -m pytest -q -p no:cacheprovider tests/e2e/test_export_ko.py -k "dp4a and int8" > $OUT/device-tests-dp4a-int8.log 2>&1; echo "pytest rc $? at $(( $(date +%s) - START )) s"
grep -E "passed|failed|Error|assert" $OUT/device-tests-dp4a-int8.log | tail -20 | cut -c1-400
timeout $(left 300) python3 finetune_ko.py --preset tiny > $OUT/tiny-run.log 2>&1; echo "tiny run rc $? at $(( $(date +%s) - START )) s"
timeout $(left 590) python3 -m bench.export_quality --run=outputs/tiny --data=$D --work=/tmp/export-quality --formats=merged,int8,int4,int8_one_row,int4_one_row --out=$OUT/export-quality-one-row.json > $OUT/export-quality-one-row.log 2>&1; echo "quality rc $? at $(( $(date +%s) - START )) s"
grep -E "^(merged|int8|int4)" $OUT/export-quality-one-row.log | cut -c1-400
