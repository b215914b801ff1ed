"""A chat web page whose replies stream from Bedrock over Server-Sent Events.

Run with:
    pip install -e '.[examples]'                    # the web extras, from a clone
    python examples/sse_chat/app.py                 # bundled emulator; open http://127.0.0.1:8000
    python examples/sse_chat/app.py --model us.amazon.nova-micro-v1:0 --region us-east-1
    python examples/sse_chat/app.py --tracing       # print each turn's spans on stderr
    python examples/sse_chat/app.py --store sqlite:chats.db   # history in a store (or redis://...)

Four worker processes sharing one Redis store and one standalone emulator (the same command
is in README.md, "Running many replicas")::

    python -m aiostream_chat.testing --port 8001 &                 # the emulator, shared
    SSE_CHAT_STORE=redis://127.0.0.1:6379/0 SSE_CHAT_EMULATOR_URL=http://127.0.0.1:8001 \
        python -m uvicorn examples.sse_chat.app:app_factory --factory --workers 4 --port 8000

``app_factory()`` reads its settings from the environment: ``SSE_CHAT_STORE`` (as
``--store``), ``SSE_CHAT_EMULATOR_URL`` (as ``--emulator-url``), ``SSE_CHAT_MODEL`` and
``SSE_CHAT_REGION`` (as ``--model`` and ``--region``, for real Bedrock); with none of them
set, each worker starts an emulator of its own and keeps history in its own memory.

It serves until stopped (Ctrl-C or SIGTERM); ``--port 0`` picks a free port, and the first line
printed is the URL to open. Without ``--model`` it runs on the bundled emulator (``--emulator``).

What it shows:

- ``POST /chat`` relays one turn as ``text/event-stream``: ``delta`` events as text arrives,
  ``retrying`` when a retry happens, ``tool`` / ``tool_result`` when the model calls the
  ``local_time`` tool (the stream runs it; on the emulator, ask "what time is it?"), then
  ``done`` or ``error`` (an error mid-stream reaches
  the page with the partial text kept on screen and the reply not stored).
- Stop: the page aborts its fetch, the browser drops the connection, Starlette sees the
  ``http.disconnect`` and cancels the response; the cancellation closes the turn's stream,
  which closes the Bedrock connection at once, and the history stays as it was.
- The finished message is stored per browser session (a cookie names the session): each
  session has its own ``AsyncConversation``, all of them sharing one Bedrock client opened in
  the app's lifespan. ``GET /history`` returns what is stored, and ``"worker"``: the pid of
  the process that answered.
- ``--store sqlite:PATH`` or ``--store redis://...``: each request opens the session's
  conversation with ``AsyncConversation.open(store, session_id, ...)`` instead of keeping it in
  memory, so the history is loaded from the store, re-read when a turn starts and committed
  atomically when it completes; any worker process (or replica) can serve any request, and a
  turn already streaming for the session in another process gives an ``error`` event.
- The page puts model text on screen with ``textContent`` only, never as HTML, and a
  Content-Security-Policy forbids inline scripts as a second line of defence.

Why Starlette and uvicorn rather than FastAPI: this app has four routes, one streaming
response and no request models, so FastAPI's validation and OpenAPI layer would add a
dependency and nothing this code uses (FastAPI is built on Starlette, so the same code works
there). Starlette's ``StreamingResponse`` already watches for the client's disconnect and
cancels the body iterator, which is exactly the hook Stop needs, and uvicorn is the reference
ASGI server. The page posts with ``fetch()`` and parses the event stream itself instead of using
``EventSource``: it can POST a JSON body, and it never reconnects on its own (an ``EventSource``
would re-send the prompt after every finished reply or dropped connection).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # examples/_emulator.py

from _chat_demo import demo_model, local_time
from _emulator import add_bedrock_arguments, bedrock, missing_extra

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
except ImportError as missing:  # the 'examples' extra is not installed
    sys.exit(missing_extra("examples/sse_chat", missing))

from aiostream_chat import (
    AsyncConversation,
    ChatError,
    ChatStream,
    ConversationBusyError,
    ConversationStore,
    RedisStore,
    Retrying,
    SQLiteStore,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
)

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "chat_session"
CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'"
log = logging.getLogger("sse_chat")


STORES = ("sqlite:", "redis://", "rediss://", "unix://")


def check_store(spec: str) -> str:
    """``--store``: ``sqlite:PATH`` or a ``redis://`` / ``rediss://`` / ``unix://`` URL."""
    if not spec.startswith(STORES):
        raise ValueError(f"the store must be sqlite:PATH or redis://HOST:PORT/DB, not {spec!r}")
    return spec


