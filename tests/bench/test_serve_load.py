"""bench/serve_load.py against the real serve_ko.py on the tiny run folder, for a few seconds of load; its GPU
memory sampling with nvidia-smi's answers written here (no GPU in CI)."""
import json
import subprocess
import sys
import time

from kochat import PROJECT_ROOT


def serve_load(*args):
    return subprocess.run([sys.executable, "-m", "bench.serve_load", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300)


def test_each_level_has_throughput_latency_and_no_errors(tiny_run_folder, tmp_path):
    out = tmp_path / "serve.json"
    result = serve_load(f"--adapter={tiny_run_folder}", f"--out={out}", "--levels=1,2", "--seconds=2",
                        "--warmup_seconds=0.5", "--max_tokens=16")
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert [level["clients"] for level in figures["levels"]] == [1, 2]
    for level in figures["levels"]:
        assert level["errors"] == 0 and level["first_error"] is None
        assert level["requests"] > 0 and level["requests_per_s"] > 0 and level["tokens_per_s"] > 0
        for latency in (level["first_token_ms"], level["per_token_ms"]):
            assert latency["p95"] >= latency["p50"] > 0
        assert sum(level["batch_sizes"].values()) >= 1
    assert figures["peak_gpu_memory_mib"] is None  # no nvidia-smi here
    assert figures["server_health"]["status"] == "ok" and figures["server_health"]["batch_sizes"]
    assert figures["server"] == {"max_batch": 16, "max_concurrent": 128, "serve_args": "",
                                 "log": str(tmp_path / "serve.server.log")}
    assert "Application startup complete" in (tmp_path / "serve.server.log").read_text(encoding="utf-8")
    assert result.stdout.count(" clients: ") == 2


def test_a_server_that_does_not_start_is_one_line_naming_its_log(tiny_run_folder, tmp_path):
    result = serve_load(f"--adapter={tiny_run_folder}", f"--out={tmp_path / 'serve.json'}",
                        "--serve_args=--max_batch=0")
    log = tmp_path / "serve.server.log"
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: serve_ko.py exited with status 2 before it answered; see {log}"
    assert "--max_batch must be at least 1, not 0" in log.read_text(encoding="utf-8")
    assert not (tmp_path / "serve.json").exists()


def test_gpu_memory_is_the_peak_of_the_server_process_and_of_all_gpus(monkeypatch):
    from bench import serve_load

    gpus, apps = [["1000"], ["500"]], []  # two GPUs, holding 1,500 MiB before the server starts
    monkeypatch.setattr(serve_load, "nvidia_smi", lambda query: gpus if query.startswith("--query-gpu") else apps)
    peak = serve_load.GpuMemoryPeak()
    gpus[:], apps[:] = [["9000"], ["500"]], [["4242", "8000"], ["77", "300"], ["4242", "[N/A]"]]
    peak.watch(4242)
    time.sleep(1.2)
    gpus[:], apps[:] = [["3000"], ["500"]], [["4242", "2000"]]  # less later: the peak stays
    time.sleep(1.2)
    peak.stopped.set()
    assert peak.figures() == {"server_process": 8000, "all_gpus": 9500, "all_gpus_before_server": 1500}

    monkeypatch.setattr(serve_load, "nvidia_smi", lambda query: [])  # a machine without nvidia-smi
    assert serve_load.GpuMemoryPeak().figures() is None


def test_percentiles_are_nearest_rank():
    from bench.serve_load import percentile

    values = list(range(20, 0, -1))
    assert (percentile(values, 50), percentile(values, 95)) == (10, 19)
    assert (percentile([7], 95), percentile([], 50)) == (7, None)
