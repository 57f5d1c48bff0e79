"""The optional judge against a tiny OpenAI-compatible server in this process: the rubric is sent, the score
read back and cached, so a stopped report resumes without asking again; an endpoint that does not answer is
one line before any model loads."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kochat.errors import UserError
from kochat.evaluation import judge


class FakeJudge(BaseHTTPRequestHandler):
    seen = []

    def _send(self, body):
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self._send({"object": "list", "data": [{"id": "judge-ko"}]})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeJudge.seen.append((self.headers.get("Authorization"), body))
        prompt = body["messages"][0]["content"]
        reply = "충실한 답변입니다.\n점수: 8" if "서울" in prompt else "엉뚱한 답입니다. 점수 없음"
        self._send({"choices": [{"message": {"role": "assistant", "content": reply}}]})

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_judge():
    FakeJudge.seen.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def answer(text, question="한국의 수도는?"):
    return {"question": question, "input": "", "text": text}


def test_scores_come_back_from_the_rubric(fake_judge, tmp_path):
    model = judge.check(fake_judge, "KEY")
    assert model == "judge-ko"
    good, bad = judge.judge_all(fake_judge, model, [answer("서울입니다."), answer("모릅니다.")],
                                cache=tmp_path / "judge.jsonl", api_key="KEY")
    assert good == {"score": 8, "reply": "충실한 답변입니다.\n점수: 8"} and bad["score"] is None
    auth, body = FakeJudge.seen[0]
    assert auth == "Bearer KEY" and body["model"] == "judge-ko" and body["temperature"] == 0
    assert "[질문]\n한국의 수도는?" in body["messages"][0]["content"] and "점수: N" in body["messages"][0]["content"]


def test_a_stopped_report_resumes_from_the_cache_and_asks_only_for_what_changed(fake_judge, tmp_path):
    cache = tmp_path / "judge.jsonl"
    first = judge.judge_all(fake_judge, "judge-ko", [answer("서울입니다.")], cache=cache)
    cache.write_text(cache.read_text(encoding="utf-8") + '{"key": "cut by an interrup', encoding="utf-8")
    again = judge.judge_all(fake_judge, "judge-ko", [answer("서울입니다."), answer("서울특별시입니다.")], cache=cache)
    assert again[0] == first[0] and again[1]["score"] == 8
    assert len(FakeJudge.seen) == 2  # the first answer was not asked again; the changed one was
    judge.judge_all(fake_judge, "judge-en", [answer("서울입니다.")], cache=cache)  # another judge model: asked
    assert len(FakeJudge.seen) == 3


def test_a_failed_request_is_not_kept_so_the_next_run_asks_again(tmp_path):
    cache = tmp_path / "judge.jsonl"
    verdict, = judge.judge_all("http://127.0.0.1:9/v1", "judge-ko", [answer("서울입니다.")], cache=cache)
    assert verdict["score"] is None and verdict["failed"] and "judge failed" in verdict["reply"]
    assert cache.read_text(encoding="utf-8") == ""


def test_a_judge_that_does_not_answer_is_one_line():
    with pytest.raises(UserError, match="the judge does not answer"):
        judge.check("http://127.0.0.1:9/v1", "", timeout=2)
    with pytest.raises(UserError, match="expected an http"):
        judge.check("127.0.0.1:8000", "")


def test_the_last_score_line_counts():
    assert judge.parse_score("점수: 3 이었지만 다시 보니\n점수：10") == 10
    assert judge.parse_score("점수: 11") is None
