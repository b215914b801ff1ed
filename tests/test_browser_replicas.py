"""The SSE chat example under ``uvicorn --workers 4`` with a Redis store, in a real browser:
redis-server, the standalone emulator and uvicorn run as subprocesses on loopback, and headless
Chromium reloads the page until /history has come from at least two worker processes, each
time showing the same history.

Skips like tests/test_browser.py (no ``playwright`` package or no /usr/bin/chromium), and
where redis-server cannot be installed (tests/_redis.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests._browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from tests._redis import RedisServer, free_port, run_redis

require_browser("starlette", "uvicorn", "redis")

from playwright.async_api import Page, async_playwright  # noqa: E402

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1"}
WORKERS = 4
MAX_LOADS = 20


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    yield from run_redis()


async def stop(proc: asyncio.subprocess.Process) -> str:
    """SIGINT (uvicorn's and the emulator's normal way out), then SIGKILL to the whole process
    group (uvicorn's workers too) if that hangs; the rest of stderr."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = await proc.communicate()
    return (err or b"").decode(errors="replace")


@contextlib.asynccontextmanager
async def spawn(*args: str, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        err = await stop(proc)
    assert "Traceback" not in err, err


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def app(redis: RedisServer) -> AsyncIterator[str]:
    """uvicorn --workers 4 on the example's app factory, a Redis store, one shared emulator."""
    emulator_cmd = [sys.executable, "-m", "aiostream_chat.testing", "--port", "0"]
    async with spawn(*emulator_cmd, "--delay", "0.005", env=ENV) as emulator:
        assert emulator.stdout is not None
        emulator_url = (await asyncio.wait_for(emulator.stdout.readline(), 20)).decode().strip()
        assert emulator_url.startswith("http://127.0.0.1:"), emulator_url
        port = free_port()
        env = {**ENV, "SSE_CHAT_STORE": redis.url, "SSE_CHAT_EMULATOR_URL": emulator_url}
        async with spawn(
            sys.executable, "-m", "uvicorn", "examples.sse_chat.app:app_factory", "--factory",
            "--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--timeout-graceful-shutdown", "2",
            env=env,
        ) as server:  # fmt: skip
            url = f"http://127.0.0.1:{port}/"
            await wait_ready(server)
            yield url


async def wait_ready(server: asyncio.subprocess.Process) -> None:
    """Until every worker has said it serves (each prints one line on stderr)."""
    assert server.stderr is not None
    seen = ""
    async with asyncio.timeout(30):
        # Counted over all the text, not per line: the workers share one unbuffered pipe, so
        # one worker's newline may land after another worker's message.
        while len(re.findall(r"Worker \d+ serving", seen)) < WORKERS:
            chunk = (await server.stderr.read(4096)).decode()
            assert chunk, f"uvicorn exited early ({server.returncode}): {seen}"
            seen += chunk
            assert "Traceback" not in seen, seen


async def wait_done(page: Page) -> str:
    async with asyncio.timeout(15):
        while True:
            text, state = await page.evaluate(
                """() => {
                    const b = [...document.querySelectorAll('#log .msg.assistant')].pop();
                    return b ? [b.textContent, b.dataset.state] : ['', ''];
                }"""
            )
            if state == "done":
                return str(text)
            assert state in ("", "streaming"), (text, state)
            await asyncio.sleep(0.02)


async def load(page: Page, url: str) -> tuple[int, list[str]]:
    """Load the page; the worker pid that served its /history and the messages shown."""
    async with page.expect_response(lambda r: r.url.endswith("/history")) as info:
        await page.goto(url)
    history = await (await info.value).json()
    await page.wait_for_selector("body[data-ready=true]", timeout=10_000)
    shown = await page.eval_on_selector_all("#log .msg", "els => els.map(e => e.textContent)")
    assert [m["text"] for m in history["messages"]] == shown
    return int(history["worker"]), shown


async def test_reloads_through_different_workers_show_one_history(app: str) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = await browser.new_context()
            page = await context.new_page()
            await load(page, app)
            replies = []
            for prompt in ("Hello, replicas!", "Do you all remember me?"):
                await page.fill("#prompt", prompt)
                await page.click("#send")
                replies.append(await wait_done(page))
            assert all(replies), replies
            expected = ["Hello, replicas!", replies[0], "Do you all remember me?", replies[1]]
            cookies = await context.storage_state()
            await context.close()

            # Each load in a fresh browser context (same session cookie), so a fresh
            # connection: a reload on a kept-alive connection would stay on one worker.
            workers: set[int] = set()
            for _ in range(MAX_LOADS):
                context = await browser.new_context(storage_state=cookies)
                try:
                    worker, shown = await load(await context.new_page(), app)
                finally:
                    await context.close()
                assert shown == expected, worker
                workers.add(worker)
                if len(workers) >= 2:
                    break
            assert len(workers) >= 2, f"{MAX_LOADS} loads were all served by {workers}"
            print(f"history served by workers {sorted(workers)}")
        finally:
            await browser.close()
