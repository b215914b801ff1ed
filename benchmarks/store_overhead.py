"""Turns through a conversation store vs in memory: turns per second and latency per turn.

Run with: python benchmarks/store_overhead.py [--uvloop] [--rounds 200] [--concurrency 8]
Starts FakeBedrock (a separate process) and a redis-server on a free loopback port (persistence
off, as for a cache; `--appendfsync always` adds an fsync-always append-only file). Each side
runs `rounds` short turns (request + 5 deltas) sequentially, then the same number with
`--concurrency` conversations at once, each on its own id. Sides: in memory
(`AsyncConversation`), `SQLiteStore` (a file in a temporary directory) and `RedisStore`. A
stored turn costs: lease (1 round trip), re-read (1), commit (1), release (1, in the
background). Prints turns per second and the median and p99 latency per turn, and the extra
latency of each store over memory.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from _common import MODEL, parser, run, server, session

from aiostream_chat import AsyncConversation, ConversationStore, RedisStore, SQLiteStore

PROMPT = "bench n=5 delay=0"
TURNS_PER_CONVERSATION = 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(directory: str, fsync: bool) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory]
    args += ["--appendonly", "yes", "--appendfsync", "always"] if fsync else ["--appendonly", "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.01)
    return proc, f"redis://127.0.0.1:{port}/0"


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


async def measure(
    make: Callable[[str], Awaitable[AsyncConversation]], rounds: int, concurrency: int
) -> tuple[list[float], float, float]:
    """(sequential latencies, sequential turns/s, concurrent turns/s).

    Every conversation takes at most ``TURNS_PER_CONVERSATION`` turns, so requests and stored
    states stay short and alike on every side.
    """
    latencies: list[float] = []
    blocks = -(-rounds // TURNS_PER_CONVERSATION)
    convs = [await make(f"seq{i}") for i in range(blocks)]
    try:
        await convs[0].send(PROMPT)  # warm-up: client, connection, store
        start = time.perf_counter()
        for i in range(rounds):
            t0 = time.perf_counter()
            await convs[i // TURNS_PER_CONVERSATION].send(PROMPT)
            latencies.append(time.perf_counter() - t0)
        sequential = rounds / (time.perf_counter() - start)
    finally:
        for c in convs:
            await c.aclose()
    convs = [await make(f"par{i}") for i in range(concurrency)]
    try:
        await asyncio.gather(*(c.send(PROMPT) for c in convs))
        per = -(-rounds // concurrency)

        async def worker(c: AsyncConversation) -> None:
            for _ in range(per):
                await c.send(PROMPT)

        start = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in convs))
        concurrent = per * concurrency / (time.perf_counter() - start)
    finally:
        for c in convs:
            await c.aclose()
    return latencies, sequential, concurrent


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--appendfsync", choices=["no", "always"], default="no")
    args = p.parse_args()
    rounds = args.rounds or 200

    async def bench() -> None:
        with server() as url, tempfile.TemporaryDirectory() as tmp:
            proc, redis_url = start_redis(tmp, args.appendfsync == "always")
            sqlite = SQLiteStore(Path(tmp) / "bench.db")
            redis = RedisStore(redis_url, prefix=f"bench{time.time_ns()}")
            stores: dict[str, ConversationStore | None] = {
                "memory": None,
                "sqlite": sqlite,
                "redis": redis,
            }
            try:
                results = {}
                for name, store in stores.items():

                    async def make(
                        cid: str, store: ConversationStore | None = store
                    ) -> AsyncConversation:
                        if store is None:
                            return AsyncConversation(MODEL, session=session(), endpoint_url=url)
                        return await AsyncConversation.open(
                            store, cid, MODEL, session=session(), endpoint_url=url
                        )

                    results[name] = await measure(make, rounds, args.concurrency)
            finally:
                await sqlite.aclose()
                await redis.aclose()
                proc.terminate()
                proc.wait(10)
        base = statistics.median(results["memory"][0])
        base99 = p99(results["memory"][0])
        print(
            f"{rounds} turns per side, concurrency {args.concurrency}, redis appendfsync "
            f"{args.appendfsync}"
        )
        for name, (lat, seq, par) in results.items():
            med, tail = statistics.median(lat), p99(lat)
            print(
                f"{name:>7}: {seq:7.1f} turns/s sequential, {par:7.1f} turns/s concurrent; "
                f"latency median {med * 1000:6.2f} ms (+{(med - base) * 1000:5.2f}), "
                f"p99 {tail * 1000:6.2f} ms (+{(tail - base99) * 1000:5.2f})"
            )

    run(bench, args.uvloop)


if __name__ == "__main__":
    main()
