"""A worker process for tests/test_multiprocess.py: runs turns against the emulator.

Run as ``python -m tests._mp_worker`` from the repository root; it reads one JSON job per
line on stdin (the process is reused across tests: starting Python with aioboto3 costs
seconds on a busy machine). For each job it prints ``READY`` once its conversations are open,
waits for a ``GO`` line when the job asks (a barrier across processes), then prints one JSON
line with what happened. In ``hold`` mode it prints ``STREAMING`` at the first text chunk and
keeps reading (the test kills it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import sys
from typing import Any

import aioboto3

from aiostream_chat import (
    AsyncConversation,
    ConversationBusyError,
    ConversationConflictError,
    ConversationStore,
    Limiter,
    RedisStore,
    RetryPolicy,
    SQLiteStore,
)
from aiostream_chat.testing import no_backoff

MODEL = "us.amazon.nova-micro-v1:0"


def make_store(spec: str | None) -> ConversationStore | None:
    if spec is None:
        return None
    if spec.startswith("sqlite:"):
        return SQLiteStore(spec.removeprefix("sqlite:"))
    return RedisStore(spec)


async def open_conv(
    job: dict[str, Any], store: ConversationStore | None, cid: str, limiter: Limiter | None
) -> AsyncConversation:
    session = aioboto3.Session(
        aws_access_key_id="AKIDTEST", aws_secret_access_key="test-secret", region_name="us-east-1"
    )
    settings: dict[str, Any] = {
        "session": session,
        "endpoint_url": job["endpoint"],
        "limiter": limiter,
        "retry": RetryPolicy(max_attempts=job.get("attempts", 4)),
    }
    if store is None:
        return AsyncConversation(MODEL, **settings)
    return await AsyncConversation.open(
        store, cid, MODEL, lease_ttl=job.get("lease_ttl", 30.0), **settings
    )


async def run_turns(job: dict[str, Any], convs: list[AsyncConversation]) -> dict[str, Any]:
    """``turns`` turns over the conversations, ``concurrency`` at once; count the outcomes."""
    outcomes: collections.Counter[str] = collections.Counter()
    texts: list[str] = []
    jobs = iter(range(job["turns"]))

    async def worker(conv: AsyncConversation) -> None:
        for i in jobs:
            try:
                reply = await conv.send(f"{job.get('tag', 'turn')} {i}")
            except ConversationBusyError:
                outcomes["busy"] += 1
            except ConversationConflictError:
                outcomes["conflict"] += 1
            except Exception as exc:
                outcomes[type(exc).__name__] += 1
            else:
                outcomes["ok"] += 1
                texts.append(reply.text)

    await asyncio.gather(*(worker(conv) for conv in convs))
    return {"outcomes": dict(outcomes), "texts": texts}


async def hold(conv: AsyncConversation) -> None:
    """Start a turn, announce the first chunk, and keep streaming until killed."""
    async with conv.stream("hold") as stream:
        async for _ in stream:
            print("STREAMING", flush=True)
            await asyncio.sleep(3600)


async def main(job: dict[str, Any]) -> None:
    store = make_store(job.get("store"))
    spec = job.get("limiter")
    limiter = None if spec is None else Limiter.redis(spec.pop("url"), spec.pop("name"), **spec)
    ids = job.get("ids", ["c"])
    convs = [
        await open_conv(job, store, ids[i % len(ids)], limiter)
        for i in range(job.get("concurrency", 1))
    ]
    try:
        print("READY", flush=True)
        if job.get("barrier"):
            await asyncio.to_thread(sys.stdin.readline)
        if job["mode"] == "hold":
            await hold(convs[0])
        else:
            with no_backoff() if job.get("no_backoff") else contextlib.nullcontext():
                result = await run_turns(job, convs)
            print(json.dumps(result), flush=True)
    finally:
        for conv in convs:
            await conv.aclose()
        if limiter is not None:
            await limiter.aclose()
        if store is not None:
            await store.aclose()


async def serve() -> None:
    """Run jobs from stdin until it closes."""
    while line := await asyncio.to_thread(sys.stdin.readline):
        await main(json.loads(line))


if __name__ == "__main__":
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    asyncio.run(serve())
