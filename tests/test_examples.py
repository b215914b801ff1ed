"""Every example runs clean on the bundled emulator, as a user would run it: a subprocess with
no arguments (servers with ``--port 0``), exit status 0, the expected output, no traceback and
no unclosed-resource warning."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import os
import pty
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SERVERS = {
    "sse_chat": EXAMPLES / "sse_chat" / "app.py",
    "websocket_chat": EXAMPLES / "websocket_chat" / "app.py",
    "aiohttp_service": EXAMPLES / "aiohttp_service.py",
}
# Nothing may leave loopback: no credential search, and instance metadata switched off.
ENV = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1"}
# Unclosed sessions and sockets show up as ResourceWarnings, which Python hides by default.
PYTHON = [sys.executable, "-W", "default::ResourceWarning"]
DIRTY = ("Traceback", "ResourceWarning", "Unclosed", "Exception ignored", "Task was destroyed")

web_deps = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("starlette", "uvicorn", "websockets")),
    reason="the web examples need the 'examples' extra: pip install -e '.[examples]'",
)


def assert_clean(stderr: str) -> None:
    for mark in DIRTY:
        assert mark not in stderr, stderr


def run_example(name: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*PYTHON, str(EXAMPLES / name), *args],
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert_clean(proc.stderr)
    return proc


@contextlib.contextmanager
def serve(path: Path, *args: str, startup: float = 20) -> Iterator[str]:
    """Run a server example on a free port; yield its URL; stop it with Ctrl-C (SIGINT) and
    check it shut down cleanly with status 0."""
    proc = subprocess.Popen(
        [*PYTHON, str(path), "--port", "0", *args],
        env=ENV,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], startup)
        url = proc.stdout.readline().strip() if ready else ""
        if not url.startswith("http://127.0.0.1:"):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"{path.name} did not print its URL: {url!r}\n{err}")
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"{path.name} did not stop within 15 s of Ctrl-C")
    assert proc.returncode == 0, stderr
    assert_clean(stderr)


def sse_events(lines: Iterator[str]) -> list[tuple[str, dict[str, object]]]:
    """Parse a Server-Sent Events body into (event, data) pairs."""
    events: list[tuple[str, dict[str, object]]] = []
    name = "message"
    for line in lines:
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line.split(":", 1)[1])))
    return events


@pytest.mark.parametrize(
    "path",
    sorted(
        p.relative_to(EXAMPLES)
        for p in [*EXAMPLES.glob("[!_]*.py"), *SERVERS.values()]  # _emulator.py is a helper
    ),
    ids=str,
)
def test_example_docstring_has_run_with_line(path: Path) -> None:
    """Each runnable example opens with a docstring holding a "Run with:" line that names
    the script; servers also say that they serve until stopped."""
    source = (EXAMPLES / path).read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(source)) or ""
    assert "Run with:" in doc
    assert f"python examples/{path.as_posix()}" in doc
    if path.parent.name in SERVERS or path.stem in SERVERS:
        assert "serves until stopped" in doc
        assert "--port" in doc


def test_quickstart_streams_then_prints_message_and_usage() -> None:
    """quickstart.py: both turns stream, then the whole message, usage and history print."""
    out = run_example("quickstart.py").stdout
    assert "QuarkDB is an imaginary database" in out
    assert "Total message: Call it SongStore: the database you can hum." in out
    assert "Usage: 20 input + 11 output = 31 tokens" in out
    assert "History: 4 messages" in out


def test_fan_out_answers_every_prompt_without_a_bar_off_a_terminal() -> None:
    """fan_out.py: all eight prompts are answered in input order and the parent
    conversation's history stays empty; with stderr not a terminal, no bar is drawn."""
    proc = run_example("fan_out.py", "--concurrency", "8")
    out = proc.stdout
    for number in range(1, 9):
        assert f"\n{number}. What is" in f"\n{out}"
    assert out.index("1. What is a B-tree") < out.index("8. What is two-phase commit")
    assert "You asked about What is MVCC" in out
    assert "8 answered, 0 failed" in out
    assert "Parent history: 0 messages" in out
    assert "done, 0 failed" not in proc.stderr
    assert proc.stderr == ""


def test_timeouts_and_retries_keeps_history_clean() -> None:
    """timeouts_and_retries.py: the 429 is retried (a Retrying event shows), the stall trips
    the idle timeout with the partial text kept, the cancelled turn frees the conversation,
    and only the two completed turns reach the history."""
    out = run_example("timeouts_and_retries.py").stdout
    assert "Retrying: attempt 2" in out
    assert "ThrottlingError" in out
    assert "completed after 2 attempt(s)" in out
    assert "IdleTimeoutError" in out
    assert "partial_text kept on the error: 'Once upon a time'" in out
    assert "status: failed; history: 2 messages" in out
    assert "status: cancelled; busy: False; history: 2 messages" in out
    assert "the emulator saw 2 response(s) cut short by the client" in out
    assert out.rstrip().endswith("history: 4 messages")


