"""The chat page (kochat/web/chat.html) in a real headless Chromium (Debian's, driven by Playwright).

Against the real tiny-model server where it does what is tested (streaming, the key, stopping, keeping
conversations); where the server does not send it yet (sources, /v1/indexes, answers full of Markdown or of
HTML meant to inject), Playwright answers the page's requests itself with crafted bodies: those tests test the
page's own rendering and requests, not the server."""
import json
import shutil
import time
import urllib.request

import pytest
from playwright.sync_api import expect

from support import KEY

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A page in a fresh browser context: its own, empty localStorage and sessionStorage."""
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    yield context.new_page()
    context.close()


def stored(page) -> list[dict]:
    """The conversations the page keeps in localStorage."""
    return json.loads(page.evaluate("localStorage.getItem('kochat-conversations') || '[]'"))


def ask(page, question, n):
    """Ask in the page; the answer's text as the page received and kept it (the bubble shows it rendered)."""
    page.fill("#input", question)
    page.keyboard.press("Enter")
    page.wait_for_selector(f".msg.assistant[data-done='true'] >> nth={n}", timeout=60_000)
    current = page.evaluate("localStorage.getItem('kochat-current')")
    conversation = next(c for c in stored(page) if c["id"] == current)
    answer = [m for m in conversation["messages"] if m["role"] == "assistant"][-1]["content"]
    assert page.locator(".msg.assistant").nth(n).inner_text().strip() or not answer.strip()
    return answer


def sse(*events) -> str:
    return "".join(f"data: {json.dumps(e, ensure_ascii=False)}\n\n" for e in events) + "data: [DONE]\n\n"


def chunk(content=None, reason=None, **extra):
    delta = {"content": content} if content is not None else {}
    return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": "tiny",
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason}], **extra}


