"""A chat web page whose replies stream from Bedrock over a WebSocket.

Run with:
    pip install -e '.[examples]'                    # the web extras, from a clone
    python examples/websocket_chat/app.py           # bundled emulator; open http://127.0.0.1:8000
    python examples/websocket_chat/app.py --model us.amazon.nova-micro-v1:0 --region us-east-1

It serves until stopped (Ctrl-C or SIGTERM); ``--port 0`` picks a free port, and the first line
printed is the URL to open. Without ``--model`` it runs on the bundled emulator (``--emulator``).

The same chat as ``examples/sse_chat`` (Starlette and uvicorn, for the reasons given there),
over one WebSocket per page:

- The page sends ``{"type": "prompt", "text": ...}`` and ``{"type": "stop"}``; the server sends
  ``history`` (on connect), ``delta``, ``retrying``, ``tool`` / ``tool_result`` (the model
  called the ``local_time`` tool, which the stream runs; on the emulator, ask "what time is
  it?"), then ``done``, ``error`` or ``stopped``.
- Each turn runs in its own task, so the socket keeps reading while a reply streams. Stop
  cancels that task: the cancellation closes the turn's stream, which closes the Bedrock
  connection at once, and the history stays as it was. Closing the page does the same.
- Completed turns are stored per browser session (a cookie names it), one
  ``AsyncConversation`` each, all on one Bedrock client opened in the app's lifespan; reloading
  the page shows them again. The page renders model text with ``textContent`` only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # examples/_emulator.py

from _chat_demo import demo_model, local_time
from _emulator import add_bedrock_arguments, bedrock, missing_extra

try:
    import uvicorn
    import websockets  # noqa: F401  (uvicorn serves WebSockets with it)
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, Response
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles
    from starlette.websockets import WebSocket, WebSocketDisconnect
except ImportError as missing:  # the 'examples' extra is not installed
    sys.exit(missing_extra("examples/websocket_chat", missing))

from aiostream_chat import (
    AsyncConversation,
    ChatError,
    ChatStream,
    ConversationBusyError,
    Retrying,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
)

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "chat_session"
CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'"
log = logging.getLogger("websocket_chat")


class Sessions:
    """One conversation per browser session, every one on the process's shared client."""

    def __init__(self, model_id: str, client: Any) -> None:
        self.model_id = model_id
        self.client = client
        self.conversations: dict[str, AsyncConversation] = {}

    def get(self, session_id: str) -> AsyncConversation:
        # A real service would bound this and expire idle sessions.
        conv = self.conversations.get(session_id)
        if conv is None:
            conv = AsyncConversation(self.model_id, client=self.client, tools=[local_time])
            self.conversations[session_id] = conv
        return conv

    async def aclose(self) -> None:
        for conv in self.conversations.values():
            await conv.aclose()  # closes a stream still open; never the shared client


def turns(conv: AsyncConversation) -> int:
    """Completed turns: each starts with a prompt (tool results are user messages too)."""
    return sum(1 for m in conv.history if m.role == "user" and m.text)


async def relay(websocket: WebSocket, conv: AsyncConversation, stream: ChatStream) -> None:
    """Run one turn, sending its text as it arrives. Cancelled by Stop or a closed socket."""
    try:
        async with stream:  # closes the Bedrock response on every way out, cancellation too
            async for event in stream.events():
                match event:
                    case TextDelta(text=text) if text:
                        await websocket.send_json({"type": "delta", "text": text})
                    case ToolCallStarted(name=name, input=tool_input):
                        await websocket.send_json(
                            {"type": "tool", "name": name, "input": tool_input}
                        )
                    case ToolCallFinished(name=name, result=result):
                        finished = {"type": "tool_result", "name": name, "status": result.status}
                        await websocket.send_json(finished)
                    case Retrying(attempt=attempt, delay=delay, error=error):
                        retrying = {"attempt": attempt, "delay": delay, "why": str(error)}
                        await websocket.send_json({"type": "retrying", **retrying})
            reply = await stream.get_reply()
    except ChatError as exc:
        log.warning("turn failed: %r", exc)
        message = f"{type(exc).__name__}: {exc}"
        await websocket.send_json({"type": "error", "message": message, "turns": turns(conv)})
        return
    except ConversationBusyError:
        message = "A reply is still streaming in this session."
        await websocket.send_json({"type": "error", "message": message})
        return
    usage = reply.usage.model_dump(include={"input_tokens", "output_tokens", "total_tokens"})
    done = {"stop_reason": reply.stop_reason, "usage": usage, "turns": turns(conv)}
    await websocket.send_json({"type": "done", **done})


