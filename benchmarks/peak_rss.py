"""Peak RSS with 1,000 concurrent open streams: SDK vs the raw aioboto3 loop, each side in its
own fresh process.

Run with: python benchmarks/peak_rss.py [--uvloop] [--rounds 3] [--streams 1000]
Each child process opens one client (a pool of `--streams` connections), runs `--streams`
turns at once (5 deltas 0.5 s apart, so all are open together for about two seconds), checks
that they all were open at the same time, and reports its peak RSS (VmHWM) and its RSS before
the streams started. Target: ratio of peaks SDK / raw <= 1.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

from _common import (
    HERE,
    MODEL,
    parser,
    peak_rss_mib,
    raw_config,
    run,
    server,
    session,
)

PROMPT = "bench n=5 delay=0.5"


async def child(side: str, url: str, streams: int) -> dict[str, float]:
    """Run in the child process: one side's 1,000 streams; returns its memory figures."""
    from aiostream_chat import AsyncConversation, Reply, TextDelta, TurnCompleted

    opened = 0
    all_open = asyncio.Event()

    def one_more() -> None:
        nonlocal opened
        opened += 1
        if opened == streams:
            all_open.set()

    if side == "sdk":
        async with AsyncConversation(
            MODEL, session=session(), endpoint_url=url, max_connections=streams
        ) as conv:
            base = peak_rss_mib()
            seen: set[int] = set()
            done = 0
            async for index, event in conv.fan_out_stream([PROMPT] * streams, concurrency=streams):
                if isinstance(event, TextDelta) and index not in seen:
                    seen.add(index)
                    one_more()
                done += isinstance(event, TurnCompleted) and isinstance(event.reply, Reply)
            assert done == streams, done
    else:
        async with session().client(
            "bedrock-runtime", endpoint_url=url, config=raw_config(streams)
        ) as client:
            base = peak_rss_mib()

            async def turn() -> int:
                resp = await client.converse_stream(
                    modelId=MODEL, messages=[{"role": "user", "content": [{"text": PROMPT}]}]
                )
                text, first = "", True
                async for event in resp["stream"]:
                    if "contentBlockDelta" in event:
                        text += event["contentBlockDelta"]["delta"].get("text", "")
                        if first:
                            first = False
                            one_more()
                return len(text)

            assert all(await asyncio.gather(*(turn() for _ in range(streams))))
    assert all_open.is_set()
    return {"base": base, "peak": peak_rss_mib()}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--child", choices=["sdk", "raw"], help=argparse.SUPPRESS)
    p.add_argument("--url")
    args = p.parse_args()
    if args.child:
        result: dict[str, float] = {}

        async def go() -> None:
            result.update(await child(args.child, args.url, args.streams))

        run(go, args.uvloop)
        print(json.dumps(result))
        return
    rounds = args.rounds or 3
    peaks: dict[str, list[float]] = {"sdk": [], "raw": []}
    bases: dict[str, list[float]] = {"sdk": [], "raw": []}
    with server() as url:
        for _ in range(rounds):
            for side in ("sdk", "raw"):
                cmd = [sys.executable, str(HERE / "peak_rss.py"), "--child", side, "--url", url]
                cmd += ["--streams", str(args.streams)] + (["--uvloop"] if args.uvloop else [])
                t0 = time.perf_counter()
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                figures = json.loads(out.strip().splitlines()[-1])
                peaks[side].append(figures["peak"])
                bases[side].append(figures["base"])
                print(
                    f"  {side}: peak {figures['peak']:.1f} MiB, before the streams "
                    f"{figures['base']:.1f} MiB ({time.perf_counter() - t0:.1f} s)"
                )
    s, r = statistics.median(peaks["sdk"]), statistics.median(peaks["raw"])
    sb, rb = statistics.median(bases["sdk"]), statistics.median(bases["raw"])
    print(
        f"peak RSS, {args.streams} open streams: sdk {s:.1f} MiB, raw {r:.1f} MiB,"
        f" ratio {s / r:.3f} (target <= 1.1)"
    )
    print(
        f"  growth over the process before the streams: sdk {s - sb:.1f} MiB,"
        f" raw {r - rb:.1f} MiB, ratio {(s - sb) / (r - rb):.3f}"
    )


if __name__ == "__main__":
    main()
