"""Wall time of 500 concurrent ~1 s streams: fan_out(concurrency=500) vs asyncio.gather over
the raw aioboto3 loop on a client with a pool of 500.

Run with: python benchmarks/fan_out_wall.py [--uvloop] [--rounds 5] [--streams 500]
Each stream is 20 text deltas 50 ms apart. Targets: wall ratio SDK / raw <= 0.9, and the
fan-out's wall <= 1.5 x one stream's wall. The same run measures the bare aiohttp floor (a
client that signs nothing and parses nothing, see floor.py) against one stream, for scale.
"""

from __future__ import annotations

import asyncio
import statistics

import aiohttp
from _common import (
    MODEL,
    bare_turn,
    parser,
    raw_config,
    raw_turn,
    report,
    run,
    server,
    session,
    timed,
)

from aiostream_chat import AsyncConversation, Reply

PROMPT = "bench n=20 delay=0.05"


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--streams", type=int, default=500)
    args = p.parse_args()
    rounds, streams = args.rounds or 5, args.streams

    async def bench() -> None:
        sdk_wall: list[float] = []
        raw_wall: list[float] = []
        sdk_cpu: list[float] = []
        raw_cpu: list[float] = []
        one_wall: list[float] = []
        floor_wall: list[float] = []
        server_cpu: list[float] = []
        with server() as url:
            async with (
                session().client(
                    "bedrock-runtime", endpoint_url=url, config=raw_config(streams)
                ) as client,
                AsyncConversation(
                    MODEL, session=session(), endpoint_url=url, max_connections=streams
                ) as conv,
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=streams)) as http,
            ):

                async def sdk() -> int:
                    results = await conv.fan_out([PROMPT] * streams, concurrency=streams)
                    assert all(isinstance(r, Reply) and r.text for r in results)
                    return len(results)

                async def raw() -> int:
                    results = await asyncio.gather(
                        *(raw_turn(client, PROMPT) for _ in range(streams))
                    )
                    assert all(deltas == 20 for _text, deltas in results)
                    return len(results)

                async def one() -> None:
                    await conv.fork().send(PROMPT)

                async def floor() -> None:
                    await asyncio.gather(*(bare_turn(http, url, PROMPT) for _ in range(streams)))

                await sdk(), await raw(), await floor()  # warm up: open every pool's connections
                for _ in range(rounds):
                    s0 = url.cpu()
                    c, w, _n = await timed(sdk)
                    sdk_cpu.append(c)
                    sdk_wall.append(w)
                    s1 = url.cpu()
                    c, w, _n = await timed(raw)
                    raw_cpu.append(c)
                    raw_wall.append(w)
                    server_cpu.extend([s1 - s0, url.cpu() - s1])
                    one_wall.append((await timed(one))[1])
                    floor_wall.append((await timed(floor))[1])
        report(f"{streams} streams, wall", "s", sdk_wall, raw_wall, "target <= 0.9")
        report(f"{streams} streams, client CPU", "s", sdk_cpu, raw_cpu, "for information")
        print(f"server CPU per run: median {statistics.median(server_cpu):.3f} s")
        single = statistics.median(one_wall)
        multiple = statistics.median(sdk_wall) / single
        print(f"one stream: {single:.3f} s; fan-out / one stream = {multiple:.2f} (target <= 1.5)")
        floor_multiple = statistics.median(floor_wall) / single
        print(
            f"  the bare aiohttp floor on this machine: {statistics.median(floor_wall):.3f} s "
            f"= {floor_multiple:.2f} x one stream"
        )

    run(bench, args.uvloop)


if __name__ == "__main__":
    main()
