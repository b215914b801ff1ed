"""AsyncConversation.open and limiter=: stores and limits driven through the real stack."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aioboto3
import pytest
import pytest_asyncio

from aiostream_chat import (
    AsyncConversation,
    ConversationBusyError,
    ConversationConflictError,
    ConversationState,
    ConversationStore,
    InternalServerError,
    Limiter,
    RedisStore,
    RetryPolicy,
    SQLiteStore,
)
from aiostream_chat._limiter import LocalLimiter
from aiostream_chat.testing import FakeBedrock, Fault, reply
from tests._redis import run_redis

MODEL = "us.amazon.nova-micro-v1:0"
Open = Callable[..., "asyncio.Future[AsyncConversation]"]


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ConversationStore]:
    made: ConversationStore
    if request.param == "sqlite":
        made = SQLiteStore(tmp_path / "conversations.db")
    else:
        url = request.getfixturevalue("redis_server").url
        made = RedisStore(url, prefix=f"t{uuid.uuid4().hex[:8]}")
    yield made
    await made.aclose()


@pytest_asyncio.fixture
async def open_conv(
    store: ConversationStore, fake_bedrock: FakeBedrock, session: aioboto3.Session
) -> AsyncIterator[Callable[..., Any]]:
    """Opens conversations on the store against the emulator; closes them after the test."""
    made: list[AsyncConversation] = []

    async def make(cid: str = "c1", **kwargs: Any) -> AsyncConversation:
        kwargs.setdefault("session", session)
        kwargs.setdefault("endpoint_url", fake_bedrock.endpoint_url)
        conv = await AsyncConversation.open(store, cid, MODEL, **kwargs)
        made.append(conv)
        return conv

    yield make
    for conv in made:
        await conv.aclose()


def texts(conv: AsyncConversation) -> list[str]:
    return [m.text for m in conv.history]


async def stored(store: ConversationStore, cid: str = "c1") -> list[str]:
    record = await store.load(cid)
    if record is None:
        return []
    return [m.text for m in ConversationState.model_validate_json(record.state).history]


async def test_completed_turns_are_committed_and_loaded(
    open_conv: Callable[..., Any], store: ConversationStore, fake_bedrock: FakeBedrock
) -> None:
    """A completed turn lands in the store; a conversation opened later starts from it."""
    fake_bedrock.responder = lambda r: reply(f"answer to {r.prompt_text}")
    first = await open_conv()
    await first.send("one")
    assert await stored(store) == ["one", "answer to one"]
    second = await open_conv()
    assert texts(second) == ["one", "answer to one"]


async def test_each_turn_rereads_the_history(
    open_conv: Callable[..., Any], fake_bedrock: FakeBedrock
) -> None:
    """Two conversations on one id (two replicas): each turn starts from what the other
    committed, so the request carries every earlier turn and nothing is lost."""
    fake_bedrock.responder = lambda r: reply(f"answer to {r.prompt_text}")
    a, b = await open_conv(), await open_conv()
    await a.send("from a")
    await b.send("from b")
    await a.send("a again")
    sent = [
        [c["text"] for m in r.body["messages"] for c in m["content"]] for r in fake_bedrock.requests
    ]
    assert sent[2] == ["from a", "answer to from a", "from b", "answer to from b", "a again"]
    assert texts(a)[-2:] == ["a again", "answer to a again"] and len(texts(a)) == 6


async def test_a_turn_in_flight_makes_the_id_busy_everywhere(
    open_conv: Callable[..., Any], fake_bedrock: FakeBedrock
) -> None:
    """While one conversation streams a turn, a turn on the same id elsewhere raises
    ConversationBusyError at once (no request sent); afterwards it works."""
    fake_bedrock.responder = lambda r: reply(f"answer to {r.prompt_text}", chunks=4, delay=0.05)
    a, b = await open_conv(), await open_conv()
    async with a.stream("slow") as stream:
        await anext(stream)
        with pytest.raises(ConversationBusyError):
            await b.send("meanwhile")
        assert not b.busy
        await stream.get_reply()
    await b.send("after")
    assert [r.prompt_text for r in fake_bedrock.requests] == ["slow", "after"]


async def test_losing_the_compare_and_set_writes_nothing(
    open_conv: Callable[..., Any], store: ConversationStore, fake_bedrock: FakeBedrock
) -> None:
    """When the record changed under a turn (its lease lapsed and another writer committed),
    the commit raises ConversationConflictError and the store keeps the other write."""
    fake_bedrock.responder = lambda r: reply(f"answer to {r.prompt_text}", chunks=4, delay=0.05)
    conv = await open_conv()
    with pytest.raises(ConversationConflictError):
        async with conv.stream("mine") as stream:
            await anext(stream)
            binding = conv._binding
            assert binding is not None and binding._owner is not None
            await store.release("c1", binding._owner)  # as if the lease had expired
            state = ConversationState(model_id=MODEL).model_dump_json()
            await store.commit("c1", state, 0, "someone-else")
            await stream.get_reply()
    record = await store.load("c1")
    assert record is not None and record.version == 1 and await stored(store) == []
    assert conv.history == ()


async def test_failed_and_cancelled_turns_leave_the_store_alone(
    open_conv: Callable[..., Any], store: ConversationStore, fake_bedrock: FakeBedrock
) -> None:
    """A failed turn and a cancelled one commit nothing and free the lease: the next turn on
    the id (from another conversation) starts at once."""
    fake_bedrock.enqueue(reply("x", fault=Fault.http(500)))
    fake_bedrock.responder = lambda r: reply(f"answer to {r.prompt_text}", chunks=8, delay=0.05)
    a, b = await open_conv(retry=RetryPolicy.none()), await open_conv()
    with pytest.raises(InternalServerError):
        await a.send("fails")
    await a.aclose()  # waits for the lease release
    streaming = asyncio.Event()

    async def consume() -> None:
        async with b.stream("cancelled") as stream:
            async for _ in stream:
                streaming.set()

    task = asyncio.create_task(consume())
    await streaming.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await b.aclose()
    assert await store.load("c1") is None
    c = await open_conv()
    await c.send("works")
    assert await stored(store) == ["works", "answer to works"]


async def test_a_fork_is_not_bound_to_the_store(
    open_conv: Callable[..., Any], store: ConversationStore
) -> None:
    """Turns on a fork (and so a fan-out) never touch the stored conversation."""
    conv = await open_conv()
    await conv.send("kept")
    fork = conv.fork()
    await fork.send("fork only")
    await conv.fan_out(["p1", "p2"])
    assert len(await stored(store)) == 2 and len(fork.history) == 4


async def test_open_rejects_bad_arguments_before_io(store: ConversationStore) -> None:
    """A non-store, a bad id, history= or a bad lease_ttl raise TypeError/ValueError."""
    with pytest.raises(TypeError, match="ConversationStore"):
        await AsyncConversation.open(object(), "c1", MODEL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="conversation_id"):
        await AsyncConversation.open(store, "", MODEL)
    with pytest.raises(TypeError, match="history"):
        await AsyncConversation.open(store, "c1", MODEL, history=())
    with pytest.raises(ValueError, match="lease_ttl"):
        await AsyncConversation.open(store, "c1", MODEL, lease_ttl=0)


async def test_cancelled_turn_stuck_on_a_paused_redis_ends_and_frees_the_lease(
    fake_bedrock: FakeBedrock, session: aioboto3.Session
) -> None:
    """A turn whose start waits on a paused Redis is cancelled at once (CancelledError, no
    request sent); once Redis answers again its lease is released, so the id is free."""
    for server in run_redis():
        store = RedisStore(server.url)
        conv = await AsyncConversation.open(
            store, "c1", MODEL, session=session, endpoint_url=fake_bedrock.endpoint_url
        )
        try:
            server.command("CLIENT", "PAUSE", "500", "ALL")
            task = asyncio.create_task(conv.send("stuck"))
            await asyncio.sleep(0.05)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=5)
            assert task in done and task.cancelled()
            assert not conv.busy and fake_bedrock.requests == []
            await conv.aclose()  # the lease release lands once the pause is over
            assert await store.acquire("c1", "next-turn", 30)
        finally:
            await conv.aclose()
            await store.aclose()


# -- limiter= ------------------------------------------------------------------------------


async def test_limiter_caps_streams_across_forks_and_fan_out(
    make_conv: Callable[..., AsyncConversation], fake_bedrock: FakeBedrock
) -> None:
    """A conversation's limiter bounds every request of it, its forks and its fan-outs."""
    fake_bedrock.responder = lambda r: reply("a b c d", chunks=4, delay=0.02)
    limiter = Limiter.local(max_in_flight=2)
    conv = make_conv(limiter=limiter)
    replies = await conv.fan_out([f"p{i}" for i in range(8)], concurrency=8)
    await asyncio.gather(conv.fork().send("f1"), conv.fork().send("f2"), conv.send("own"))
    assert len(replies) == 8 and len(fake_bedrock.requests) == 11
    assert fake_bedrock.max_open_streams == 2