def open_store(spec: str) -> ConversationStore:
    if check_store(spec).startswith("sqlite:"):
        return SQLiteStore(spec.removeprefix("sqlite:"))
    return RedisStore(spec)


class Sessions:
    """One conversation per browser session, every one on the process's shared client.

    Without a store they live in this process's memory; with one, each request opens the
    session's conversation from the store (and closes it when done), so nothing is kept here.
    """

    def __init__(self, model_id: str, client: Any, store: ConversationStore | None) -> None:
        self.model_id = model_id
        self.client = client
        self.store = store
        self.conversations: dict[str, AsyncConversation] = {}

    async def get(self, session_id: str) -> AsyncConversation:
        if self.store is not None:  # history loaded from the store now, re-read at each turn
            return await AsyncConversation.open(
                self.store, session_id, self.model_id, client=self.client, tools=[local_time]
            )
        # A real service would bound this and expire idle sessions (or keep
        # conv.snapshot() in its session store and resume with from_state()).
        conv = self.conversations.get(session_id)
        if conv is None:
            conv = AsyncConversation(self.model_id, client=self.client, tools=[local_time])
            self.conversations[session_id] = conv
        return conv

    async def done(self, conv: AsyncConversation) -> None:
        """A request is finished with ``conv``: a store-bound one is closed (lease released)."""
        if self.store is not None:
            await conv.aclose()  # never the shared client

    async def aclose(self) -> None:
        for conv in self.conversations.values():
            await conv.aclose()  # closes a stream still open; never the shared client
        if self.store is not None:
            await self.store.aclose()


