"""FakeBedrock in its own process for the benchmarks: prints its URL, serves until killed.

The reply is chosen by the prompt, so one server process serves every benchmark:
``bench n=20000 delay=0.05`` answers ``n`` text deltas ``delay`` seconds apart; any other
prompt gets the emulator's default reply. The first line printed is the emulator's URL, then
the URL of a small control app whose ``GET /disconnects`` lists every recorded disconnect with
its prompt and ``time.monotonic()`` (one clock for all processes on Linux), and
``GET /requests`` every request received, with its prompt and time.
``--tls DIR`` serves HTTPS with a fresh self-signed certificate whose CA it writes to DIR/ca.pem.
Run with: python benchmarks/_fake_server.py [--tls DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web

from aiostream_chat.testing import FakeBedrock, reply
from aiostream_chat.testing._script import Script, default_reply
from aiostream_chat.testing._server import ReceivedRequest


@functools.lru_cache(maxsize=64)
def _script(n: int, delay: float) -> Script:
    pieces = [f" word{i % 100}" for i in range(n)]
    return reply("".join(pieces), chunks=pieces, delay=delay)


def _responder(request: ReceivedRequest) -> Script:
    words = request.prompt_text.split()
    if not words or words[0] != "bench":
        return default_reply(request.prompt_text)
    options = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    return _script(int(options.get("n", "5")), float(options.get("delay", "0")))


def _tls_context(directory: str) -> ssl.SSLContext:
    """A server context for 127.0.0.1 from a fresh self-signed CA, written to DIR/ca.pem."""
    import trustme

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.cert_pem.write_to_path(str(Path(directory) / "ca.pem"))
    return context


async def _serve(port: int, use_uvloop: bool, tls: str | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    context = _tls_context(tls) if tls else None
    async with FakeBedrock(port=port, ssl_context=context) as fake:
        fake.responder = _responder

        async def disconnects(_request: web.Request) -> web.Response:
            prompts = {r.index: r.prompt_text for r in fake.requests}
            return web.json_response(
                [
                    {
                        "prompt": prompts.get(d.request_index),
                        "time": d.time,
                        "completed": d.completed,
                    }
                    for d in fake.disconnects
                ]
            )

        async def requests(_request: web.Request) -> web.Response:
            return web.json_response(
                [{"prompt": r.prompt_text, "time": r.time} for r in fake.requests]
            )

        app = web.Application()
        app.router.add_get("/disconnects", disconnects)
        app.router.add_get("/requests", requests)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        control = f"http://127.0.0.1:{runner.addresses[0][1]}"
        loop_name = "uvloop" if use_uvloop else "asyncio"
        print(fake.endpoint_url, control, loop_name, flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--uvloop", action="store_true", help="serve on uvloop (if installed)")
    parser.add_argument("--tls", metavar="DIR", help="serve HTTPS; the CA goes to DIR/ca.pem")
    args = parser.parse_args()
    runner = asyncio.run
    if args.uvloop:
        import uvloop

        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(_serve(args.port, args.uvloop, args.tls))
    sys.exit(0)


if __name__ == "__main__":
    main()
