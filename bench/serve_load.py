"""serve_ko.py under 1, 16 and 64 concurrent streaming clients over HTTP: throughput, latency, GPU memory.

    python3 -m bench.serve_load --adapter=outputs/tiny --out=bench/results/<date>-serve-cpu.json
    python3 -m bench.serve_load --adapter=/tmp/int4 --max_tokens=256 --out=serve.json   # an export_ko.py folder
Starts `serve_ko.py` on a free loopback port (its log: OUT with the suffix .server.log), then for each level of
concurrency runs that many clients, each sending streamed chat requests back to back (max_tokens fixed, end of
text allowed) through the official openai client: first for --warmup_seconds unmeasured (in fast mode each new
batch shape compiles), then for --seconds measured. Per level:
- tokens_per_s, requests_per_s: completion tokens (the server's usage) and answered requests over the level's time;
- first_token_ms: from sending a request to its first piece of answer text, p50 and p95 over the requests;
- per_token_ms: per request, (time of its last piece of text - time of its first) / (completion tokens - 1),
  the pace of the answer after its first token, p50 and p95 over the requests of 2 tokens or more; per request
  rather than between streamed pieces, since one piece may carry several tokens (a Korean character the
  tokenizer splits is sent once whole);
- errors (a 429 is one), and the batch sizes the server generated during the level;
and server_health, the server's /health after the last level measured.
p50 and p95 are nearest-rank: values that were measured. peak_gpu_memory_mib, for the whole bench from the
server's start: nvidia-smi sampled every half second, the server process's own memory (CUDA context and
PyTorch's cache included; None where nvidia-smi lists no such pid, as in a container that hides host pids) and
that of all GPUs together beside what they held before the server started; null without nvidia-smi.
The JSON is rewritten after each level, so a run stopped early keeps the levels it finished.
"""
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import httpx
import openai

from kochat import PROJECT_ROOT, cli, runs
from kochat.errors import UserError

# ---- constants: override on the command line as --name=value ------------------------------------------
ADAPTER = ""                # a run folder from finetune_ko.py, or a merged or int8/int4 export folder; required
OUT = ""                    # the result JSON; required. The server's log goes beside it (.server.log)
SECONDS = 30.0              # how long each level of concurrency is measured
WARMUP_SECONDS = 10.0       # each level first runs this long unmeasured: on a GPU in fast mode a new batch
                            # shape compiles (about a minute at 12.8b); give it 45 or more there
MAX_TOKENS = 64             # max_tokens of every request
LEVELS = "1,16,64"          # concurrent clients, one level after another
MAX_BATCH = 16              # serve_ko.py --max_batch (its default)
MAX_CONCURRENT = 128        # serve_ko.py --max_concurrent: above the largest level, else 429s. Not just equal:
                            # the server counts a request until its whole batch is done, after its client has
                            # its answer and may have sent the next one
SERVE_ARGS = ""             # more serve_ko.py options, e.g. "--fast=false --four_bit=false"
START_TIMEOUT_S = 600.0     # the server must answer /health within this many seconds of starting

QUESTIONS = ("한국의 수도는 어디인가요?", "하늘은 왜 파란가요?", "김치는 어떻게 만드나요?", "물은 몇 도에서 끓나요?",
             "잠을 잘 자려면 어떻게 해야 하나요?", "파이썬은 어떤 언어인가요?", "지진이 나면 어떻게 해야 하나요?", "환율이란?")
DEFINITIONS = {
    "first_token_ms": "from sending a streamed chat request to its first piece of answer text; p50/p95 over requests",
    "per_token_ms": "per request (last piece of text - first) / (completion tokens - 1); p50/p95 over requests",
    "peak_gpu_memory_mib": "nvidia-smi every 0.5 s from the server's start: the server process's own, and all GPUs "
                           "together beside what they held before the server started",
}


