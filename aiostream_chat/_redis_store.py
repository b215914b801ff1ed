"""RedisStore: conversations in Redis, shared by processes on any number of machines.

Per id, a hash ``{prefix}:{<id>}:conv`` (state, version, committed_by) and a string
``{prefix}:{<id>}:lease`` holding the owner token with a TTL (Redis expires it, so the clock
that counts is the server's). Every check-then-write is one Lua script, which Redis runs
atomically; both keys share a hash tag, so the scripts also work on a cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import ConversationConflictError, StoreError
from ._store import StoredConversation

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStore", "connect", "guarded"]

# Seconds between attempts of a call whose connection was lost.
_RECONNECT_DELAYS = (0.05, 0.2, 0.5)

T = TypeVar("T")

_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS: conv, lease. ARGV: state, version the turn started from, owner. -> new version or -1.
# A successful commit also drops the owner's lease: the turn is over.
_COMMIT = """
local cur = redis.call('HMGET', KEYS[1], 'version', 'committed_by')
local version = tonumber(cur[1]) or 0
local expected = tonumber(ARGV[2])
local holder = redis.call('GET', KEYS[2])
if version == expected + 1 and cur[2] == ARGV[3] then
  if holder == ARGV[3] then redis.call('DEL', KEYS[2]) end
  return version
end
if holder and holder ~= ARGV[3] then return -1 end
if version ~= expected then return -1 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'version', version + 1, 'committed_by', ARGV[3])
if holder then redis.call('DEL', KEYS[2]) end
return version + 1
"""


def connect(url: str) -> Redis:
    """A redis-py asyncio client for ``url`` (no I/O yet); a clear error without the extra."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("url must start with redis://, rediss:// or unix://")
    try:
        from redis.asyncio import Redis
    except ModuleNotFoundError as exc:
        msg = (
            "RedisStore and Limiter.redis need the redis extra: pip install 'aiostream-chat[redis]'"
        )
        raise ModuleNotFoundError(msg) from exc
    return Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)


async def guarded(call: Callable[[], Awaitable[T]], what: str) -> T:
    """Run one Redis call so that cancellation always propagates and failures are StoreError.

    redis-py's asyncio client has swallowed a CancelledError (redis/redis-py#2028). The call
    runs in its own task; this task waits with ``asyncio.wait``, which a cancellation
    interrupts whatever the inner task does; the inner task is then cancelled and left to
    finish on its own. A lost connection is retried a few times within about a second, which
    rides out a Redis restart: every call here is safe to repeat (the scripts check before
    they write, and a repeated commit is recognised).
    """
    from redis.exceptions import ConnectionError, RedisError, TimeoutError

    for retry in range(len(_RECONNECT_DELAYS) + 1):
        inner = asyncio.ensure_future(call())
        try:
            await asyncio.wait([inner])
        except asyncio.CancelledError:
            inner.cancel()
            inner.add_done_callback(_retrieve)
            raise
        try:
            return inner.result()
        except (ConnectionError, TimeoutError, OSError) as exc:
            if retry == len(_RECONNECT_DELAYS):
                raise StoreError(f"Redis failed to {what}: {exc}") from exc
            await asyncio.sleep(_RECONNECT_DELAYS[retry])
        except RedisError as exc:
            raise StoreError(f"Redis failed to {what}: {exc}") from exc
    raise AssertionError("unreachable")


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Consume the outcome of an abandoned call so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


class RedisStore:
    """Conversations in Redis; leases expire on the server, commits are compare-and-set."""

    def __init__(self, url: str, *, prefix: str = "aiostream_chat") -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError("prefix must be non-empty and without braces")
        self._url = url
        self._prefix = prefix
        self._redis = connect(url)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._commit = self._redis.register_script(_COMMIT)
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self._prefix!r})"  # the URL may hold a password

    def _keys(self, conversation_id: str) -> tuple[str, str]:
        base = f"{self._prefix}:{{{conversation_id}}}"
        return f"{base}:conv", f"{base}:lease"

    async def load(self, conversation_id: str) -> StoredConversation | None:
        """The stored conversation, or None."""
        conv, _ = self._keys(conversation_id)
        fields = await guarded(
            lambda: self._redis.hmget(conv, ["state", "version"]), "load a conversation"
        )
        state, version = fields
        if state is None or version is None:
            return None
        return StoredConversation(str(state), int(version))

    async def acquire(self, conversation_id: str, owner: str, ttl: float) -> bool:
        """Take the lease unless another owner holds it."""
        _, lease = self._keys(conversation_id)
        args: list[str | int] = [owner, max(1, int(ttl * 1000))]
        got = await guarded(lambda: self._acquire(keys=[lease], args=args), "take a lease")
        return bool(got)

    async def renew(self, conversation_id: str, owner: str, ttl: float) -> bool:
        """Extend the lease if ``owner`` holds it."""
        _, lease = self._keys(conversation_id)
        args: list[str | int] = [owner, max(1, int(ttl * 1000))]
        got = await guarded(lambda: self._renew(keys=[lease], args=args), "renew a lease")
        return bool(got)

    async def release(self, conversation_id: str, owner: str) -> None:
        """Drop the lease if ``owner`` holds it."""
        _, lease = self._keys(conversation_id)
        await guarded(lambda: self._release(keys=[lease], args=[owner]), "release a lease")

    async def commit(self, conversation_id: str, state: str, version: int, owner: str) -> int:
        """Write ``state`` as version ``version + 1`` if nothing changed since ``version``."""
        keys = list(self._keys(conversation_id))
        args: list[str | int] = [state, version, owner]
        new_version = int(
            await guarded(lambda: self._commit(keys=keys, args=args), "commit a conversation")
        )
        if new_version < 0:
            raise ConversationConflictError(
                f"conversation {conversation_id!r} changed since this turn began"
            )
        return new_version

    async def aclose(self) -> None:
        """Close the connection pool; idempotent."""
        if not self._closed:
            self._closed = True
            await self._redis.aclose()