def sse(event: str, data: dict[str, Any]) -> str:
    """One Server-Sent Events message; JSON keeps newlines in the text intact."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def turns(conv: AsyncConversation) -> int:
    """Completed turns: each starts with a prompt (tool results are user messages too)."""
    return sum(1 for m in conv.history if m.role == "user" and m.text)


async def relay(
    sessions: Sessions, conv: AsyncConversation, stream: ChatStream
) -> AsyncIterator[str]:
    """The event stream for one turn. Cancelled by Starlette when the browser goes away."""
    try:
        async for message in turn(conv, stream):
            yield message
    finally:
        await sessions.done(conv)


async def turn(conv: AsyncConversation, stream: ChatStream) -> AsyncIterator[str]:
    try:
        async with stream:  # closes the Bedrock response on every way out, cancellation too
            async for event in stream.events():
                match event:
                    case TextDelta(text=text) if text:
                        yield sse("delta", {"text": text})
                    case ToolCallStarted(name=name, input=tool_input):
                        yield sse("tool", {"name": name, "input": tool_input})
                    case ToolCallFinished(name=name, result=result):
                        yield sse("tool_result", {"name": name, "status": result.status})
                    case Retrying(attempt=attempt, delay=delay, error=error):
                        yield sse(
                            "retrying", {"attempt": attempt, "delay": delay, "why": str(error)}
                        )
            reply = await stream.get_reply()
    except ChatError as exc:
        log.warning("turn failed: %r", exc)
        message = f"{type(exc).__name__}: {exc}"
        yield sse("error", {"message": message, "partial": exc.partial_text, "turns": turns(conv)})
        return
    except ConversationBusyError:
        yield sse("error", {"message": "A reply is still streaming in this session."})
        return
    except asyncio.CancelledError:
        log.info("client went away: turn cancelled; %d turn(s) stored", turns(conv))
        raise
    usage = reply.usage.model_dump(include={"input_tokens", "output_tokens", "total_tokens"})
    yield sse("done", {"stop_reason": reply.stop_reason, "usage": usage, "turns": turns(conv)})


def session_id(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


async def index(request: Request) -> Response:
    response = FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP})
    if session_id(request) is None:
        response.set_cookie(COOKIE, secrets.token_urlsafe(16), httponly=True, samesite="strict")
    return response


async def chat(request: Request) -> Response:
    sid = session_id(request)
    if sid is None:
        return JSONResponse({"error": "no session: load the page first"}, status_code=400)
    sessions: Sessions = request.app.state.sessions
    try:
        body = await request.json()
        prompt = body["prompt"]
    except (ValueError, TypeError, KeyError) as exc:
        return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
    conv = await sessions.get(sid)
    try:
        stream = conv.stream(prompt)  # checks the prompt now, before any network I/O
    except (ValueError, TypeError) as exc:
        await sessions.done(conv)
        return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    body_iterator = relay(sessions, conv, stream)
    return StreamingResponse(body_iterator, media_type="text/event-stream", headers=headers)


async def history(request: Request) -> Response:
    sid = session_id(request)
    sessions: Sessions = request.app.state.sessions
    stored: tuple[Any, ...] = ()
    completed = 0
    if sid is not None:
        conv = await sessions.get(sid)  # with a store: read from it now
        stored, completed = conv.history, turns(conv)
        await sessions.done(conv)
    shown = [m for m in stored if m.text]  # no tool-call plumbing
    messages = [{"role": m.role, "text": m.text} for m in shown]
    return JSONResponse({"messages": messages, "turns": completed, "worker": os.getpid()})


def create_app(args: argparse.Namespace, url: str | None) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One Bedrock client for the whole process, opened and closed with the app.
        async with bedrock(args) as target, target.client() as client:
            if target.fake is not None:
                target.fake.responder = demo_model(target.fake)
            store = open_store(args.store) if args.store else None
            app.state.sessions = Sessions(target.model_id, client, store)
            where = "the bundled emulator" if target.emulated else f"Bedrock ({target.model_id})"
            if store is not None:
                where += f", history in {args.store}"
            if url is not None:
                print(url, flush=True)
                print(f"Serving on {url} with {where}; press Ctrl-C to stop.", file=sys.stderr)
            else:  # under uvicorn --factory: uvicorn prints where it listens
                print(f"Worker {os.getpid()} serving with {where}.", file=sys.stderr)
            try:
                yield
            finally:
                await app.state.sessions.aclose()

    routes = [
        Route("/", index),
        Route("/chat", chat, methods=["POST"]),
        Route("/history", history),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def app_factory() -> Starlette:
    """The app for ``uvicorn examples.sse_chat.app:app_factory --factory``, configured by
    ``SSE_CHAT_STORE``, ``SSE_CHAT_EMULATOR_URL``, ``SSE_CHAT_MODEL`` and ``SSE_CHAT_REGION``."""
    env = os.environ.get
    args = argparse.Namespace(
        model=env("SSE_CHAT_MODEL") or None,
        region=env("SSE_CHAT_REGION") or None,
        emulator=False,
        emulator_url=env("SSE_CHAT_EMULATOR_URL") or None,
        store=env("SSE_CHAT_STORE") or None,
    )
    if args.store:
        check_store(args.store)  # a bad value fails at startup, not at the first request
    return create_app(args, None)


def start_tracing() -> None:
    """``--tracing``: each turn's OpenTelemetry spans, one line each, on stderr.

    Needs ``pip install 'aiostream-chat[otel]' opentelemetry-sdk``; a real service would
    export with OTLP and instrument its ASGI app too, whose request span then parents the
    chat spans.
    """
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    import aiostream_chat

    def line(span: ReadableSpan) -> str:
        attrs = span.attributes or {}
        usage = (
            f"{attrs.get('gen_ai.usage.input_tokens')}+{attrs.get('gen_ai.usage.output_tokens')}"
        )
        return (
            f"span {span.name} [{span.kind.name}] tokens={usage} error={attrs.get('error.type')}\n"
        )

    provider = TracerProvider()
    exporter = ConsoleSpanExporter(out=sys.stderr, formatter=line)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    aiostream_chat.instrument(tracer_provider=provider)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bedrock_arguments(parser)
    parser.add_argument("--tracing", action="store_true", help="print OpenTelemetry spans")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument(
        "--store",
        metavar="sqlite:PATH|redis://...",
        help="keep each session's history in a store (default: this process's memory)",
    )
    args = parser.parse_args()
    if args.store:
        try:
            check_store(args.store)
        except ValueError as exc:
            parser.error(str(exc))
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)
    if args.tracing:
        start_tracing()

    sock = socket.create_server((args.host, args.port))  # bound now, so --port 0 has a number
    host, port = sock.getsockname()[:2]
    app = create_app(args, f"http://{host}:{port}/")
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    # uvicorn shuts down gracefully on Ctrl-C, then re-raises it: that is the normal way out.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