async def test_throttling_lowers_the_limit_and_success_raises_it(
    make_conv: Callable[..., AsyncConversation], fake_bedrock: FakeBedrock
) -> None:
    """Against a quota of 2 streams, 429s halve a limiter of 8 (every turn still completes
    through retries); completed turns then raise it again; tokens are counted."""
    fake_bedrock.max_concurrent_streams = 2
    fake_bedrock.responder = lambda r: reply("a b c d", chunks=4, delay=0.02)
    limiter = Limiter.local(max_in_flight=8, tokens_per_minute=10**9)
    assert isinstance(limiter, LocalLimiter) and limiter.engine is not None
    assert limiter.tokens is not None
    conv = make_conv(limiter=limiter, retry=RetryPolicy(max_attempts=10))
    await asyncio.gather(*(conv.fork().send(f"p{i}") for i in range(8)))
    assert fake_bedrock.throttled > 0 and limiter.engine.decreases >= 1
    lowered = limiter.engine.limit
    assert lowered < 8
    for _ in range(5):
        await conv.fork().send("one at a time")
    assert limiter.engine.limit > lowered
    assert limiter.tokens.level < limiter.tokens.capacity  # usage of completed turns taken


async def test_a_turn_waiting_for_the_limiter_cancels_cleanly(
    make_conv: Callable[..., AsyncConversation], fake_bedrock: FakeBedrock
) -> None:
    """A turn queued behind a full limiter is cancelled without sending anything, and the
    conversation is free again."""
    limiter = Limiter.local(max_in_flight=1)
    held = await limiter.acquire()
    conv = make_conv(limiter=limiter)
    task = asyncio.create_task(conv.send("waits"))
    await asyncio.sleep(0.05)
    assert conv.busy and not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not conv.busy and fake_bedrock.requests == []
    held.release("completed")
    assert (await conv.send("now")).text