async def stop(turn: asyncio.Task[None] | None) -> bool:
    """Cancel a turn's task and wait until its stream is closed; True if it was cut short."""
    if turn is None:
        return False
    turn.cancel()
    await asyncio.gather(turn, return_exceptions=True)
    return turn.cancelled()


def same_origin(websocket: WebSocket) -> bool:
    """Browsers send Origin on WebSocket handshakes; refuse other sites' pages."""
    origin = websocket.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == websocket.headers.get("host")


async def chat_socket(websocket: WebSocket) -> None:
    sid = websocket.cookies.get(COOKIE)
    if sid is None or not same_origin(websocket):
        await websocket.close(code=1008)  # policy violation
        return
    await websocket.accept()
    conv = websocket.app.state.sessions.get(sid)
    stored = [{"role": m.role, "text": m.text} for m in conv.history if m.text]
    await websocket.send_json({"type": "history", "messages": stored, "turns": turns(conv)})
    turn: asyncio.Task[None] | None = None
    try:
        while True:
            try:
                message = json.loads(await websocket.receive_text())
                kind = message["type"]
            except (ValueError, TypeError, KeyError):
                await websocket.send_json({"type": "error", "message": "bad message"})
                continue
            if kind == "prompt":
                if turn is not None and not turn.done():
                    busy = "A reply is still streaming: stop it first."
                    await websocket.send_json({"type": "error", "message": busy})
                    continue
                await stop(turn)  # collects the finished task's outcome
                try:
                    stream = conv.stream(message.get("text"))  # checks the prompt, no I/O yet
                except (ValueError, TypeError) as exc:
                    await websocket.send_json({"type": "error", "message": f"bad prompt: {exc}"})
                    continue
                turn = asyncio.create_task(relay(websocket, conv, stream))
            elif kind == "stop" and turn is not None and await stop(turn):
                log.info("stopped: turn cancelled; %d turn(s) stored", turns(conv))
                await websocket.send_json({"type": "stopped", "turns": turns(conv)})
    except WebSocketDisconnect:
        pass
    finally:
        if await stop(turn):
            log.info("client went away: turn cancelled; %d turn(s) stored", turns(conv))


async def index(request: Request) -> Response:
    response = FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP})
    if request.cookies.get(COOKIE) is None:
        response.set_cookie(COOKIE, secrets.token_urlsafe(16), httponly=True, samesite="strict")
    return response


def create_app(args: argparse.Namespace, url: str) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One Bedrock client for the whole process, opened and closed with the app.
        async with bedrock(args) as target, target.client() as client:
            if target.fake is not None:
                target.fake.responder = demo_model(target.fake)
            app.state.sessions = Sessions(target.model_id, client)
            where = "the bundled emulator" if target.emulated else f"Bedrock ({target.model_id})"
            print(url, flush=True)
            print(f"Serving on {url} with {where}; press Ctrl-C to stop.", file=sys.stderr)
            try:
                yield
            finally:
                await app.state.sessions.aclose()

    routes = [
        Route("/", index),
        WebSocketRoute("/ws", chat_socket),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bedrock_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)

    sock = socket.create_server((args.host, args.port))  # bound now, so --port 0 has a number
    host, port = sock.getsockname()[:2]
    app = create_app(args, f"http://{host}:{port}/")
    # websockets' sans-I/O protocol: the maintained one (the legacy one warns on import).
    config = uvicorn.Config(
        app, log_level="warning", ws="websockets-sansio", timeout_graceful_shutdown=2
    )
    # uvicorn shuts down gracefully on Ctrl-C, then re-raises it: that is the normal way out.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
