"""Binding: how one conversation takes its lease, keeps it while streaming, commits and lets go."""

from __future__ import annotations

import asyncio

import pytest

from aiostream_chat import (
    ConversationBusyError,
    ConversationConflictError,
    RedisStore,
)
from aiostream_chat._store import Binding
from tests._redis import run_redis
from tests.conftest import MakeStore


async def test_second_binding_is_busy_until_the_first_releases(make_store: MakeStore) -> None:
    """While one binding has a turn in flight, another on the same id gets ConversationBusyError;
    after release() it can begin."""
    a = Binding(make_store(), "c1", 30)
    b = Binding(make_store(), "c1", 30)
    assert await a.begin() is None
    with pytest.raises(ConversationBusyError):
        await b.begin()
    a.release()
    await a.aclose()  # the lease is dropped in the background; wait for it
    assert await b.begin() is None
    b.release()
    await b.aclose()


async def test_lease_is_renewed_while_the_turn_is_in_flight(make_store: MakeStore) -> None:
    """A turn longer than the lease TTL keeps its lease: renewal runs every third of the TTL."""
    a = Binding(make_store(), "c1", 0.3)
    b = Binding(make_store(), "c1", 0.3)
    await a.begin()
    await asyncio.sleep(1.0)  # more than three TTLs
    with pytest.raises(ConversationBusyError):
        await b.begin()
    await a.commit("state-1")
    a.release()
    await a.aclose()


async def test_a_stalled_turn_whose_lease_lapsed_cannot_commit(make_store: MakeStore) -> None:
    """A turn whose process stalled past its lease TTL loses to the turn that took over: its
    commit raises ConversationConflictError and the record keeps the other turn's state."""
    a = Binding(make_store(), "c1", 0.2)
    await a.begin()
    assert a._renewer is not None
    a._renewer.cancel()  # the process stalls: nothing renews the lease
    await asyncio.sleep(0.4)
    b = Binding(make_store(), "c1", 30)
    await b.begin()
    await b.commit("from-b")
    b.release()
    await b.aclose()
    with pytest.raises(ConversationConflictError):
        await a.commit("from-a")
    a.release()
    await a.aclose()
    record = await make_store().load("c1")
    assert record is not None and (record.state, record.version) == ("from-b", 1)


async def test_begin_rereads_the_latest_state(make_store: MakeStore) -> None:
    """Each begin() returns the state as committed most recently, by anyone."""
    a = Binding(make_store(), "c1", 30)
    b = Binding(make_store(), "c1", 30)
    await a.begin()
    await a.commit("one")
    a.release()
    await a.aclose()
    assert await b.begin() == "one"
    assert b.version == 1
    b.release()
    await b.aclose()


async def test_cancelled_begin_on_a_paused_redis_reraises_and_frees_the_lease() -> None:
    """A turn cancelled while Redis is stuck ends at once with CancelledError; once Redis
    answers again the lease it may have taken is released, so the next turn can begin."""
    for server in run_redis():
        store = RedisStore(server.url)
        other = RedisStore(server.url)
        try:
            await store.load("warm-up")
            binding = Binding(store, "c1", 30)
            server.command("CLIENT", "PAUSE", "500", "ALL")
            task = asyncio.create_task(binding.begin())
            await asyncio.sleep(0.05)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=5)
            assert task in done and task.cancelled()
            await binding.aclose()  # the release goes through once the pause is over
            assert await other.acquire("c1", "next-turn", 30)
        finally:
            await store.aclose()
            await other.aclose()