def test_tool_use_runs_the_tool_and_sends_the_result_back() -> None:
    """tool_use.py: @tool functions run when the model asks, both calls of the round show as
    events, the final answer streams in the same turn; the history holds all four messages."""
    out = run_example("tool_use.py").stdout
    assert "[tool call] get_weather({'city': 'Paris'})" in out
    assert "[tool call] local_time({'city': 'Paris'})" in out
    assert "[tool result] get_weather -> ({'json': {'city': 'Paris', 'temperature': 18" in out
    assert "[tool result] local_time -> ({'text': 'It is 14:05 in Paris.'},)" in out
    assert "Final answer: It is 18 °C and sunny in Paris" in out
    assert "Model calls: 2" in out
    assert "History: 4 messages" in out


def test_structured_output_fills_in_a_typed_record() -> None:
    """structured_output.py: partial objects grow field by field, then the validated Order."""
    out = run_example("structured_output.py").stdout
    partials = [line for line in out.splitlines() if line.startswith("partial: ")]
    assert len(partials) >= 5
    assert any("'company'" not in line for line in partials)  # seen before it was complete
    assert "'email': 'maria@acme.example'}" in partials[-1]
    assert "Order: 12 x servo motor for Maria Gonzalez (maria@acme.example)" in out
    assert "Ship to: Calle Mayor 5, Madrid" in out


