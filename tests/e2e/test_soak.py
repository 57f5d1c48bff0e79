"""The soak in short (python3 -m bench.soak: 15 s, 8 clients; the 10-minute, 32-client run is opt-in, see
bench/RELIABILITY.md): serve_ko.py as a user starts it, mixed plain, streamed and abandoned requests."""
import json
import subprocess
import sys

from kochat import PROJECT_ROOT


def test_a_short_soak_has_no_failed_request_and_flat_memory(tiny_run, tmp_path):
    run, _ = tiny_run
    out = tmp_path / "soak.json"
    result = subprocess.run([sys.executable, "-m", "bench.soak", f"--adapter={run}", "--seconds=15", "--clients=8",
                             "--max_concurrent=4", "--max_growth_mb=100", f"--out={out}"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=600)
    soak = json.loads(out.read_text(encoding="utf-8"))
    assert result.returncode == 0, (soak["failures"], result.stderr[-2000:])
    assert soak["outcomes"].get("failed", 0) == 0 and soak["outcomes"]["ok"] > 50
    assert soak["outcomes"].get("429", 0) > 0  # 8 clients against room for 4: the limit answered, nothing broke
    assert set(soak["by_kind"]) == {"plain chat", "streamed chat", "streamed, hang up", "plain completion",
                                    "streamed completion"}
    assert soak["rss_growth_after_warmup_mb"] < 100
    assert soak["health_after"]["in_flight"] == 0 and soak["health_after"]["waiting"] == 0  # hang-ups were freed
