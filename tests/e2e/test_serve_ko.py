"""`python serve_ko.py` started as a user starts it, on a loopback port, then stopped."""
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from kochat import PROJECT_ROOT


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve(tmp_path):
    procs = []

    def start(*args):
        proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "serve_ko.py"), *args], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


def wait_healthy(url, proc, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError("the server did not come up")


def test_serve_a_trained_run_and_answer_with_the_openai_client(tiny_run, serve):
    from kochat import answering
    from kochat.generation import gen

    run, _ = tiny_run
    port = free_port()
    system = "당신은 한빛소프트 인사팀의 안내 도우미입니다."
    proc = serve(f"--adapter={run}", f"--port={port}", "--api-key", "k1", "--api-key=k2", f"--system={system}")
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    client = openai.OpenAI(base_url=url + "/v1", api_key="k2", max_retries=0)
    question = {"role": "user", "content": "한국의 수도는?"}
    reply = client.chat.completions.create(model="tiny", messages=[question], temperature=0, max_tokens=16)
    assert reply.choices[0].message.content and reply.usage.completion_tokens <= 16
    # --system goes before a conversation that sends none; a client's own system message is used instead
    loaded = answering.load_for_answering(str(run))
    own = {"role": "system", "content": "짧게 답하세요."}
    expected = [gen(loaded.model, loaded.tokenizer, loaded.run.template, sent, max_new_tokens=16)[0].text
                for sent in ([question], [{"role": "system", "content": system}, question], [own, question])]
    assert len(set(expected)) == 3  # the tiny model answers each differently
    for messages, answer in [([question], expected[1]), ([own, question], expected[2])]:
        assert client.chat.completions.create(model="tiny", messages=messages, temperature=0,
                                              max_tokens=16).choices[0].message.content == answer
    assert httpx.get(url + "/v1/models").status_code == 401
    assert "사내 챗봇" in httpx.get(url + "/").text
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    output = proc.stdout.read() + proc.stderr.read()
    assert "한국의 수도는" not in output  # prompts are not logged
    assert "--batch_kernel" not in output  # the default is silent where it has nothing to move (a CPU)


def test_refuses_to_listen_beyond_loopback_without_a_key(tiny_run, serve):
    run, _ = tiny_run
    proc = serve(f"--adapter={run}", "--host=0.0.0.0")
    assert proc.wait(timeout=120) == 2
    assert proc.stderr.read().strip().splitlines()[-1].startswith(
        "error: refusing to listen on 0.0.0.0 without an API key")


def test_a_port_in_use_is_one_clear_line(tiny_run, serve):
    run, _ = tiny_run
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = serve(f"--adapter={run}", f"--port={busy.getsockname()[1]}")
        assert proc.wait(timeout=120) != 0
    assert "error: cannot listen on 127.0.0.1" in proc.stderr.read()


def test_keys_from_the_environment_and_a_key_file_limited_to_indexes(tiny_run, serve, tmp_path, monkeypatch):
    from kochat.documents import indexing

    run, _ = tiny_run
    for name in ("hr", "it"):
        indexing.update_index(str(PROJECT_ROOT / "data" / "company_docs"), str(tmp_path / f"index-{name}"),
                              chunk_chars=800, overlap_chars=100, k1=1.2, b=0.9, max_file_bytes=10_000_000)
    (tmp_path / "keys.txt").write_text("# keys of the HR team\nfile-key\n\nhr-key hr\n#old-key hr\n", encoding="utf-8")
    monkeypatch.setenv("API_KEYS", "env-key-1, env-key-2")
    port = free_port()
    proc = serve(f"--adapter={run}", f"--port={port}", "--api_key_file=keys.txt", "--index=hr=index-hr",
                 "--index", "index-it", "--batch_kernel=fp8")
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    for key, status in [("env-key-2", 200), ("file-key", 200), ("env-key-3", 401), ("env-key-1", 200), ("hr-key", 200),
                        ("#old-key", 401), ("#", 401)]:  # a commented-out key is no key
        assert httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == status, key
    assert httpx.get(url + "/v1/models").status_code == 401
    for key, names in [("hr-key", ["hr"]), ("file-key", ["hr", "index-it"]), ("env-key-1", ["hr", "index-it"])]:
        listed = httpx.get(url + "/v1/indexes", headers={"Authorization": f"Bearer {key}"}).json()["data"]
        assert [i["name"] for i in listed] == names and all(i["files"] == 7 for i in listed)
    client = openai.OpenAI(base_url=url + "/v1", api_key="hr-key", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "연차휴가는 며칠인가요?"}],
                                       extra_body={"index": "index-it"})
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "연차휴가는 며칠인가요?"}],
                                           max_tokens=8)
    assert reply.model_extra["sources"][0]["source"] == "취업규칙.md" and reply.model_extra["sources"][0]["index"] == "hr"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert ("--batch_kernel=fp8 moves an int4 export in fast mode on a Hopper GPU with mslk-cuda installed, or an "
            "int8 export with gemlite: nothing here to move") in proc.stderr.read()  # asked for: it says why not


