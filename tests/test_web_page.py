"""The chat page (kochat/web/chat.html) in a real headless Chromium (Debian's, driven by Playwright)."""
import shutil

import pytest

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


def ask(page, question, n):
    page.fill("#input", question)
    page.keyboard.press("Enter")
    page.wait_for_selector(f".msg.assistant[data-done='true'] >> nth={n}", timeout=60_000)
    return page.locator(".msg.assistant").nth(n).inner_text()


def test_a_conversation_in_the_page_streams_the_models_answers(browser, served, tmp_path):
    page = browser.new_page(viewport={"width": 900, "height": 700})
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(served.url + "/")
    page.wait_for_function("document.getElementById('model').textContent === 'tiny'")
    assert page.title() == "사내 챗봇" and page.locator("#send").inner_text() == "보내기"

    first = ask(page, "한국의 수도는 어디인가요?", 0)
    assert first == served.greedy([{"role": "user", "content": "한국의 수도는 어디인가요?"}]).text
    history = [{"role": "user", "content": "한국의 수도는 어디인가요?"}, {"role": "assistant", "content": first},
               {"role": "user", "content": "그럼 일본은요?"}]
    assert ask(page, "그럼 일본은요?", 1) == served.greedy(history).text  # earlier turns went along
    assert all(url.startswith(served.url) for url in requests)  # nothing from the internet

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


def test_the_page_asks_for_the_api_key_when_the_server_needs_one(browser, keyed):
    page = browser.new_page()
    page.goto(keyed.url + "/")
    page.wait_for_selector("#keyDialog[open]")
    page.fill("#keyInput", "wrong-key")
    page.click("#keyForm button")
    page.wait_for_selector("#keyDialog[open]")  # asked again
    page.fill("#keyInput", KEY)
    page.click("#keyForm button")
    page.wait_for_function("document.getElementById('model').textContent === 'tiny'")
    assert ask(page, "하늘은 왜 파란가요?", 0) == keyed.greedy([{"role": "user", "content": "하늘은 왜 파란가요?"}]).text
    page.close()
