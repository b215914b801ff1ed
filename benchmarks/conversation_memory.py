"""Memory per live conversation opened the README's way: AsyncConversation(model, region_name=...).

Run with: python benchmarks/conversation_memory.py [--conversations 1000] [--unshared 20]
Each side runs in a fresh process: it opens one conversation and runs a turn (imports, the
first client and its connection), notes its RSS, then opens `--conversations` more, runs one
short turn on each (50 at a time) and keeps them all open; the figure is the RSS growth divided
by the number of conversations. "shared" is the default (one client per settings); "unshared"
gives every conversation a session= of its own, which opens a client per conversation (what
the default did before), measured with `--unshared` conversations. Target: shared <= 0.5 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from _common import HERE, MODEL, parser, server


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no /proc/self/status")


async def child(mode: str, url: str, count: int) -> dict[str, float]:
    """In the child process: open `count` conversations on top of one warm one."""
    import gc

    import aioboto3

    from aiostream_chat import AsyncConversation

    def open_one() -> AsyncConversation:
        if mode == "shared":
            return AsyncConversation(MODEL, region_name="us-east-1", endpoint_url=url)
        session = aioboto3.Session(region_name="us-east-1")
        return AsyncConversation(MODEL, session=session, endpoint_url=url)

    first = open_one()
    async with first:
        await first.send("bench n=5 delay=0")
        gc.collect()
        base = rss_mib()
        convs = [open_one() for _ in range(count)]
        for start in range(0, count, 50):
            batch = convs[start : start + 50]
            await asyncio.gather(*(c.__aenter__() for c in batch))
            await asyncio.gather(*(c.send("bench n=5 delay=0") for c in batch))
        gc.collect()
        grown = rss_mib() - base
        for conv in convs:
            await conv.aclose()
    return {"base_mib": base, "grown_mib": grown, "per_conversation_mib": grown / count}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--conversations", type=int, default=1000)
    p.add_argument("--unshared", type=int, default=20)
    p.add_argument("--child", nargs=3, metavar=("MODE", "URL", "COUNT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        mode, url, count = args.child
        print(json.dumps(asyncio.run(child(mode, url, int(count)))))
        return
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDBENCH",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with server() as url:
        for mode, count in (("shared", args.conversations), ("unshared", args.unshared)):
            out = subprocess.run(
                [
                    sys.executable,
                    str(HERE / "conversation_memory.py"),
                    "--child",
                    mode,
                    url,
                    str(count),
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            target = " (target <= 0.5 MiB)" if mode == "shared" else ""
            print(
                f"memory per conversation, {mode}: {result['per_conversation_mib']:.3f} MiB "
                f"({count} conversations, +{result['grown_mib']:.1f} MiB over "
                f"{result['base_mib']:.1f} MiB){target}"
            )


if __name__ == "__main__":
    main()