def test_an_index_the_key_file_names_but_the_server_lacks_is_one_line(run_script, tmp_path):
    (tmp_path / "keys.txt").write_text("k1 hr,payroll\n", encoding="utf-8")
    result = run_script("serve_ko.py", "--adapter=no-such-run", "--api_key_file=keys.txt", "--index=hr=x", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(
        "error: keys.txt line 1 names an index this server does not serve: payroll (serving: hr)"), result.stderr
    # Notepad's byte-order mark is no part of the first key; a key a header cannot carry is named by its line
    (tmp_path / "keys.txt").write_text("\ufeffk1 hr\n# 팀\n비밀키\n", encoding="utf-8")
    result = run_script("serve_ko.py", "--adapter=no-such-run", "--api_key_file=keys.txt", "--index=hr=x", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith(
        "error: keys.txt line 3: the key has a character that is not printable ASCII"), result.stderr


@pytest.mark.parametrize("args, message", [
    (["--port", "80000"], "--port must be from 1 to 65535, not 80000"),
    (["--port=0"], "--port must be from 1 to 65535, not 0"),
    (["--max_batch=0"], "--max_batch must be at least 1, not 0"),
    (["--batch_kernel=fast"], "--batch_kernel is auto, both, exact, fp8, false or humming, not 'fast'"),
    (["--max_concurrent=-4"], "--max_concurrent must be at least 1, not -4"),
    (["--max_tokens=-1"], "--max_tokens must be at least 1, not -1"),
    (["--max_body_bytes=0"], "--max_body_bytes must be at least 1, not 0"),
    (["--temperature=2.5"], "--temperature must be from 0 (greedy) to 2, not 2.5"),
    (["--temperature=-0.1"], "--temperature must be from 0 (greedy) to 2, not -0.1"),
    (["--top_p=0"], "--top_p must be above 0 and at most 1, not 0"),
    (["--top_p=1.5"], "--top_p must be above 0 and at most 1, not 1.5"),
    (["--body_timeout_s=0"], "--body_timeout_s must be a number of seconds above 0, not 0"),
    (["--header_timeout_s=-1"], "--header_timeout_s must be a number of seconds above 0, not -1"),
    (["--header_timeout_s=nan"], "--header_timeout_s must be a number of seconds above 0, not nan"),
    (["--host=", "--api-key=k"], "--host='' is not an address or a known host name: use 127.0.0.1 (this machine "
                                 "only) or 0.0.0.0 (all its addresses, with an API key)"),
    (["--host=foo..bar", "--api-key=k"], "--host='foo..bar' is not an address or a known host name"),
    (["--api-key=비밀"], "an API key given with --api-key or API_KEYS has a character that is not printable ASCII"),
    (["--index=hr department=x"], "--index='hr department=x': give name=folder, the name in letters, digits"),
    (["--index=hr=a", "--index=hr=b"], "--index names 'hr' twice; give each index its own name (name=folder)"),
    (["--top_k=0"], "--top_k must be at least 1, not 0"),
    (["--min_relevance=1.5"], "--min_relevance must be from 0 to 1, not 1.5"),
])
def test_a_bad_option_is_one_line_before_the_model_loads(run_script, tmp_path, args, message):
    # the adapter does not exist: an error about it would mean the option went unchecked up to the model
    result = run_script("serve_ko.py", "--adapter=no-such-run", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(f"error: {message}"), result.stderr