@web_deps
def test_sse_chat_serves_page_streams_turn_and_stores_it() -> None:
    """sse_chat: the page comes with a session cookie and a CSP, POST /chat streams delta
    events then done, and GET /history holds the finished turn."""
    import httpx

    with serve(SERVERS["sse_chat"]) as url, httpx.Client(base_url=url, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert 'id="stop"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "chat_session" in client.cookies
        assert client.get("/static/chat.js").status_code == 200
        with client.stream("POST", "/chat", json={"prompt": "What is SSE?"}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response.iter_lines())
        deltas = [data["text"] for name, data in events if name == "delta"]
        assert len(deltas) > 3
        assert events[-1][0] == "done"
        assert events[-1][1]["turns"] == 1
        stored = client.get("/history").json()
        assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
        assert stored["messages"][1]["text"] == "".join(deltas)
        assert client.post("/chat", json={"prompt": "  "}).status_code == 400


@web_deps
def test_sse_chat_shows_tool_calls_as_they_happen() -> None:
    """sse_chat: a question about the time makes the (emulated) model call local_time; the
    page gets tool and tool_result events before the answer, and one turn is stored."""
    import httpx

    with serve(SERVERS["sse_chat"]) as url, httpx.Client(base_url=url, timeout=10) as client:
        client.get("/")
        with client.stream("POST", "/chat", json={"prompt": "What time is it?"}) as response:
            events = sse_events(response.iter_lines())
        names = [name for name, _ in events]
        assert names.index("tool") < names.index("tool_result") < len(names) - 1
        tool = dict(events)["tool"]
        assert tool == {"name": "local_time", "input": {"city": "Paris"}}
        assert dict(events)["tool_result"] == {"name": "local_time", "status": "success"}
        text = "".join(data["text"] for name, data in events if name == "delta")
        assert text.startswith("Let me check the clock. Based on the tools: It is ")
        assert "UTC (the server's clock; Paris may differ)." in text
        assert events[-1] == ("done", events[-1][1]) and events[-1][1]["turns"] == 1
        stored = client.get("/history").json()
        assert stored["turns"] == 1 and stored["messages"][0]["text"] == "What time is it?"


@web_deps
def test_websocket_chat_shows_tool_calls_as_they_happen() -> None:
    """websocket_chat: asked the time, the (emulated) model calls local_time; tool and
    tool_result messages come before the answer, and one turn is stored."""
    import httpx
    from websockets.sync.client import connect

    with serve(SERVERS["websocket_chat"]) as url:
        cookie = httpx.get(url, timeout=10).cookies["chat_session"]
        ws_url = url.replace("http://", "ws://") + "ws"
        headers = {"Cookie": f"chat_session={cookie}"}
        with connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
            assert json.loads(ws.recv(10))["type"] == "history"
            ws.send(json.dumps({"type": "prompt", "text": "What time is it?"}))
            messages = []
            while (message := json.loads(ws.recv(10)))["type"] not in ("done", "error"):
                messages.append(message)
            kinds = [m["type"] for m in messages]
            assert kinds.index("tool") < kinds.index("tool_result") < len(kinds) - 1
            assert messages[kinds.index("tool")]["name"] == "local_time"
            assert messages[kinds.index("tool_result")]["status"] == "success"
            assert message["type"] == "done" and message["turns"] == 1
        with connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
            history = json.loads(ws.recv(10))
            assert history["turns"] == 1
            assert history["messages"][0] == {"role": "user", "text": "What time is it?"}


@web_deps
def test_websocket_chat_streams_turn_and_stop_leaves_history() -> None:
    """websocket_chat: a prompt streams deltas then done; "stop" mid-reply answers stopped
    with the stored turns unchanged; reconnecting shows the stored history."""
    import httpx
    from websockets.sync.client import connect

    with serve(SERVERS["websocket_chat"]) as url:
        cookie = httpx.get(url, timeout=10).cookies["chat_session"]
        ws_url = url.replace("http://", "ws://") + "ws"
        headers = {"Cookie": f"chat_session={cookie}"}
        with connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
            assert json.loads(ws.recv(10)) == {"type": "history", "messages": [], "turns": 0}
            ws.send(json.dumps({"type": "prompt", "text": "hello"}))
            kinds = []
            while (message := json.loads(ws.recv(10)))["type"] == "delta":
                kinds.append("delta")
            assert len(kinds) > 3
            assert message["type"] == "done"
            assert message["turns"] == 1
            ws.send(json.dumps({"type": "prompt", "text": "a second, long question"}))
            assert json.loads(ws.recv(10))["type"] == "delta"
            ws.send(json.dumps({"type": "stop"}))
            while (message := json.loads(ws.recv(10)))["type"] == "delta":
                pass
            assert message == {"type": "stopped", "turns": 1}
        with connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
            history = json.loads(ws.recv(10))
            assert history["turns"] == 1
            assert history["messages"][0]["text"] == "hello"


@web_deps
def test_aiohttp_service_streams_turns_per_session() -> None:
    """aiohttp_service: a session's turn streams as SSE and is stored; another session is
    separate; a bad prompt is a 400; the existing routes keep working."""
    import httpx

    with serve(SERVERS["aiohttp_service"]) as url, httpx.Client(base_url=url, timeout=10) as c:
        assert c.get("/health").json() == {"ok": True}
        with c.stream("POST", "/sessions/alice/messages", json={"prompt": "Hi!"}) as response:
            events = sse_events(response.iter_lines())
        assert events[0][0] == "delta"
        assert events[-1][0] == "done"
        alice = c.get("/sessions/alice").json()
        assert [m["role"] for m in alice["messages"]] == ["user", "assistant"]
        assert c.get("/sessions/bob").json()["messages"] == []
        assert c.post("/sessions/alice/messages", json={"prompt": ""}).status_code == 400


INSTALL_EXAMPLES = "pip install -e '.[examples]'"
# Run a web example with one package of the 'examples' extra made unimportable.
WITHOUT = """
import runpy, sys
sys.modules[sys.argv[1]] = None  # as if not installed
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize(
    ("app", "missing"),
    [
        ("sse_chat", "uvicorn"),
        ("sse_chat", "starlette"),
        ("websocket_chat", "uvicorn"),
        ("websocket_chat", "websockets"),
        ("websocket_chat", "starlette"),
    ],
)
def test_web_example_without_its_extra_names_the_install_command(app: str, missing: str) -> None:
    """Without a package of the 'examples' extra, a web example prints one line naming the
    missing package and the install command (the same command as its docstring and the
    README), exits 1, and shows no traceback."""
    path = SERVERS[app]
    proc = subprocess.run(
        [*PYTHON, "-c", WITHOUT, missing, str(path)],
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == f"examples/{app} needs the {missing!r} package: {INSTALL_EXAMPLES}\n"
    assert INSTALL_EXAMPLES in (ast.get_docstring(ast.parse(path.read_text())) or "")
    assert INSTALL_EXAMPLES in (ROOT / "README.md").read_text(encoding="utf-8")


def test_fan_out_bar_is_drawn_on_a_terminal_only() -> None:
    """fan_out.py with stderr on a terminal draws the bar and redraws it up to 8/8; with
    stderr redirected (the other tests) it draws nothing."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*PYTHON, str(EXAMPLES / "fan_out.py"), "--concurrency", "8"],
            env=ENV,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
        )
        os.close(slave)
        shown = bytearray()
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the example has exited and closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        out, _ = proc.communicate(timeout=30)
    finally:
        os.close(master)
    assert proc.returncode == 0
    terminal = shown.decode()
    assert terminal.count("\r[") > 2  # drawn in place and redrawn
    assert "] 8/8 done, 0 failed" in terminal
    assert_clean(terminal)
    assert "8 answered, 0 failed" in out


def test_multimodal_and_caching_shows_reasoning_and_cache_figures() -> None:
    """multimodal_and_caching.py: the token count, both turns' reasoning and answers, the
    cache written then read, and the cachePoint and thinking fields that were sent."""
    out = run_example("multimodal_and_caching.py").stdout
    assert "Input tokens before sending: " in out
    assert "[turn 1] reasoning: The image is tiny" in out
    assert "[turn 1] cache: 1200 tokens written, 0 read" in out
    assert "[turn 2] cache: 0 tokens written, 1200 read" in out
    assert "Sent system blocks: ['text', 'cachePoint']" in out
    assert "'thinking': {'type': 'enabled', 'budget_tokens': 1024}" in out


def test_multimodal_and_caching_reads_an_image_file(tmp_path: Path) -> None:
    """multimodal_and_caching.py --image PATH sends that file (read with from_path)."""
    from tests.test_blocks import PNG

    image = tmp_path / "picture.png"
    image.write_bytes(PNG)
    out = run_example("multimodal_and_caching.py", "--image", str(image)).stdout
    assert "[turn 2] answer: Red and blue" in out