def one_request(api: openai.OpenAI, model: str, question: str) -> tuple[float | None, float | None, int]:
    """One streamed chat request: (seconds to its first piece of text, None for an empty answer; seconds per token
    after the first, None for an answer of fewer than 2 tokens; completion tokens)."""
    sent = time.perf_counter()
    first = last = usage = None
    for chunk in api.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                             max_tokens=MAX_TOKENS, stream=True,
                                             stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:  # the first chunk carries only the role
            last = time.perf_counter()
            first = last if first is None else first
        usage = chunk.usage or usage
    if usage is None:
        raise RuntimeError("the stream ended without its usage chunk")
    tokens = usage.completion_tokens
    per_token = (last - first) / (tokens - 1) if first is not None and tokens > 1 else None
    return (None if first is None else first - sent), per_token, tokens


def run_clients(url: str, model: str, clients: int, seconds: float) -> tuple[list, list[str], float]:
    """`clients` threads sending requests back to back until `seconds` have passed; a request under way then
    finishes. (one_request's figures for each answered request, the errors, seconds from start to the last end)."""
    answered, errors = [], []  # list.append is atomic: the threads share them without a lock
    start = time.perf_counter()

    def client(i):
        api = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=900)
        n = i
        while time.perf_counter() < start + seconds:
            try:
                answered.append(one_request(api, model, QUESTIONS[n % len(QUESTIONS)]))
            except Exception as e:  # counted, not fatal: the level reports how many failed
                errors.append(f"{type(e).__name__}: {e}")
            n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answered, errors, time.perf_counter() - start


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank: the smallest value with at least p % of the values at or below it; None for no values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else None


def p50_p95_ms(seconds: list[float]) -> dict:
    return {f"p{p}": None if (v := percentile(seconds, p)) is None else round(v * 1000, 2) for p in (50, 95)}


def measure_level(url: str, model: str, clients: int) -> dict:
    """The figures of `clients` concurrent clients, measured for SECONDS after WARMUP_SECONDS unmeasured."""
    run_clients(url, model, clients, WARMUP_SECONDS)
    batches_before = Counter(health(url)["batch_sizes"])
    answered, errors, seconds = run_clients(url, model, clients, SECONDS)
    batches = Counter(health(url)["batch_sizes"]) - batches_before
    return {"clients": clients, "seconds": round(seconds, 1), "requests": len(answered), "errors": len(errors),
            "requests_per_s": round(len(answered) / seconds, 2),
            "tokens_per_s": round(sum(tokens for _, _, tokens in answered) / seconds, 1),
            "first_token_ms": p50_p95_ms([first for first, _, _ in answered if first is not None]),
            "per_token_ms": p50_p95_ms([pace for _, pace, _ in answered if pace is not None]),
            "batch_sizes": dict(sorted(batches.items(), key=lambda kv: int(kv[0]))),
            "first_error": errors[0] if errors else None}


def health(url: str) -> dict:
    return httpx.get(url + "/health", timeout=30).json()


