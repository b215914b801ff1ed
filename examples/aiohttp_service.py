"""Adding streamed chat to an existing aiohttp service: its loop, its lifespan, its routes.

Run with:
    python examples/aiohttp_service.py              # bundled emulator, on http://127.0.0.1:8080
    python examples/aiohttp_service.py --model us.amazon.nova-micro-v1:0 --region us-east-1

    curl -N -X POST localhost:8080/sessions/alice/messages -d '{"prompt": "Hi!"}'
    curl localhost:8080/sessions/alice

It serves until stopped (Ctrl-C or SIGTERM); ``--port 0`` picks a free port, and the first line
printed is the URL.

The pattern, for any asyncio service:

- One bedrock-runtime client for the whole process, opened and closed by the service's own
  lifespan (here a ``cleanup_ctx``, next to the database pool such a service already has).
  Conversations get it as ``client=`` and never close it; they all share its connection pool.
- One ``AsyncConversation`` per session, created on first use; its history holds only
  completed turns, so it can be stored (``conv.snapshot()``) whenever a turn ends.
- A turn is streamed to the caller as Server-Sent Events. The app runs with
  ``handler_cancellation=True`` so that aiohttp cancels the handler when the caller hangs
  up; the cancellation closes the stream and the Bedrock connection with it, and the
  session's history is left as it was. (``web.run_app(app, handler_cancellation=True)``
  works the same; this script uses ``AppRunner`` to print the port it got.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

from _emulator import add_bedrock_arguments, bedrock
from aiohttp import web

from aiostream_chat import AsyncConversation, ChatError


class Sessions:
    """One conversation per session, every one on the process's shared client."""

    def __init__(self, model_id: str, client: Any) -> None:
        self.model_id = model_id
        self.client = client
        self.conversations: dict[str, AsyncConversation] = {}

    def get(self, session_id: str) -> AsyncConversation:
        conv = self.conversations.get(session_id)
        if conv is None:
            conv = AsyncConversation(self.model_id, client=self.client)
            self.conversations[session_id] = conv
        return conv

    async def aclose(self) -> None:
        for conv in self.conversations.values():
            await conv.aclose()  # closes a stream still open; never the shared client


SESSIONS = web.AppKey("sessions", Sessions)


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def post_message(request: web.Request) -> web.StreamResponse:
    """Relay one turn of the session as Server-Sent Events."""
    conv = request.app[SESSIONS].get(request.match_info["session"])
    try:
        body = await request.json()
        stream = conv.stream(body["prompt"])  # checks the prompt now, before any network I/O
    except (ValueError, TypeError, KeyError) as exc:
        raise web.HTTPBadRequest(text=f"bad request: {exc}\n") from None
    if conv.busy:
        raise web.HTTPConflict(text="a reply is still streaming in this session\n")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    try:
        async with stream:  # closed on every way out: also when aiohttp cancels us
            async for text in stream:
                await response.write(sse("delta", {"text": text}))
            reply = await stream.get_reply()
    except ChatError as exc:
        error = {"message": f"{type(exc).__name__}: {exc}", "partial": exc.partial_text}
        await response.write(sse("error", error))
    else:
        usage = reply.usage.model_dump(include={"input_tokens", "output_tokens", "total_tokens"})
        await response.write(sse("done", {"stop_reason": reply.stop_reason, "usage": usage}))
    await response.write_eof()
    return response


async def get_session(request: web.Request) -> web.Response:
    """The completed turns of a session."""
    conv = request.app[SESSIONS].get(request.match_info["session"])
    messages = [{"role": m.role, "text": m.text} for m in conv.history]
    return web.json_response({"messages": messages, "busy": conv.busy})


async def health(request: web.Request) -> web.Response:
    """Stands for the routes the service already had."""
    return web.json_response({"ok": True})


def create_app(args: argparse.Namespace) -> web.Application:
    app = web.Application()

    async def bedrock_client(app: web.Application) -> AsyncIterator[None]:
        # Startup: open the shared client (and the emulator, when there is no --model).
        async with bedrock(args) as target, target.client() as client:
            app[SESSIONS] = Sessions(target.model_id, client)
            yield
            # Shutdown: close the conversations, then (leaving the block) the client.
            await app[SESSIONS].aclose()

    app.cleanup_ctx.append(bedrock_client)
    app.add_routes(
        [
            web.get("/health", health),
            web.post("/sessions/{session}/messages", post_message),
            web.get("/sessions/{session}", get_session),
        ]
    )
    return app


async def serve(args: argparse.Namespace) -> None:
    runner = web.AppRunner(create_app(args), handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        print(f"http://{host}:{port}/", flush=True)
        print("Serving; press Ctrl-C to stop.", file=sys.stderr)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bedrock_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    asyncio.run(serve(parser.parse_args()))
