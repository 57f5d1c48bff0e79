"""A bounded soak of serve_ko.py on loopback: many clients, mixed plain and streamed requests, some of
them hanging up mid-stream, for a fixed time; counts every outcome and samples the server's memory.

    python3 -m bench.soak --adapter=outputs/tiny --seconds=600 --clients=32 --out=soak.json   # the long one
    python3 -m bench.soak --adapter=outputs/tiny --seconds=15 --clients=8 --out=soak.json     # what CI runs

Exits 1 when any request failed (429s from the server's MAX_CONCURRENT are counted, not failures) or
the server's memory grew more than --max_growth_mb after the first tenth of the run.
"""
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import httpx

from kochat import PROJECT_ROOT, cli

# ---- constants: override on the command line as --name=value ------------------------------------------
ADAPTER = ""                # a run folder from finetune_ko.py; required
OUT = ""                    # the result JSON; required
SECONDS = 600.0             # how long the clients run
CLIENTS = 32                # clients sending requests back to back
MAX_CONCURRENT = 24         # serve_ko.py's MAX_CONCURRENT: above it, 429
MAX_GROWTH_MB = 150.0       # the server's memory may grow this much after the first tenth of the run
BACKOFF = True              # clients wait 0.2-1 s after a 429; false: retry at once (a stress test of the limit)

QUESTIONS = ("한국의 수도는 어디인가요?", "하늘은 왜 파란가요?", "김치는 어떻게 만드나요?", "물은 몇 도에서 끓나요?",
             "파인튜닝이란 무엇인가요?", "다음 문장을 영어로 번역하세요. 오늘 회의는 오후 두 시에 시작합니다.")
KINDS = ("plain chat", "streamed chat", "streamed, hang up", "plain completion", "streamed completion")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def one_request(client: httpx.Client, kind: str, rng: random.Random) -> str:
    """The outcome of one request: "ok", "429", or "failed: <why>"."""
    question = rng.choice(QUESTIONS)
    chat = "chat" in kind or "hang" in kind
    body = {"model": "soak", "max_tokens": rng.randint(1, 48), "temperature": rng.choice([0, 0.7]),
            "stream": "streamed" in kind}
    body.update({"messages": [{"role": "user", "content": question}]} if chat else {"prompt": question})
    path = "/v1/chat/completions" if chat else "/v1/completions"
    with client.stream("POST", path, json=body) as r:
        if r.status_code == 429:
            r.read()
            return "429"
        if r.status_code != 200:
            return f"failed: HTTP {r.status_code} {r.read()[:200]!r}"
        if not body["stream"]:
            reply = json.loads(r.read())
            return "ok" if reply["choices"][0]["finish_reason"] in ("stop", "length") else f"failed: {reply}"
        lines = []
        for line in r.iter_lines():
            if not line:
                continue  # the blank line after each event
            lines.append(line)
            if kind == "streamed, hang up" and len(lines) > 2:
                return "ok"  # leaving the with-block closes the connection mid-stream
        if not lines or lines[-1] != "data: [DONE]" or any('"error"' in x for x in lines):
            return f"failed: stream ended with {lines[-2:]}"
        return "ok"


def main(argv):
    cli.apply_command_line(globals(), argv, {}, {}, Path(__file__), __doc__)
    cli.require(globals(), "ADAPTER", "OUT")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "serve_ko.py"), f"--adapter={ADAPTER}",
                               f"--port={port}", "--model_name=soak", f"--max_concurrent={MAX_CONCURRENT}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.time() > deadline:
            sys.exit(f"serve_ko.py did not start: {server.stderr.read()[-2000:]}")
        time.sleep(0.2)

    outcomes, by_kind, failures, lock = Counter(), Counter(), [], threading.Lock()
    start = time.time()
    stop_at = start + SECONDS

    def client_loop(seed):
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=120) as client:
            while time.time() < stop_at:
                kind = rng.choice(KINDS)
                try:
                    outcome = one_request(client, kind, rng)
                except Exception as e:  # a broken connection or bad JSON is a failure to count, not to hide
                    outcome = f"failed: {type(e).__name__}: {e}"
                if outcome == "429" and BACKOFF:
                    time.sleep(rng.uniform(0.2, 1.0))  # back off and retry later, as the openai client does
                with lock:
                    outcomes[outcome.split(":")[0]] += 1
                    by_kind[kind] += 1
                    if outcome.startswith("failed") and len(failures) < 20:
                        failures.append(outcome[:300])

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    samples = []
    while any(t.is_alive() for t in threads):
        samples.append((round(time.time() - start, 1), round(rss_mb(server.pid), 1)))
        time.sleep(max(1.0, SECONDS / 100))
    for t in threads:
        t.join()
    samples.append((round(time.time() - start, 1), round(rss_mb(server.pid), 1)))
    health = httpx.get(url + "/health").json()
    server.terminate()
    server.wait(timeout=30)

    warm = [mb for t, mb in samples if t >= SECONDS / 10] or [samples[-1][1]]
    growth = max(warm) - warm[0]
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": SECONDS,
              "clients": CLIENTS, "max_concurrent": MAX_CONCURRENT, "backoff_after_429": BACKOFF,
              "requests": sum(outcomes.values()),
              "outcomes": dict(outcomes), "by_kind": dict(by_kind), "failures": failures,
              "requests_per_s": round(sum(outcomes.values()) / (time.time() - start), 1),
              "rss_mb_first": samples[0][1], "rss_mb_after_warmup": warm[0], "rss_mb_max": max(mb for _, mb in samples),
              "rss_growth_after_warmup_mb": round(growth, 1), "rss_samples": samples, "health_after": health,
              "cpus": os.cpu_count()}
    Path(OUT).parent.mkdir(parents=True, exist_ok=True)
    Path(OUT).write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "rss_samples"}, ensure_ascii=False))
    return 1 if outcomes["failed"] or growth > MAX_GROWTH_MB else 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
