"""ConversationStore: where conversations live when several processes share them.

A store keeps, per conversation id, one record: the conversation's state as JSON, a version
that every commit bumps by one, and a lease (an owner token with an expiry) that marks a turn
in flight. Stores implement four promises, each atomic in the backing database:

- ``acquire`` takes the lease only if nobody else holds an unexpired one;
- ``renew`` extends it only while the caller still holds it; ``release`` drops it likewise;
- ``commit`` writes the new state only if the version is still the one the turn started
  from and no other owner holds the lease; otherwise it raises ``ConversationConflictError``
  and writes nothing. A commit retried after a lost reply (same owner, same version) is
  recognised and reports success instead of a conflict.

Failures to reach the database raise ``StoreError``. Cancellation is never swallowed.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["ConversationStore", "StoredConversation", "check_id", "new_owner"]

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
        """Store ``state`` if the record is still at ``version``; returns the new version."""
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
