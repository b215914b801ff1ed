"""The SSE and WebSocket chat examples in a real browser: headless Chromium, driven by
Playwright, against each app running as a subprocess on loopback and talking to a FakeBedrock
in this test's event loop (so the test sees every request and disconnect).

Needs the Python package ``playwright`` and Debian's ``chromium`` at /usr/bin/chromium (never
a downloaded browser); without them the whole module skips, saying which is missing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from aiostream_chat.testing import FakeBedrock, Fault, reply
from tests._browser import CHROMIUM, CHROMIUM_ARGS, require_browser

require_browser("starlette", "uvicorn", "websockets")

from playwright.async_api import Browser, Page, async_playwright  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parent.parent
APPS = {
    "sse_chat": ROOT / "examples" / "sse_chat" / "app.py",
    "websocket_chat": ROOT / "examples" / "websocket_chat" / "app.py",
}
# Only loopback: no credential lookup, and Chromium's own background traffic switched off.
ENV = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1"}
BUBBLE = """() => {
    const bubble = [...document.querySelectorAll('#log .msg.assistant')].pop();
    return bubble ? [bubble.textContent, bubble.dataset.state] : ['', ''];
}"""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fake() -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock() as fake:
        yield fake


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module", params=sorted(APPS))
async def app(request: pytest.FixtureRequest, fake: FakeBedrock) -> AsyncIterator[str]:
    """The app on a free loopback port, using the test's emulator; stopped with Ctrl-C."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(APPS[request.param]), "--port", "0",
        "--emulator-url", fake.endpoint_url,
        env=ENV, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        url = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()


@pytest_asyncio.fixture(loop_scope="module")
async def page(app: str, browser: Browser, fake: FakeBedrock) -> AsyncIterator[Page]:
    """A fresh browser context (so a fresh session cookie) on the app's page."""
    fake.reset()
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(app)
    await page.wait_for_selector("body[data-ready=true]", timeout=10_000)
    yield page
    await context.close()


async def send(page: Page, prompt: str) -> None:
    await page.fill("#prompt", prompt)
    await page.click("#send")


async def last_reply(page: Page) -> tuple[str, str]:
    """The last assistant message's text and state (streaming, done, stopped, error)."""
    text, state = await page.evaluate(BUBBLE)
    return str(text), str(state)


async def wait_state(page: Page, state: str) -> str:
    """Wait until the last reply reaches ``state``; return its text."""
    async with asyncio.timeout(15):
        while (current := await last_reply(page))[1] != state:
            assert current[1] in ("streaming", state), current
            await asyncio.sleep(0.02)
    return current[0]


async def status(page: Page) -> str:
    return await page.text_content("#status") or ""


async def test_reply_grows_on_the_page_while_streaming(page: Page, fake: FakeBedrock) -> None:
    """Typing a prompt shows the reply growing through at least two intermediate states
    (each a prefix of the final text) before it completes with the full text, stored."""
    text = "Streams arrive in pieces: one, two, three, four, five, six, seven and eight."
    fake.enqueue(reply(text, chunks=10, delay=0.1))
    await send(page, "Tell me about streams")
    seen: list[str] = []
    async with asyncio.timeout(15):
        while True:
            current, state = await last_reply(page)
            if current and (not seen or seen[-1] != current):
                seen.append(current)
            if state != "streaming":
                break
            await asyncio.sleep(0.015)
    assert state == "done"
    assert seen[-1] == text
    growing = seen[:-1]
    assert len(growing) >= 2, seen
    assert all(text.startswith(part) and part != text for part in growing)
    assert "1 turn(s) stored" in await status(page)
    assert fake.requests[0].prompt_text == "Tell me about streams"


async def test_stop_cancels_turn_and_closes_bedrock_connection(
    page: Page, fake: FakeBedrock
) -> None:
    """Stop mid-reply: the page shows the reply stopped, the emulator sees its response cut
    short promptly, the history keeps only the completed turns, and a new prompt works."""
    fake.enqueue(reply("A short first answer.", chunks=3, delay=0.02))
    await send(page, "first")
    await wait_state(page, "done")
    fake.enqueue(reply("word " * 60, chunks=60, delay=0.1))
    await send(page, "a long one, please")
    await page.wait_for_function(f"() => ({BUBBLE})()[0].length > 0", timeout=10_000)
    clicked = time.monotonic()
    await page.click("#stop")
    partial = await wait_state(page, "stopped")
    assert partial.startswith("word")
    first, cut = await fake.wait_for_disconnects(2)
    assert first.completed
    assert not cut.completed
    assert cut.frames_sent < 60
    assert cut.time - clicked < 2.0

    fake.enqueue(reply("Back again.", chunks=2, delay=0.02))
    await send(page, "still there?")
    assert await wait_state(page, "done") == "Back again."
    assert "2 turn(s) stored" in await status(page)
    # The third request's history has the first turn only: the stopped one left no trace.
    messages = fake.requests[2].body["messages"]
    assert [m["content"][0]["text"] for m in messages] == [
        "first",
        "A short first answer.",
        "still there?",
    ]
    await page.reload()
    await page.wait_for_selector("body[data-ready=true]")
    texts = await page.eval_on_selector_all("#log .msg", "els => els.map(e => e.textContent)")
    assert texts == ["first", "A short first answer.", "still there?", "Back again."]


async def test_model_text_is_shown_as_text_never_run(page: Page, fake: FakeBedrock) -> None:
    """A reply (and a prompt) containing <img onerror>, <script> and <b> appears as literal
    characters: no element is created and no script runs, when streamed and when the stored
    history is rendered again after a reload."""
    payload = (
        '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>not bold</b>'
    )
    fake.enqueue(reply(payload, chunks=7, delay=0.02))
    await send(page, "<img src=y onerror=\"window.__pwned='prompt'\">")
    for attempt in ("streamed", "reloaded"):
        if attempt == "streamed":
            assert await wait_state(page, "done") == payload
        else:
            await page.reload()
            await page.wait_for_selector("body[data-ready=true]")
            assert (await last_reply(page))[0] == payload
        await asyncio.sleep(0.2)  # give a broken page the chance to run the handler
        injected = await page.evaluate(
            "() => document.querySelectorAll('#log img, #log script, #log b').length"
        )
        assert injected == 0, attempt
        assert await page.evaluate("() => window.__pwned") is None, attempt


async def test_error_mid_stream_is_shown_and_not_stored(page: Page, fake: FakeBedrock) -> None:
    """An error after some text shows an error note next to the partial reply; the turn is
    not stored, and the next prompt works."""
    text = "This answer breaks half way through, sadly."
    fault = Fault.exception("modelStreamErrorException", after=3)
    fake.enqueue(reply(text, chunks=6, delay=0.03, fault=fault))
    await send(page, "try me")
    partial = await wait_state(page, "error")
    assert partial
    assert text.startswith(partial)
    assert partial != text
    note = await page.text_content("#log .note.error") or ""
    assert "ModelStreamError" in note
    assert "not stored" in note
    fake.enqueue(reply("Recovered.", chunks=2))
    await send(page, "again")
    assert await wait_state(page, "done") == "Recovered."
    assert "1 turn(s) stored" in await status(page)
