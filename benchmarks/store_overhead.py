"""Turns through a conversation store vs in memory: turns per second and latency per turn.

Run with: python benchmarks/store_overhead.py [--uvloop] [--rounds 200] [--concurrency 8]
Starts FakeBedrock (a separate process) and a redis-server on a free loopback port (persistence
off, as for a cache; `--appendfsync always` adds an fsync-always append-only file). Each side
runs `rounds` short turns (request + 5 deltas) sequentially, then the same number with
`--concurrency` conversations at once, each on its own id. Sides: in memory
(`AsyncConversation`), `SQLiteStore` (a file in a temporary directory) and `RedisStore`. A
stored turn costs: lease (1 round trip), re-read (1), commit (1), release (1, in the
background). Prints turns per second, the median and p99 latency per turn and the client
process's CPU per turn (the emulator runs in its own process, so this is the SDK's and the
store client's work), and the extra over memory. Sides alternate in blocks.
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
) -> tuple[list[float], float, float, float]:
    """(sequential latencies, sequential turns/s, concurrent turns/s, client CPU per turn).

    Every conversation takes at most ``TURNS_PER_CONVERSATION`` turns, so requests and stored
    states stay short and alike on every side.
    """
    latencies: list[float] = []
    blocks = -(-rounds // TURNS_PER_CONVERSATION)
    convs = [await make(f"seq{i}") for i in range(blocks)]
    try:
        for c in convs:  # warm-up: each conversation's client, connection, first store read
            await c.send(PROMPT)
        start, cpu0 = time.perf_counter(), time.process_time()
        for i in range(rounds):
            t0 = time.perf_counter()
            await convs[i // TURNS_PER_CONVERSATION].send(PROMPT)
            latencies.append(time.perf_counter() - t0)
        sequential = rounds / (time.perf_counter() - start)
        cpu = (time.process_time() - cpu0) / rounds
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
    return latencies, sequential, concurrent, cpu


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--blocks", type=int, default=5, help="interleaved blocks per side")
    p.add_argument("--appendfsync", choices=["no", "always"], default="no")
    args = p.parse_args()
    rounds = args.rounds or 200
    per_block = max(1, rounds // args.blocks)

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
            results: dict[str, tuple[list[float], list[float], list[float], list[float]]] = {
                name: ([], [], [], []) for name in stores
            }
            try:
                # Sides alternate block by block, so drift in machine load hits each alike.
                for block in range(args.blocks):
                    for name, store in stores.items():

                        async def make(
                            cid: str, store: ConversationStore | None = store, block: int = block
                        ) -> AsyncConversation:
                            if store is None:
                                return AsyncConversation(MODEL, session=session(), endpoint_url=url)
                            return await AsyncConversation.open(
                                store, f"b{block}-{cid}", MODEL, session=session(), endpoint_url=url
                            )

                        lat, seq, par, cpu = await measure(make, per_block, args.concurrency)
                        results[name][0].extend(lat)
                        results[name][1].append(seq)
                        results[name][2].append(par)
                        results[name][3].append(cpu)
            finally:
                await sqlite.aclose()
                await redis.aclose()
                proc.terminate()
                proc.wait(10)
        base = statistics.median(results["memory"][0])
        base99 = p99(results["memory"][0])
        print(
            f"{per_block * args.blocks} turns per side in {args.blocks} interleaved blocks, "
            f"concurrency {args.concurrency}, redis appendfsync {args.appendfsync}; "
            "turns/s are medians over blocks"
        )
        base_cpu = statistics.median(results["memory"][3])
        for name, (lat, seq, par, cpu) in results.items():
            med, tail, c = statistics.median(lat), p99(lat), statistics.median(cpu)
            print(
                f"{name:>7}: {statistics.median(seq):6.1f} turns/s sequential, "
                f"{statistics.median(par):6.1f} turns/s concurrent; latency median "
                f"{med * 1000:6.2f} ms (+{(med - base) * 1000:5.2f}), "
                f"p99 {tail * 1000:7.2f} ms (+{(tail - base99) * 1000:6.2f}); "
                f"client CPU {c * 1000:5.2f} ms/turn (+{(c - base_cpu) * 1000:5.2f})"
            )

    run(bench, args.uvloop)


if __name__ == "__main__":
    main()