def answer_with(page, pieces, sources=None, indexes=None):
    """Route the page's chat completions to a crafted stream (the answer in pieces, then sources as the server
    will send them: one chunk with empty choices after the finish chunk), and /v1/indexes to `indexes` (None:
    404). Returns the list the posted JSON bodies are appended to."""
    posted = []

    def chat(route):
        posted.append(json.loads(route.request.post_data))
        events = [{**chunk(), "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                           "finish_reason": None}]}]
        events += [chunk(p) for p in pieces] + [chunk(reason="stop")]
        if sources is not None:
            events.append({**chunk(), "choices": [], "sources": sources})
        route.fulfill(status=200, content_type="text/event-stream", body=sse(*events))

    def index_list(route):
        if indexes is None:
            route.fulfill(status=404, content_type="application/json", body='{"error": {"message": "not found"}}')
        else:
            route.fulfill(status=200, content_type="application/json",
                          body=json.dumps({"object": "list", "data": indexes}))

    page.route("**/v1/chat/completions", chat)
    page.route("**/v1/indexes", index_list)
    return posted


def health(served) -> dict:
    with urllib.request.urlopen(served.url + "/health", timeout=5) as r:
        return json.load(r)


def test_a_conversation_in_the_page_streams_the_models_answers(browser, served, tmp_path):
    page = browser.new_page(viewport={"width": 900, "height": 700})
    requests, bodies = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("request", lambda r: bodies.append(json.loads(r.post_data)) if r.url.endswith("/chat/completions") else None)
    page.goto(served.url + "/")
    page.wait_for_function("document.getElementById('model').textContent === 'tiny'")
    assert page.title() == "사내 챗봇" and page.locator("#send").inner_text() == "보내기"

    first = ask(page, "한국의 수도는 어디인가요?", 0)
    assert first == served.greedy([{"role": "user", "content": "한국의 수도는 어디인가요?"}]).text
    history = [{"role": "user", "content": "한국의 수도는 어디인가요?"}, {"role": "assistant", "content": first},
               {"role": "user", "content": "그럼 일본은요?"}]
    assert ask(page, "그럼 일본은요?", 1) == served.greedy(history).text  # earlier turns went along
    assert all(url.startswith(served.url) for url in requests)  # nothing from the internet
    # this server has no document indexes (/v1/indexes: 404): no control, and no index fields in the request
    assert page.locator("#indexBox").is_hidden()
    assert bodies[-1] == {"model": "tiny", "stream": True, "messages": history}

    shot = tmp_path / "chat.png"
    page.screenshot(path=str(shot))
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (900, 700)
    colors = image.getcolors(maxcolors=1_000_000)
    blue = sum(n for n, (r, g, b) in colors if (r, g, b) == (0x2F, 0x6F, 0xED))  # the user's bubbles
    assert blue > 2_000 and len(colors) > 50  # drawn, not blank
    page.click("#reset")
    assert page.locator(".msg").count() == 0
    page.close()


def test_the_page_asks_for_the_api_key_when_the_server_needs_one_and_says_when_it_was_refused(page, keyed):
    page.goto(keyed.url + "/")
    page.wait_for_selector("#keyDialog[open]")
    assert not page.is_visible("#keyWrong")  # the first time, nothing was refused
    page.fill("#keyInput", "wrong-key")
    page.click("#keyForm button")
    page.wait_for_selector("#keyDialog[open]")  # asked again, saying why
    assert page.is_visible("#keyWrong") and "받지 않았습니다" in page.text_content("#keyWrong")
    page.fill("#keyInput", KEY)
    page.click("#keyForm button")
    page.wait_for_function("document.getElementById('model').textContent === 'tiny'")
    assert ask(page, "하늘은 왜 파란가요?", 0) == keyed.greedy([{"role": "user", "content": "하늘은 왜 파란가요?"}]).text
    # the key is kept for this tab only (sessionStorage), never in localStorage with the conversations
    assert page.evaluate("sessionStorage.getItem('kochat-key')") == KEY
    local = page.evaluate("JSON.stringify(Object.entries(localStorage))")
    assert KEY not in local and "하늘은 왜 파란가요?" in local
    # the tab's icon is in the page, so a browser asks for no /favicon.ico (a 404 in the server's log); it draws
    icon = page.evaluate("""() => new Promise(done => { const img = new Image();
        img.onload = () => done([img.src.slice(0, 18), img.naturalWidth]); img.onerror = () => done(null);
        img.src = document.querySelector("link[rel=icon]").href; })""")
    assert icon[0] == "data:image/svg+xml" and icon[1] > 0


def test_the_stop_button_ends_a_long_answer_and_the_server_frees_its_row(page, served):
    """Against the real server, its model slowed to 0.2 s a token (a forward hook) so that the answer is long
    in time: 중지 aborts the fetch, the partial answer stays, marked, and the server's row is freed."""
    # the tiny model's answers differ from machine to machine (as its training's floats do): the longest of a few
    candidates = ["다음 문장에서 틀린 맞춤법을 고치세요.", "연차휴가 규정에 대해 자세히 설명해 주세요.",
                  "김치는 어떻게 만드나요?", "회의실 예약은 어떻게 하나요?", "하늘은 왜 파란가요?"]
    full, question = max(((served.greedy([{"role": "user", "content": q}]), q) for q in candidates),
                         key=lambda answered: answered[0].new_tokens)
    assert full.new_tokens >= 10  # long enough to stop it halfway (a few seconds at 0.2 s a token)
    steps = []

    def slow(*_):  # returns None: the output is left as it is
        steps.append(1)
        time.sleep(0.2)

    hook = served.model.get_base_model().register_forward_hook(slow)
    try:
        page.goto(served.url + "/")
        page.wait_for_function("document.getElementById('model').textContent === 'tiny'")
        page.fill("#input", question)
        page.keyboard.press("Enter")
        page.wait_for_function("document.querySelector('.msg.assistant .body') &&"
                               "!document.querySelector('.msg.assistant .typing')", timeout=20_000)  # text arrives
        assert page.locator("#send").inner_text() == "중지"
        page.click("#send")
        page.wait_for_selector(".msg.assistant[data-stopped='true'][data-done='true']", timeout=5_000)
        assert page.locator("#send").inner_text() == "보내기"  # usable again at once
        assert "중지" in page.locator(".msg.assistant .stopped").inner_text()
        deadline = time.time() + 5
        while health(served)["in_flight"] and time.time() < deadline:
            time.sleep(0.05)
        assert health(served)["in_flight"] == 0
        assert len(steps) < full.new_tokens  # the server stopped generating: the row was freed, not finished
    finally:
        hook.remove()
    kept = stored(page)[0]["messages"][1]
    assert kept["stopped"] is True and kept["content"].strip() and full.text.startswith(kept["content"].strip())
    assert kept["content"] != full.text
    # the next question goes with the partial answer in its history (role and content only)
    history = [{"role": "user", "content": question}, {"role": "assistant", "content": kept["content"]},
               {"role": "user", "content": "고마워요"}]
    assert ask(page, "고마워요", 1) == served.greedy(history).text


def test_conversations_are_kept_across_reloads_and_can_be_deleted(page, served):
    page.goto(served.url + "/")
    page.wait_for_function("document.getElementById('model').textContent === 'tiny'")
    first = ask(page, "한국의 수도는 어디인가요?", 0)
    page.click("#reset")
    assert page.locator(".msg").count() == 0
    ask(page, "이순신 장군은 누구인가요?", 0)
    page.reload()
    page.wait_for_selector(".msg.assistant[data-done='true']")
    # the last conversation is shown again; the list names each conversation by its first question
    assert page.locator(".msg.user").all_inner_texts() == ["이순신 장군은 누구인가요?"]
    assert page.locator("#convs .conv .open").all_inner_texts() == ["이순신 장군은 누구인가요?", "한국의 수도는 어디인가요?"]
    page.click("#convs .conv >> nth=1 >> .open")
    expect(page.locator(".msg.user")).to_have_text(["한국의 수도는 어디인가요?"])
    assert [m["content"] for m in stored(page)[1]["messages"]] == ["한국의 수도는 어디인가요?", first]
    page.hover("#convs .conv >> nth=0")
    page.click("#convs .conv >> nth=0 >> .del")  # delete 이순신…, not the one shown
    expect(page.locator("#convs .conv .open")).to_have_text(["한국의 수도는 어디인가요?"])
    page.reload()
    page.wait_for_selector(".msg.assistant[data-done='true']")
    assert page.locator(".msg.user").all_inner_texts() == ["한국의 수도는 어디인가요?"]
    assert [c["messages"][0]["content"] for c in stored(page)] == ["한국의 수도는 어디인가요?"]


def test_an_error_is_shown_and_the_question_comes_back(page, served):
    """The page's own handling of an error answer (Playwright answers the request with a 429 in OpenAI's form)."""
    page.route("**/v1/chat/completions", lambda route: route.fulfill(
        status=429, content_type="application/json",
        body=json.dumps({"error": {"message": "the server is busy", "type": "rate_limit_error"}})))
    page.goto(served.url + "/")
    page.fill("#input", "연차는 며칠인가요?")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.error")).to_have_text("오류: the server is busy")
    assert page.locator("#input").input_value() == "연차는 며칠인가요?"  # to send again
    assert page.locator(".msg.assistant").count() == 0 and stored(page) == []
    assert page.locator("#send").inner_text() == "보내기"


def test_a_conversation_longer_than_the_model_takes_is_sent_without_its_oldest_turns(page, served):
    """The server answers 400 context_length_exceeded (Playwright: for any request with earlier turns): the page asks
    again without the oldest question and answer, keeps them itself, and says so in Korean where the question alone
    is too long."""
    posted, too_long = [], {"error": {"message": "the prompt is 1050 tokens; this model's context is 1024",
                                      "type": "invalid_request_error", "code": "context_length_exceeded"}}

    def chat(route):
        body = json.loads(route.request.post_data)
        posted.append([m["content"] for m in body["messages"]])
        if len(body["messages"]) > 1 or body["messages"][0]["content"] == "아주 긴 질문":
            route.fulfill(status=400, content_type="application/json", body=json.dumps(too_long))
        else:
            route.fulfill(status=200, content_type="text/event-stream", body=sse(chunk("답"), chunk(reason="stop")))
    page.route("**/v1/chat/completions", chat)
    page.goto(served.url + "/")
    ask(page, "첫 질문", 0)
    ask(page, "둘째 질문", 1)
    assert posted == [["첫 질문"], ["첫 질문", "답", "둘째 질문"], ["둘째 질문"]]
    assert [m["content"] for m in stored(page)[0]["messages"]] == ["첫 질문", "답", "둘째 질문", "답"]
    page.fill("#input", "아주 긴 질문")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.error")).to_contain_text("오류: 질문이 이 모델에 너무 깁니다. 줄여서 다시 보내 주세요")
    assert posted[-1] == ["아주 긴 질문"] and page.locator("#input").input_value() == "아주 긴 질문"


MARKDOWN = ("## 연차 안내\n\n연차는 **15일**이고 *입사 1년 후* 생깁니다. 신청은 `HR-101` 양식으로 합니다.\n"
            "줄바꿈도 지킵니다.\n\n- 첫째 항목\n- 둘째 항목\n  - 안쪽 항목\n\n1. 신청\n2. 승인\n\n"
            "| 구분 | 일수 |\n|---|---:|\n| 연차 | 15 |\n| 병가 | 60 |\n\n"
            "```python\nprint('<b>안녕</b>')\n```\n\n자세한 내용은 [인사 포털](https://hr.example.com/leave)에서 확인하세요.")


def test_answers_are_rendered_as_markdown_while_streaming(page, served):
    """The page's own rendering: the answer is a crafted stream (Playwright answers the request), cut into
    pieces that split the Markdown marks, as a model's tokens would."""
    answer_with(page, [MARKDOWN[i:i + 7] for i in range(0, len(MARKDOWN), 7)])
    page.goto(served.url + "/")
    assert ask(page, "연차는 며칠인가요?", 0) == MARKDOWN
    body = page.locator(".msg.assistant .body")
    assert body.locator("h2").inner_text() == "연차 안내"
    assert body.locator("strong").inner_text() == "15일" and body.locator("em").inner_text() == "입사 1년 후"
    assert body.locator("p code").inner_text() == "HR-101"
    assert body.locator("p br").count() == 1  # a line break inside a paragraph
    assert body.locator("ul > li").count() == 3 and body.locator("ul ul > li").inner_text() == "안쪽 항목"
    assert body.locator("ol > li").all_inner_texts() == ["신청", "승인"]
    assert body.locator("th").all_inner_texts() == ["구분", "일수"]
    assert body.locator("td").all_inner_texts() == ["연차", "15", "병가", "60"]
    assert body.locator("pre code").inner_text() == "print('<b>안녕</b>')"  # code is text, as it is
    link = body.locator("a")
    assert link.inner_text() == "인사 포털" and link.get_attribute("href") == "https://hr.example.com/leave"
    assert link.get_attribute("target") == "_blank" and link.get_attribute("rel") == "noopener noreferrer"
    assert page.locator(".msg.user").inner_text() == "연차는 며칠인가요?"


INJECTION = ('<img src=x onerror="window.pwned=1"> 그리고 <script>window.pwned=1</script>\n\n'
             '[x](javascript:window.pwned=1) [y](JAVASCRIPT:window.pwned=1) ![z](https://example.com/z.png)\n\n'
             '**<img src=x onerror="window.pwned=1">** `<script>window.pwned=1</script>`\n\n'
             '| <img src=x onerror="window.pwned=1"> |\n|---|\n| <svg onload="window.pwned=1"> |')


def test_html_in_answers_and_sources_is_shown_as_text_never_run(page, served):
    """The page's own rendering: a crafted answer and source passage (Playwright answers the request) full of
    HTML and javascript: links. Nothing runs, no element is made from them; they show as text."""
    answer_with(page, [INJECTION], sources=[{"n": 1, "source": '<img src=x onerror="window.pwned=1">.md',
                                             "page": None, "heading": "<script>window.pwned=1</script>",
                                             "text": '<img src=x onerror="window.pwned=1">', "score": 1.0}])
    page.goto(served.url + "/")
    ask(page, "<b>굵게</b> 써 주세요", 0)
    page.click(".sources summary")
    page.wait_for_timeout(100)
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("#log img, #log script, #log svg, #log [onerror], #log [onload]").count() == 0
    assert page.locator("#log a[href^='javascript' i]").count() == 0
    assert page.locator(".msg.user").inner_text() == "<b>굵게</b> 써 주세요"
    text = page.locator(".msg.assistant").inner_text()
    assert '<img src=x onerror="window.pwned=1">' in text and "<script>window.pwned=1</script>" in text
    assert "[x](javascript:window.pwned=1)" in text  # a link to any other scheme than http(s) stays text


SOURCES = [{"n": 1, "source": "규정/취업규칙.md", "page": None, "heading": "제3장 근무 > 제12조 연차휴가",
            "text": "제12조(연차휴가) ① 1년간 80% 이상 출근한 직원에게 <b>15일</b>의 유급휴가를 준다.", "score": 7.31},
           {"n": 2, "source": "규정/복리후생.pdf", "page": 3, "heading": "경조휴가",
            "text": "본인 결혼 5일, 자녀 결혼 1일.", "score": 4.2}]
GROUNDED = ("연차휴가는 **15일**입니다 [1]. 1년간 80% 이상 출근해야 합니다.\n\n"
            "- 경조휴가는 따로 있습니다 [2].\n- 자세한 내용은 인사팀에 문의하세요.")


def test_sources_under_a_grounded_answer_and_the_index_choice(page, served, tmp_path):
    """The page's own rendering and requests: /v1/indexes and the streamed answer with its sources are crafted
    (Playwright answers the requests) to the contract the server is getting."""
    posted = answer_with(page, [GROUNDED[:30], GROUNDED[30:]], sources=SOURCES,
                         indexes=[{"name": "hr", "files": 3, "passages": 120}, {"name": "it", "files": 1, "passages": 9}])
    page.goto(served.url + "/")
    page.wait_for_selector("#indexBox:not([hidden])")
    assert page.locator("#index option").all_inner_texts() == ["hr", "it", "문서 없이"]
    assert page.locator("#index").input_value() == "hr"  # the first index until one is chosen
    ask(page, "연차는 며칠인가요?", 0)
    assert posted[-1]["index"] == "hr" and "retrieval" not in posted[-1]

    items = page.locator(".msg.assistant .sources summary")
    assert page.locator(".msg.assistant .sources-title").inner_text() == "출처"
    assert items.all_inner_texts() == ["[1] 규정/취업규칙.md · 제12조 연차휴가", "[2] 규정/복리후생.pdf · 3쪽 · 경조휴가"]
    passage = page.locator(".msg.assistant .sources .passage").first
    assert passage.is_hidden()
    items.first.click()
    expect(passage).to_be_visible()
    assert "<b>15일</b>의 유급휴가" in passage.inner_text()  # shown as text
    page.click(".msg.assistant .body a.cite[data-n='2']")  # the [2] in the answer opens source 2
    expect(page.locator(".msg.assistant .sources .passage").nth(1)).to_be_visible()
    shot = tmp_path / "sources.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    page.select_option("#index", label="문서 없이")
    ask(page, "고마워요", 1)
    assert posted[-1]["retrieval"] is False and "index" not in posted[-1]
    # only role and content go to the server, though the page keeps the sources with the conversation
    assert posted[-1]["messages"][:2] == [{"role": "user", "content": "연차는 며칠인가요?"},
                                          {"role": "assistant", "content": GROUNDED}]
    page.reload()
    page.wait_for_selector(".msg.assistant[data-done='true'] >> nth=1")
    assert page.locator(".msg.assistant").first.locator(".sources summary").count() == 2  # kept, shown again
    page.wait_for_selector("#indexBox:not([hidden])")
    assert page.locator("#index").input_value() == ""  # 문서 없이, remembered


def test_a_grounded_answer_from_the_real_server_shows_its_sources(page, docs_server):
    """End to end: the real server with document indexes; the page lists the key's indexes, asks, and shows
    the passages the server retrieved under the answer."""
    page.goto(docs_server.url + "/")
    page.wait_for_selector("#keyDialog[open]")
    page.fill("#keyInput", "hr-key")
    page.click("#keyForm button")
    page.wait_for_selector("#indexBox:not([hidden])")
    assert page.locator("#index option").all_inner_texts() == ["hr", "문서 없이"]  # only what this key may use
    ask(page, "1년 이상 근속한 직원의 연차휴가는 며칠인가요?", 0)
    items = page.locator(".msg.assistant .sources summary").all_inner_texts()
    assert items and items[0] == "[1] 취업규칙.md · 제12조 연차휴가"
    page.locator(".msg.assistant .sources summary").first.click()
    expect(page.locator(".msg.assistant .sources .passage").first).to_contain_text("15일의 연차휴가")
