"""bench/export_quality.py end to end on the CPU, small: 10 KoAlpaca rows, 4 questions, the merged and int8
formats and the 8-bit key/value cache of the tiny run folder (an untrained adapter: the figures compare formats,
they need no training)."""
import json
import subprocess
import sys

from support import KOALPACA_V11A, needs_shared_data

from kochat import PROJECT_ROOT


@needs_shared_data
def test_merged_is_its_own_reference_and_int8_stays_close(tiny_run_folder, tmp_path):
    out = tmp_path / "quality.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.export_quality", f"--run={tiny_run_folder}", f"--data={KOALPACA_V11A}",
         f"--work={tmp_path / 'work'}", f"--out={out}", "--formats=merged,int8,merged_cache8,int8_one_row",
         "--rows=10",
         "--questions=4", "--new_tokens=16"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [line.split()[0] for line in result.stdout.splitlines()[-5:]] == ["merged", "int8", "merged_cache8",
                                                                              "int8_one_row", "wrote"]
    results = json.loads(out.read_text())
    assert {"date", "machine", "versions", "command", "held_out", "formats"} <= set(results)
    assert results["held_out"]["rows"] == 10 and results["held_out"]["answer_tokens"] > 10 * 5
    assert {"torch", "torchao", "llama-cpp-python"} <= set(results["versions"])
    merged, int8 = results["formats"]["merged"], results["formats"]["int8"]
    assert merged["loss"] > 0 and merged["loss_vs_merged"] == 0
    assert merged["identical_answers"] == 4 and merged["identical_share"] == merged["prefix_share"] == 1.0
    assert abs(int8["loss_vs_merged"]) < 0.03, int8
    assert 0 <= int8["identical_share"] <= int8["prefix_share"] <= 1 and 0 < int8["size_bytes"] < merged["size_bytes"]
    cache8 = results["formats"]["merged_cache8"]  # the same weights: only the cache's rounding moves the loss
    assert 0 < abs(cache8["loss_vs_merged"]) < 0.01, cache8
    alone = results["formats"]["int8_one_row"]  # the same export, each question alone: on a CPU nothing moves
    assert alone["loss"] == int8["loss"] and alone["identical_answers"] == int8["identical_answers"], (alone, int8)
    assert alone["answering"].startswith("answering with Int8WeightOnlyConfig weights (torchao) on cpu"), alone
    assert len(list((tmp_path / "work").glob("int8*"))) == 1  # the int8 export written once
