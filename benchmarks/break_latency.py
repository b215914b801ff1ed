"""Time from `break` to the server seeing the disconnect, over 50 trials.

Run with: python benchmarks/break_latency.py [--uvloop] [--rounds 50]
Each trial streams a 40-delta reply (50 ms apart), leaves the `async for` with `break` after
the third chunk and records time.monotonic(); the emulator (a separate process) records when
its handler saw the client go, on the same clock. The SDK is measured for `break`, for
cancelling the consuming task, and for leaving `async with`; the raw aioboto3 loop for a
plain `break` (a few trials: nothing closes its stream, so the server streams on until the
reply ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
from _common import MODEL, parser, raw_config, run, server, session

from aiostream_chat import AsyncConversation


def main() -> None:
    args = parser(__doc__).parse_args()
    trials = args.rounds or 50

    async def bench() -> None:
        with server() as url:
            async with (
                aiohttp.ClientSession() as http,
                session().client(
                    "bedrock-runtime", endpoint_url=url, config=raw_config()
                ) as client,
                AsyncConversation(MODEL, session=session(), endpoint_url=url) as conv,
            ):

                async def seen(prompt: str, within: float) -> float | None:
                    """When the server recorded the disconnect of `prompt`'s request."""
                    end = time.monotonic() + within
                    while time.monotonic() < end:
                        async with http.get(f"{url.control}/disconnects") as resp:
                            for d in await resp.json():
                                if d["prompt"] == prompt:
                                    return float(d["time"])
                        await asyncio.sleep(0.01)
                    return None

                async def sdk_break(prompt: str) -> float:
                    n = 0
                    async for _text in conv.stream(prompt):
                        n += 1
                        if n == 3:
                            break
                    return time.monotonic()

                async def sdk_cancel(prompt: str) -> float:
                    third = asyncio.Event()

                    async def consume() -> None:
                        n = 0
                        async for _text in conv.stream(prompt):
                            n += 1
                            if n == 3:
                                third.set()

                    task = asyncio.create_task(consume())
                    await third.wait()
                    task.cancel()
                    t = time.monotonic()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    return t

                async def sdk_with(prompt: str) -> float:
                    async with conv.stream(prompt) as stream:
                        n = 0
                        async for _text in stream:
                            n += 1
                            if n == 3:
                                t = time.monotonic()
                                break
                    return t

                async def raw_break(prompt: str) -> float:
                    resp = await client.converse_stream(
                        modelId=MODEL, messages=[{"role": "user", "content": [{"text": prompt}]}]
                    )
                    n = 0
                    async for event in resp["stream"]:
                        if "contentBlockDelta" in event:
                            n += 1
                            if n == 3:
                                break
                    t = time.monotonic()
                    # Not part of the measurement: without this the connection stays checked
                    # out (and warns at exit) after the server finishes the reply.
                    asyncio.get_running_loop().call_later(3.0, resp["stream"].close)
                    return t

                cases: list[tuple[str, Callable[[str], Awaitable[float]], int]] = [
                    ("sdk break", sdk_break, trials),
                    ("sdk task.cancel()", sdk_cancel, trials),
                    ("sdk async with + break", sdk_with, trials),
                    ("raw break", raw_break, 3),
                ]
                for name, fn, count in cases:
                    lat: list[float] = []
                    for i in range(count):
                        prompt = f"bench n=40 delay=0.05 trial={name.replace(' ', '_')}-{i}"
                        t_break = await fn(prompt)
                        t_seen = await seen(prompt, within=5.0)
                        assert t_seen is not None, f"{name}: no disconnect within 5 s"
                        lat.append((t_seen - t_break) * 1000)
                    print(
                        f"{name}: median {statistics.median(lat):.2f} ms, max {max(lat):.2f} ms,"
                        f" min {min(lat):.2f} ms (n={count})"
                    )
                await asyncio.sleep(3.2)  # let the raw streams' deferred close run

    run(bench, args.uvloop)


if __name__ == "__main__":
    main()
