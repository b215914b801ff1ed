"""ConversationStore semantics, pinned against real SQLite files and a real redis-server."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from aiostream_chat import (
    ConversationConflictError,
    ConversationStore,
    RedisStore,
    SQLiteStore,
    StoreError,
)
from aiostream_chat._redis_store import guarded
from tests._redis import free_port, run_redis
from tests.conftest import MakeStore


async def test_unknown_id_loads_as_none(make_store: MakeStore) -> None:
    """A conversation never committed loads as None."""
    assert await make_store().load("nobody") is None


async def test_commit_creates_then_bumps_the_version(make_store: MakeStore) -> None:
    """The first commit (from version 0) creates the record at 1; the next one moves it to 2."""
    store = make_store()
    assert await store.commit("c1", '{"a": 1}', 0, "owner-1") == 1
    assert await store.commit("c1", '{"a": 2}', 1, "owner-2") == 2
    record = await make_store().load("c1")
    assert record is not None
    assert (record.state, record.version) == ('{"a": 2}', 2)


async def test_stale_commit_conflicts_and_writes_nothing(make_store: MakeStore) -> None:
    """A commit from a version that is no longer current raises and leaves the record as it was."""
    store = make_store()
    await store.commit("c1", "first", 0, "owner-1")
    with pytest.raises(ConversationConflictError):
        await store.commit("c1", "second", 0, "owner-2")
    record = await store.load("c1")
    assert record is not None
    assert (record.state, record.version) == ("first", 1)


async def test_retried_commit_of_the_same_turn_is_not_a_conflict(make_store: MakeStore) -> None:
    """The same owner committing the same version twice (a reply lost) succeeds once."""
    store = make_store()
    assert await store.commit("c1", "s", 0, "owner-1") == 1
    assert await store.commit("c1", "s", 0, "owner-1") == 1
    with pytest.raises(ConversationConflictError):
        await store.commit("c1", "s", 0, "owner-2")


async def test_only_one_of_many_concurrent_commits_wins(make_store: MakeStore) -> None:
    """Twenty commits racing from the same version through separate connections: one lands."""
    stores = [make_store() for _ in range(20)]
    outcomes = await asyncio.gather(
        *(s.commit("race", f"state-{i}", 0, f"owner-{i}") for i, s in enumerate(stores)),
        return_exceptions=True,
    )
    winners = [i for i, outcome in enumerate(outcomes) if outcome == 1]
    assert len(winners) == 1
    assert all(isinstance(o, ConversationConflictError) for o in outcomes if o != 1), outcomes
    record = await stores[0].load("race")
    assert record is not None
    assert record.state == f"state-{winners[0]}"


async def test_lease_is_exclusive_until_released(make_store: MakeStore) -> None:
    """A held lease refuses other owners, accepts its owner again, and is free after release."""
    a, b = make_store(), make_store()
    assert await a.acquire("c1", "owner-a", 30)
    assert not await b.acquire("c1", "owner-b", 30)
    assert await a.acquire("c1", "owner-a", 30)
    await b.release("c1", "owner-b")  # not the holder: no effect
    assert not await b.acquire("c1", "owner-b", 30)
    await a.release("c1", "owner-a")
    assert await b.acquire("c1", "owner-b", 30)


async def test_expired_lease_is_free_for_others(make_store: MakeStore) -> None:
    """A lease nobody renews stops blocking once its TTL has passed (a crashed holder)."""
    a, b = make_store(), make_store()
    assert await a.acquire("c1", "owner-a", 0.05)
    await asyncio.sleep(0.2)
    assert await b.acquire("c1", "owner-b", 30)
    assert not await a.renew("c1", "owner-a", 30)


async def test_renew_only_by_the_holder(make_store: MakeStore) -> None:
    """Renewing works for the holder and fails for anyone else."""
    store = make_store()
    assert await store.acquire("c1", "owner-a", 30)
    assert await store.renew("c1", "owner-a", 30)
    assert not await store.renew("c1", "owner-b", 30)


async def test_commit_conflicts_while_another_owner_holds_the_lease(make_store: MakeStore) -> None:
    """A turn whose lease was taken over cannot commit over the new holder's turn."""
    store = make_store()
    assert await store.acquire("c1", "owner-b", 30)
    with pytest.raises(ConversationConflictError):
        await store.commit("c1", "late", 0, "owner-a")
    assert await store.load("c1") is None
    assert await store.commit("c1", "mine", 0, "owner-b") == 1


