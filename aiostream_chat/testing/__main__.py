"""Run FakeBedrock standalone: python -m aiostream_chat.testing --port 8000."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

from ._server import FakeBedrock, is_loopback

_PROG = "python -m aiostream_chat.testing"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Serve a fake Amazon Bedrock Runtime (ConverseStream, Converse) on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port, 0 for any (default 8000)")
    parser.add_argument(
        "--delay", type=float, default=0.03, help="seconds between frames (default 0.03)"
    )
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"--host must be a loopback address, not {args.host!r}")
    return args


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows, where Ctrl-C raises KeyboardInterrupt instead.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with FakeBedrock(host=args.host, port=args.port, delay=args.delay) as fake:
        print(fake.endpoint_url, flush=True)
        print("FakeBedrock is serving; press Ctrl-C to stop.", file=sys.stderr, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted; a port that cannot be bound is one line and exit status 2."""
    args = _parse(argv)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args))
    except OSError as exc:  # binding failed: port in use, or not allowed
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        print(
            f"{_PROG}: error: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
