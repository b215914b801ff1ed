"""Time to first token over TLS: what the client adds after the server got the request, on a warm
connection and after a chat pause, SDK vs the raw aioboto3 loop.

Run with: python benchmarks/ttft.py [--uvloop] [--turns 100] [--pause 30] [--pauses 2]
The emulator serves HTTPS (a self-signed CA, trusted through AWS_CA_BUNDLE). Each turn has a
unique prompt; the emulator's log gives the time (time.monotonic(), one clock for both
processes) at which it received the request, which is when it starts answering (5 deltas, no
delay). For each turn: "first token" is request start -> first text delta in the caller's hands,
"after server" is server receipt -> first text delta (the client's read, decode and hand-over,
plus the wire). The SDK is opened the README's way (shared client, 55 s keep-alive); the raw
side is an aioboto3 client with aiobotocore's defaults (12 s keep-alive). `--pause` seconds of
silence precede each of the `--pauses` paused turns (a new TCP + TLS handshake for the raw side).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

from _common import MODEL, parser, raw_config, run, server, session

from aiostream_chat import AsyncConversation


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _line(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{name}: median {statistics.median(ms):.2f} ms, p99 {_p(ms, 0.99):.2f} ms (n={len(ms)})"


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--turns", type=int, default=100)
    p.add_argument("--pause", type=float, default=30.0)
    p.add_argument("--pauses", type=int, default=2)
    args = p.parse_args()
    tls_dir = tempfile.mkdtemp(prefix="aiostream-bench-")
    os.environ.update(
        AWS_ACCESS_KEY_ID="AKIDBENCH",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_CA_BUNDLE=str(Path(tls_dir) / "ca.pem"),
    )
    counter = iter(range(10**9))
    starts: dict[str, tuple[str, str, float, float]] = {}  # prompt -> (side, kind, t0, t_first)

    async def bench(url: str) -> None:
        async with (
            AsyncConversation(MODEL, region_name="us-east-1", endpoint_url=url) as conv,
            session().client("bedrock-runtime", endpoint_url=url, config=raw_config()) as client,
        ):

            async def sdk(prompt: str) -> None:
                async for _text in conv.fork().stream(prompt):
                    return

            async def raw(prompt: str) -> None:
                resp = await client.converse_stream(
                    modelId=MODEL, messages=[{"role": "user", "content": [{"text": prompt}]}]
                )
                async for event in resp["stream"]:
                    if "contentBlockDelta" in event:
                        break
                resp["stream"].close()

            sides: dict[str, Callable[[str], Awaitable[None]]] = {"sdk": sdk, "raw": raw}

            async def one(side: str, kind: str) -> None:
                prompt = f"bench n=5 delay=0 id={next(counter)}"
                t0 = time.monotonic()
                await sides[side](prompt)
                starts[prompt] = (side, kind, t0, time.monotonic())

            for _ in range(5):  # warm up both clients and connections
                await one("sdk", "warmup")
                await one("raw", "warmup")
            for _ in range(args.turns):
                await one("sdk", "warm")
                await one("raw", "warm")
            for _ in range(args.pauses):
                await asyncio.sleep(args.pause)
                await one("sdk", "paused")
                await one("raw", "paused")

    with server(tls=tls_dir) as url:
        run(lambda: bench(url), args.uvloop)
        with urllib.request.urlopen(f"{url.control}/requests") as response:
            received = {r["prompt"]: r["time"] for r in json.load(response)}
    for kind in ("warm", "paused"):
        for side in ("sdk", "raw"):
            rows = [v for v in starts.items() if v[1][0] == side and v[1][1] == kind]
            first = [t1 - t0 for _p_, (_s, _k, t0, t1) in rows]
            after = [t1 - received[prompt] for prompt, (_s, _k, _t0, t1) in rows]
            print(_line(f"{kind} {side} first token", first))
            print(_line(f"{kind} {side} after server", after))


if __name__ == "__main__":
    main()
