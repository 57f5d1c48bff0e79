"""Optional: an LLM judge the company runs (its own serve_ko.py, vLLM, any OpenAI-compatible endpoint) scores
each answer 1-10 with a Korean rubric. Off unless --judge_url is given; checked before any model loads.
Verdicts are appended to a JSONL cache as they come, keyed by the whole request (the judge's URL and model,
the rubric with the question, input and answer in it), so an interrupted report resumes without asking again."""
from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import UserError
from .answers import read_cache

RUBRIC = """당신은 한국어 AI 비서의 답변을 평가하는 공정한 심사위원입니다.
아래 질문(과 입력)에 대한 답변을 다음 기준으로 평가하세요.
1. 도움이 되는가: 질문이 요구한 것을 실제로 해결하는가
2. 정확한가: 사실과 다르거나 지어낸 내용이 없는가
3. 한국어가 자연스러운가: 문법, 어휘, 존댓말이 자연스럽고 다른 언어가 섞이지 않았는가
4. 간결하고 완결적인가: 반복하거나 중간에 끊기지 않았는가
짧게 이유를 쓴 뒤, 마지막 줄에 반드시 "점수: N" (N은 1에서 10 사이의 정수) 형식으로 점수를 쓰세요.

[질문]
{question}
{input_block}
[답변]
{answer}"""

SCORE = re.compile(r"점수\s*[:：]\s*(10|[1-9])(?!\d)")


def endpoint(url: str, path: str) -> str:
    base = url.rstrip("/")
    for tail in ("/chat/completions", "/models"):
        if base.endswith(tail):
            base = base[: -len(tail)]
    return base + path


def _request(url: str, body: dict | None, api_key: str, timeout: float) -> dict:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the user's own endpoint)
        return json.loads(response.read().decode("utf-8"))


def check(url: str, api_key: str, model: str = "", timeout: float = 10.0) -> str:
    """The judge answers (GET …/models) before any model loads, or one line; returns the judge model's id
    (`model`, or the endpoint's first)."""
    if not url.startswith(("http://", "https://")):
        raise UserError(f"--judge_url={url}: expected an http(s) URL of an OpenAI-compatible API, e.g. "
                        f"http://127.0.0.1:8000/v1")
    try:
        listed = [m["id"] for m in _request(endpoint(url, "/models"), None, api_key, timeout).get("data", [])]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"--judge_url={url}: the judge does not answer ({getattr(e, 'reason', e)})") from None
    if not model and not listed:
        raise UserError(f"--judge_url={url} lists no model; name one with --judge_model")
    return model or listed[0]


def parse_score(text: str) -> int | None:
    found = SCORE.findall(text)
    return int(found[-1]) if found else None


def request_body(model: str, question: str, extra: str, answer: str) -> dict:
    """The chat request that asks the judge about one answer: the rubric with the question, input and answer."""
    prompt = RUBRIC.format(question=question, input_block=f"\n[입력]\n{extra}\n" if extra else "", answer=answer)
    return {"model": model, "temperature": 0, "max_tokens": 512, "messages": [{"role": "user", "content": prompt}]}


def ask(url: str, body: dict, *, api_key: str = "", timeout: float = 120.0) -> dict:
    """{"score": 1-10 or None (the judge's reply had no score), "reply": the judge's text} for one request; a
    request that failed is {"score": None, "reply": "(judge failed: …)", "failed": True}."""
    try:
        reply = _request(endpoint(url, "/chat/completions"), body, api_key, timeout)
        text = reply["choices"][0]["message"]["content"] or ""
    except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
        return {"score": None, "reply": f"(judge failed: {getattr(e, 'reason', e)})", "failed": True}
    return {"score": parse_score(text), "reply": text}


def cache_key(url: str, body: dict) -> str:
    raw = json.dumps([endpoint(url, "/chat/completions"), body], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def judge_all(url: str, model: str, answers: list[dict], *, cache: Path, api_key: str = "",
              desc: str = "judging") -> list[dict]:
    """The judge's verdict on each answer ({"question", "input", "text"}), in order. A verdict the same judge
    gave on the same request is read back from the cache; a failed request is not kept, so the next run asks
    again."""
    from tqdm.auto import tqdm

    done = read_cache(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    verdicts = []
    with open(cache, "a", encoding="utf-8") as out:
        for a in tqdm(answers, desc=desc, unit="answer"):
            body = request_body(model, a["question"], a["input"], a["text"])
            key = cache_key(url, body)
            verdict = done.get(key) or ask(url, body, api_key=api_key)
            if key not in done and not verdict.get("failed"):
                done[key] = {**verdict, "key": key}
                out.write(json.dumps(done[key], ensure_ascii=False) + "\n")
                out.flush()
            verdicts.append({k: v for k, v in verdict.items() if k != "key"})
    return verdicts
