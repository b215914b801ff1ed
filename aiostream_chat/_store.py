"""ConversationStore: where conversations live when several processes share them.

A store keeps, per conversation id, one record: the conversation's state as JSON, a version
that every commit bumps by one, and a lease (an owner token with an expiry) that marks a turn
in flight. Stores implement four promises, each atomic in the backing database:

- ``acquire`` takes the lease only if nobody else holds an unexpired one;
- ``renew`` extends it only while the caller still holds it; ``release`` drops it likewise;
- ``commit`` writes the new state only if the version is still the one the turn started
  from and no other owner holds the lease, and drops the caller's lease in the same step;
  otherwise it raises ``ConversationConflictError`` and writes nothing. A commit retried
  after a lost reply (same owner, same version) is recognised and reports success.

Failures to reach the database raise ``StoreError``. Cancellation is never swallowed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._errors import ConversationBusyError

__all__ = [
    "Binding",
    "ConversationStore",
    "StoredConversation",
    "check_id",
    "check_ttl",
    "new_owner",
]

log = logging.getLogger("aiostream_chat")

# Long enough for any id users build from user/session ids, short enough for a key.
_ID = re.compile(r"[^\x00-\x1f\x7f]{1,256}")


@dataclass(frozen=True)
class StoredConversation:
    """One stored conversation: its state as JSON and the version of that state."""

    state: str
    version: int


@runtime_checkable
class ConversationStore(Protocol):
    """What ``AsyncConversation.open`` needs from a store (implement it for your database)."""

    async def load(self, conversation_id: str) -> StoredConversation | None:
        """The stored conversation, or None if the id was never committed."""
        ...

    async def acquire(self, conversation_id: str, owner: str, ttl: float) -> bool:
        """Take the lease for ``ttl`` seconds; False if another owner holds it."""
        ...

    async def renew(self, conversation_id: str, owner: str, ttl: float) -> bool:
        """Extend the lease ``owner`` holds; False if it has lost it."""
        ...

    async def release(self, conversation_id: str, owner: str) -> None:
        """Drop the lease if ``owner`` still holds it."""
        ...

    async def commit(self, conversation_id: str, state: str, version: int, owner: str) -> int:
        """Store ``state`` if the record is still at ``version`` and drop ``owner``'s lease;
        returns the new version."""
        ...

    async def aclose(self) -> None:
        """Close connections; idempotent."""
        ...


def check_id(conversation_id: object) -> str:
    """The id if it is a usable conversation id; TypeError/ValueError otherwise."""
    if not isinstance(conversation_id, str):
        raise TypeError(f"conversation_id must be a str, not {type(conversation_id).__name__}")
    if not _ID.fullmatch(conversation_id):
        raise ValueError("conversation_id must be 1 to 256 printable characters")
    return conversation_id


def new_owner() -> str:
    """A lease owner token unique across processes and machines."""
    return uuid.uuid4().hex


def check_ttl(ttl: object) -> float:
    """A lease TTL in seconds, positive."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError(f"lease_ttl must be a number of seconds, not {type(ttl).__name__}")
    if not ttl > 0:
        raise ValueError(f"lease_ttl must be positive, not {ttl}")
    return float(ttl)


class Binding:
    """A conversation's link to its record: one turn at a time takes the lease, reads the
    history, keeps the lease alive while it streams, commits, and lets go.

    ``release()`` is synchronous (it runs in every turn's cleanup, cancelled or not): it stops
    the renewal and drops the lease in a background task that ``aclose()`` waits for.
    """

    def __init__(self, store: ConversationStore, conversation_id: str, lease_ttl: float) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self.lease_ttl = lease_ttl
        self.version = 0
        self._owner: str | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def load(self) -> str | None:
        """The stored state JSON (None if the id is new); remembers its version."""
        record = await self.store.load(self.conversation_id)
        self.version = 0 if record is None else record.version
        return None if record is None else record.state

    async def begin(self) -> str | None:
        """Take the lease (ConversationBusyError if another turn holds it), then re-read."""
        if self._pending:  # this binding's last lease release: let it land first
            await asyncio.wait(list(self._pending))
        owner = self._owner = new_owner()
        try:
            if not await self.store.acquire(self.conversation_id, owner, self.lease_ttl):
                self._owner = None
                raise ConversationBusyError(
                    f"a turn is already in flight on conversation {self.conversation_id!r} "
                    "(in this or another process)"
                )
            state = await self.load()
        except BaseException:
            self.release()  # the lease may have been taken before a cancellation arrived
            raise
        self._renewer = asyncio.create_task(self._renew(owner))
        return state

    async def commit(self, state: str) -> None:
        """Compare-and-set ``state`` onto the version this turn started from."""
        owner = self._owner
        if owner is None:
            raise RuntimeError("commit() without a turn in flight")
        self.version = await self.store.commit(self.conversation_id, state, self.version, owner)
        # The commit dropped the lease: nothing is left to release (no window where a next
        # turn would find it busy).
        self._owner = None
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            self._track(self._settle(renewer))

    def release(self) -> None:
        """Stop renewing and drop the lease (in the background); idempotent."""
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
        owner, self._owner = self._owner, None
        if owner is not None:
            self._track(self._release(owner, renewer))
        elif renewer is not None:
            self._track(self._settle(renewer))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle(self, renewer: asyncio.Task[None]) -> None:
        await asyncio.wait([renewer])

    async def _release(self, owner: str, renewer: asyncio.Task[None] | None) -> None:
        if renewer is not None:
            await asyncio.wait([renewer])  # a renewal in flight must not outlive the release
        try:
            await self.store.release(self.conversation_id, owner)
        except Exception as exc:  # the lease then expires after its TTL
            log.warning("could not release the lease on %r: %s", self.conversation_id, exc)

    async def _renew(self, owner: str) -> None:
        """Renew the lease every third of its TTL while the turn is in flight."""
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                if not await self.store.renew(self.conversation_id, owner, self.lease_ttl):
                    log.warning("lost the lease on %r; the commit will fail", self.conversation_id)
                    return
            except Exception as exc:  # a store outage: keep trying while the TTL lasts
                log.warning("could not renew the lease on %r: %s", self.conversation_id, exc)

    async def aclose(self) -> None:
        """Wait for lease releases still in flight."""
        while self._pending:
            await asyncio.wait(list(self._pending))
