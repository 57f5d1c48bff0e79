"""Requests/s and tokens/s of serve_ko.py under 1, 8 and 32 concurrent streaming clients.

    python3 -m bench.serve_load --adapter=outputs/tiny --out=bench/results/<date>-serve-cpu.json
Starts `serve_ko.py` on a free loopback port, warms it up, then for each level of concurrency runs
clients that each send streamed chat requests back to back (max_tokens fixed, end of text allowed) for
--seconds, through the official openai client. Counts only completed requests.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import openai

from kochat import PROJECT_ROOT, cli, runs

# ---- constants: override on the command line as --name=value ------------------------------------------
ADAPTER = ""                # a run folder from finetune_ko.py; required
OUT = ""                    # the result JSON; required
SECONDS = 30.0              # how long each level of concurrency runs
MAX_TOKENS = 64             # max_tokens of every request
LEVELS = "1,8,32"           # concurrent clients, one level after another

QUESTIONS = ("한국의 수도는 어디인가요?", "하늘은 왜 파란가요?", "김치는 어떻게 만드나요?", "물은 몇 도에서 끓나요?",
             "잠을 잘 자려면 어떻게 해야 하나요?", "파이썬은 어떤 언어인가요?", "지진이 나면 어떻게 해야 하나요?", "환율이란?")


def load(url, model, clients, seconds, max_tokens):
    done, tokens, errors = [0], [0], []
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def client(i):
        api = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=300)
        n = 0
        while time.time() < stop_at:
            try:
                usage = None
                for chunk in api.chat.completions.create(
                        model=model, messages=[{"role": "user", "content": QUESTIONS[(i + n) % len(QUESTIONS)]}],
                        max_tokens=max_tokens, stream=True, stream_options={"include_usage": True}):
                    usage = chunk.usage or usage
                with lock:
                    done[0] += 1
                    tokens[0] += usage.completion_tokens
            except Exception as e:  # counted, not fatal: the figure is completed requests
                errors.append(f"{type(e).__name__}: {e}")
            n += 1

    start = time.time()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - start
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": done[0], "errors": len(errors),
            "requests_per_s": round(done[0] / elapsed, 2), "tokens_per_s": round(tokens[0] / elapsed, 1),
            "first_error": errors[0] if errors else None}


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "ADAPTER", "OUT")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "serve_ko.py"), f"--adapter={ADAPTER}",
                               f"--port={port}", "--max_batch=32", "--max_concurrent=64"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                health = httpx.get(url + "/health", timeout=1).json()
                break
            except httpx.TransportError:
                time.sleep(0.2)
        model = health["model"]
        load(url, model, 2, 3, MAX_TOKENS)  # warm-up
        results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "adapter": ADAPTER,
                   "machine": f"{os.cpu_count()} CPU cores, no GPU" if not _has_gpu() else "GPU",
                   "versions": runs.versions(), "max_tokens": MAX_TOKENS,
                   "command": " ".join(["python3 -m bench.serve_load", *argv]),
                   "levels": [load(url, model, int(c), SECONDS, MAX_TOKENS) for c in LEVELS.split(",")]}
        results["batch_sizes"] = httpx.get(url + "/health").json()["batch_sizes"]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    Path(OUT).write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    for level in results["levels"]:
        print(f"{level['clients']:>3} clients: {level['requests_per_s']:6.2f} requests/s, "
              f"{level['tokens_per_s']:7.1f} tokens/s, {level['errors']} errors")


def _has_gpu():
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(cli.run(main))
