"""SQLiteStore: the embedded ConversationStore, one file shared by processes on one machine.

Stdlib ``sqlite3`` on one private worker thread per store, not aiosqlite: aiosqlite is the
same design (a thread owning the connection) as an extra dependency, and owning the thread
here lets ``aclose()`` close the connection on the thread that opened it. Cancelling a caller
returns at once; the statement already handed to the thread still finishes, which is why every
write is a single transaction that either lands whole or not at all.

WAL mode lets readers run beside a writer; ``BEGIN IMMEDIATE`` takes the write lock before
reading, so the version check and the write cannot interleave with another process's. Lease
expiry uses the wall clock, the one clock the processes of a machine share.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ._errors import ConversationConflictError, StoreError
from ._store import StoredConversation

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, version INTEGER NOT NULL, committed_by TEXT
);
CREATE TABLE IF NOT EXISTS leases (id TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
"""


class SQLiteStore:
    """Conversations in one SQLite file (WAL mode); safe for several processes on a machine."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or a path, not {type(path).__name__}")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float):
            raise TypeError("busy_timeout must be a number of seconds")
        self._path = os.fspath(path)
        self._busy_timeout = float(busy_timeout)
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r})"

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("the store is closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="aiostream_chat-sqlite")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._call, fn)
        except sqlite3.Error as exc:
            raise StoreError(f"the SQLite store at {self._path!r} failed: {exc}") from exc

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs on the worker thread: open the connection once, then run ``fn``."""
        if self._db is None:
            self._db = self._connect()
        return fn(self._db)

    def _connect(self) -> sqlite3.Connection:
        # Switching a fresh file to WAL can fail at once with "database is locked" while other
        # connections set it up too (SQLite's busy handler does not cover that step): retry
        # within the busy timeout.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            db = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.executescript(_SCHEMA)
            except sqlite3.OperationalError as exc:
                db.close()
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
                continue
            except BaseException:
                db.close()
                raise
            return db

    async def load(self, conversation_id: str) -> StoredConversation | None:
        """The stored conversation, or None."""

        def load(db: sqlite3.Connection) -> StoredConversation | None:
            sql = "SELECT state, version FROM conversations WHERE id = ?"
            row = db.execute(sql, (conversation_id,)).fetchone()
            return None if row is None else StoredConversation(row[0], row[1])

        return await self._run(load)

    async def acquire(self, conversation_id: str, owner: str, ttl: float) -> bool:
        """Take the lease unless another owner holds an unexpired one."""

        def acquire(db: sqlite3.Connection) -> bool:
            with _immediate(db):
                now = time.time()
                row = db.execute(
                    "SELECT owner, expires FROM leases WHERE id = ?", (conversation_id,)
                ).fetchone()
                if row is not None and row[0] != owner and row[1] > now:
                    return False
                db.execute(
                    "INSERT OR REPLACE INTO leases (id, owner, expires) VALUES (?, ?, ?)",
                    (conversation_id, owner, now + ttl),
                )
                return True

        return await self._run(acquire)

    async def renew(self, conversation_id: str, owner: str, ttl: float) -> bool:
        """Extend the lease if ``owner`` holds it."""

        def renew(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE leases SET expires = ? WHERE id = ? AND owner = ?",
                (time.time() + ttl, conversation_id, owner),
            )
            return cursor.rowcount == 1

        return await self._run(renew)

    async def release(self, conversation_id: str, owner: str) -> None:
        """Drop the lease if ``owner`` holds it."""

        def release(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM leases WHERE id = ? AND owner = ?", (conversation_id, owner))

        await self._run(release)

    async def commit(self, conversation_id: str, state: str, version: int, owner: str) -> int:
        """Write ``state`` as version ``version + 1`` if nothing changed since ``version``."""

        def commit(db: sqlite3.Connection) -> int | None:
            with _immediate(db):
                lease = db.execute(
                    "SELECT owner, expires FROM leases WHERE id = ?", (conversation_id,)
                ).fetchone()
                row = db.execute(
                    "SELECT version, committed_by FROM conversations WHERE id = ?",
                    (conversation_id,),
                ).fetchone()
                landed = row is not None and row[0] == version + 1 and row[1] == owner
                if not landed:  # (else this very commit already landed: a retried call)
                    if lease is not None and lease[0] != owner and lease[1] > time.time():
                        return None
                    if (row[0] if row is not None else 0) != version:
                        return None
                    db.execute(
                        "INSERT OR REPLACE INTO conversations (id, state, version, committed_by) "
                        "VALUES (?, ?, ?, ?)",
                        (conversation_id, state, version + 1, owner),
                    )
                sql = "DELETE FROM leases WHERE id = ? AND owner = ?"
                db.execute(sql, (conversation_id, owner))  # the turn is over
                return version + 1

        new_version = await self._run(commit)
        if new_version is None:
            raise ConversationConflictError(
                f"conversation {conversation_id!r} changed since this turn began"
            )
        return new_version

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, self._close_db)
        executor.shutdown(wait=False)

    def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()


class _immediate:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): one atomic write."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