def nvidia_smi(query: str) -> list[list[str]]:
    """The rows of `nvidia-smi --query-…=…` as lists of fields; [] without nvidia-smi or a GPU it can see."""
    if shutil.which("nvidia-smi") is None:
        return []
    done = subprocess.run(["nvidia-smi", query, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                          timeout=30)
    return [[field.strip() for field in line.split(",")] for line in done.stdout.splitlines() if line.strip()] \
        if done.returncode == 0 else []


class GpuMemoryPeak:
    """The most GPU memory nvidia-smi shows while the bench runs: the server process's (by its pid) and all GPUs'.
    Made before the server starts, to know what the GPUs held without it. Figures in MiB."""

    def __init__(self):
        self.present = bool(nvidia_smi("--query-gpu=memory.used"))
        self.all_gpus_before = self.all_gpus = all_gpus_used()
        self.server_process = None
        self.stopped = threading.Event()

    def watch(self, pid: int) -> None:
        def sample_until_stopped():
            while not self.stopped.wait(0.5):
                self.all_gpus = max(self.all_gpus, all_gpus_used())
                mine = [int(used) for app_pid, used in nvidia_smi("--query-compute-apps=pid,used_memory")
                        if app_pid == str(pid) and used.isdigit()]  # a process on several GPUs has a row for each
                if mine:
                    self.server_process = max(self.server_process or 0, sum(mine))

        if self.present:
            threading.Thread(target=sample_until_stopped, daemon=True).start()

    def figures(self) -> dict | None:
        return {"server_process": self.server_process, "all_gpus": self.all_gpus,
                "all_gpus_before_server": self.all_gpus_before} if self.present else None


def all_gpus_used() -> int:
    """MiB in use on all GPUs together, by any process ("[N/A]" counted as 0)."""
    return sum(int(used) for used, in nvidia_smi("--query-gpu=memory.used") if used.isdigit())


def start_server(port: int, log, gpu_memory: GpuMemoryPeak) -> subprocess.Popen:
    """serve_ko.py on 127.0.0.1:port, writing to `log`; returns once /health answers."""
    server = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "serve_ko.py"), f"--adapter={ADAPTER}",
                               f"--port={port}", f"--max_batch={MAX_BATCH}", f"--max_concurrent={MAX_CONCURRENT}",
                               *shlex.split(SERVE_ARGS)],
                              stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    gpu_memory.watch(server.pid)
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        if server.poll() is not None:
            raise UserError(f"serve_ko.py exited with status {server.returncode} before it answered; see {log.name}")
        try:
            health(f"http://127.0.0.1:{port}")
            return server
        except httpx.TransportError:
            time.sleep(0.5)
    stop_server(server)
    raise UserError(f"serve_ko.py did not answer /health within {START_TIMEOUT_S:g} s (--start_timeout_s); "
                    f"see {log.name}")


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGINT)  # uvicorn's graceful stop
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "ADAPTER", "OUT")
    try:
        levels = [int(c) for c in str(LEVELS).split(",")]
    except ValueError:
        raise UserError(f"--levels={LEVELS}: numbers of clients, comma-separated (e.g. 1,16,64)") from None
    if MAX_CONCURRENT < max(levels):
        raise UserError(f"--max_concurrent={MAX_CONCURRENT} is below the largest level ({max(levels)} clients): "
                        f"the server would refuse requests (429)")
    out = Path(OUT)
    log_path = out.with_suffix(".server.log")
    gpu_memory = GpuMemoryPeak()
    gpus = [name for name, in nvidia_smi("--query-gpu=name")]
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "adapter": ADAPTER,
               "machine": f"{os.cpu_count()} CPU cores, {', '.join(gpus) or 'no GPU'}", "versions": runs.versions(),
               "command": " ".join(["python3 -m bench.serve_load", *argv]), "max_tokens": MAX_TOKENS,
               "warmup_seconds": WARMUP_SECONDS,
               "server": {"max_batch": MAX_BATCH, "max_concurrent": MAX_CONCURRENT, "serve_args": SERVE_ARGS,
                          "log": str(log_path)},
               "definitions": DEFINITIONS, "levels": []}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w", encoding="utf-8") as log:
        server = start_server(port, log, gpu_memory)
        try:
            model = health(url)["model"]
            for clients in levels:
                try:
                    level = measure_level(url, model, clients)
                    results["server_health"] = health(url)  # the server's own counters and figures, as it ends
                except httpx.TransportError:  # /health after the level: the server may have gone
                    if server.poll() is None:
                        raise
                    raise UserError(f"serve_ko.py exited with status {server.returncode} during the bench; "
                                    f"see {log_path}") from None
                results["levels"].append(level)
                results["peak_gpu_memory_mib"] = gpu_memory.figures()
                runs.write_text(out, json.dumps(results, ensure_ascii=False, indent=2) + "\n")
                print(f"{clients:>3} clients: {level['tokens_per_s']:7.1f} tokens/s, {level['requests_per_s']:6.2f} "
                      f"requests/s, first token p50/p95 {level['first_token_ms']['p50']}/"
                      f"{level['first_token_ms']['p95']} ms, per token after it p50/p95 "
                      f"{level['per_token_ms']['p50']}/{level['per_token_ms']['p95']} ms, {level['errors']} errors",
                      flush=True)
        finally:
            gpu_memory.stopped.set()
            stop_server(server)
    peak = results["peak_gpu_memory_mib"]
    print("no GPU memory measured (no nvidia-smi)" if peak is None else
          f"peak GPU memory: server process {peak['server_process']} MiB, all GPUs {peak['all_gpus']} MiB "
          f"({peak['all_gpus_before_server']} before the server started)")


if __name__ == "__main__":
    sys.exit(cli.run(main))
