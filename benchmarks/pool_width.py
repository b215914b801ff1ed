"""What the connection-pool limit costs: a 200-wide asyncio.gather of forks (~1 s streams) at
several max_connections, and the RSS and CPU of the wider pools.

Run with: python benchmarks/pool_width.py [--uvloop] [--rounds 3] [--width 200]
With max_connections below the width, turns queue for a slot and the gather runs in waves;
an unused slot costs nothing (aiohttp's limit is a counter), so only connections in use cost.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from _common import MODEL, parser, run, server, session

from aiostream_chat import AsyncConversation

PROMPT = "bench n=20 delay=0.05"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--width", type=int, default=200)
    args = p.parse_args()
    rounds, width = args.rounds or 3, args.width

    async def bench(url: str) -> None:
        for limit in (100, width, 1000):
            walls: list[float] = []
            cpus: list[float] = []
            async with AsyncConversation(
                MODEL, session=session(), endpoint_url=url, max_connections=limit
            ) as conv:
                before = rss_mib()
                for _ in range(rounds):
                    c0, w0 = time.process_time(), time.perf_counter()
                    replies = await asyncio.gather(
                        *(conv.fork().send(PROMPT) for _ in range(width))
                    )
                    walls.append(time.perf_counter() - w0)
                    cpus.append(time.process_time() - c0)
                    assert len(replies) == width
                grown = rss_mib() - before
            wall = statistics.median(walls)
            print(
                f"{width}-wide gather, max_connections={limit}: wall {wall:.2f} s "
                f"(range {min(walls):.2f}..{max(walls):.2f}), client CPU "
                f"{statistics.median(cpus):.2f} s, RSS +{grown:.1f} MiB"
            )

    with server() as url:
        run(lambda: bench(url), args.uvloop)


if __name__ == "__main__":
    main()
