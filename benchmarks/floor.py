"""The wall-time floor of the 500-stream benchmark: a bare aiohttp client (no botocore, no
signing, no event parsing) against the raw aioboto3 loop, same emulator, same pool size.

Run with: python benchmarks/floor.py [--uvloop] [--rounds 4]
If the floor's ratio to the raw loop is above 0.8, no botocore-based client can reach the
fan-out wall target on this machine: what is left is the emulator's pacing and the sockets.
"""

from __future__ import annotations

import asyncio

import aiohttp
from _common import bare_turn, parser, raw_config, raw_turn, report, run, server, session, timed

PROMPT = "bench n=20 delay=0.05"


def main() -> None:
    args = parser(__doc__).parse_args()
    rounds = args.rounds or 4

    async def bench() -> None:
        floor_wall: list[float] = []
        raw_wall: list[float] = []
        with server() as url:
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=500)) as http,
                session().client(
                    "bedrock-runtime", endpoint_url=url, config=raw_config(500)
                ) as client,
            ):

                async def floor() -> None:
                    await asyncio.gather(*(bare_turn(http, url, PROMPT) for _ in range(500)))

                async def raw() -> None:
                    await asyncio.gather(*(raw_turn(client, PROMPT) for _ in range(500)))

                await floor()
                await raw()
                for _ in range(rounds):
                    floor_wall.append((await timed(floor))[1])
                    raw_wall.append((await timed(raw))[1])
        report("500 streams, wall", "s", floor_wall, raw_wall, "the floor", label="bare aiohttp")

    run(bench, args.uvloop)


if __name__ == "__main__":
    main()