async def test_commit_drops_the_committers_lease(make_store: MakeStore) -> None:
    """A successful commit ends the turn: its lease is gone in the same step, so the next turn
    (from any process) can start at once."""
    a, b = make_store(), make_store()
    assert await a.acquire("c1", "owner-a", 30)
    assert await a.commit("c1", "s", 0, "owner-a") == 1
    assert await b.acquire("c1", "owner-b", 30)


def test_stores_satisfy_the_protocol(tmp_path: Path) -> None:
    """Both stores are ConversationStores (runtime-checkable protocol)."""
    assert isinstance(SQLiteStore(tmp_path / "x.db"), ConversationStore)
    assert isinstance(RedisStore("redis://127.0.0.1:1"), ConversationStore)


def test_bad_arguments_fail_before_io() -> None:
    """Wrong types and bad URLs raise TypeError/ValueError at construction."""
    with pytest.raises(TypeError):
        SQLiteStore(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="redis://"):
        RedisStore("http://localhost:6379")
    with pytest.raises(ValueError, match="prefix"):
        RedisStore("redis://127.0.0.1:1", prefix="")


async def test_sqlite_uses_wal_mode(tmp_path: Path) -> None:
    """The SQLite file is in WAL mode once the store has touched it."""
    store = SQLiteStore(tmp_path / "c.db")
    try:
        await store.commit("c1", "s", 0, "o")
    finally:
        await store.aclose()
    with sqlite3.connect(tmp_path / "c.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


async def test_sqlite_stores_opening_a_fresh_file_at_once_all_work(tmp_path: Path) -> None:
    """Twenty stores (as twenty processes would) first touching one fresh file at the same
    moment: switching it to WAL can report "database is locked" at once, outside SQLite's busy
    handler; every store still opens and loads. Repeated over fresh files: the race is rare."""
    for trial in range(30):
        stores = [SQLiteStore(tmp_path / f"fresh-{trial}.db") for _ in range(20)]
        try:
            outcomes = await asyncio.gather(*(s.load("c1") for s in stores), return_exceptions=True)
        finally:
            await asyncio.gather(*(s.aclose() for s in stores))
        assert outcomes == [None] * 20, [o for o in outcomes if o is not None]


async def test_sqlite_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    """A database path that cannot be opened raises StoreError, not sqlite3's exception."""
    store = SQLiteStore(tmp_path / "missing-dir" / "c.db")
    try:
        with pytest.raises(StoreError) as info:
            await store.load("c1")
        assert isinstance(info.value.__cause__, sqlite3.Error)
    finally:
        await store.aclose()


async def test_unreachable_redis_is_a_store_error() -> None:
    """Nothing listening at the URL: StoreError, with redis-py's error as the cause."""
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(StoreError, match="Redis failed to load"):
            await store.load("c1")
    finally:
        await store.aclose()


async def test_guarded_reraises_a_cancellation_the_call_swallows() -> None:
    """Even a call that swallows CancelledError (redis-py#2028) cannot keep its caller running."""
    swallowed = asyncio.Event()

    async def swallowing() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed.set()
            return "swallowed"
        return "slept"

    task = asyncio.create_task(guarded(swallowing, "test"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(swallowed.wait(), 5)


async def test_cancelling_a_call_stuck_on_a_paused_redis_ends_it() -> None:
    """A load waiting on a paused Redis is cancelled at once and re-raises CancelledError."""
    for server in run_redis():  # its own server: a paused one answers nothing, not even UNPAUSE
        store = RedisStore(server.url)
        try:
            await store.load("warm-up")  # connect first so the pause stalls the command itself
            server.command("CLIENT", "PAUSE", "10000", "ALL")
            task = asyncio.create_task(store.load("c1"))
            await asyncio.sleep(0.1)
            assert not task.done()
            task.cancel()
            # Swallowed, the load would end in StoreError (socket timeout) or a result after
            # the pause: never as cancelled.
            done, _ = await asyncio.wait([task], timeout=4)
            assert task in done and task.cancelled()
        finally:
            await store.aclose()
