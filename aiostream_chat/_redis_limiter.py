"""``Limiter.redis``: the limiter's state in Redis, shared by every process using one name.

Keys (one hash tag, so it works on a cluster): ``{prefix}:{<name>}:state`` (AIMD limit, epoch,
streak, pause end, bucket levels and their time stamp), ``...:slots`` and ``...:admitted``
(sorted sets of permit ids scored by expiry). Each check-then-write is one Lua script on the
server's clock. A slot expires unless its process renews it, so a crashed process frees its
slots after ``slot_ttl`` seconds.

Waiting: in each process one waiter at a time asks Redis; the others queue in the process, a
retry ahead of first attempts (it has waited longest, as with ``Limiter.local``). While the
limit is reached the asking waiter blocks on a wake-up list that every release pushes to
(``BLPOP``, at most ``_POLL`` seconds, so a lost wake-up costs little); a bucket or a pause
names its exact wait. Releases and
reports run in the background (``Permit.release`` is synchronous); ``aclose()`` waits for
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Coroutine
from typing import Any

from ._redis_store import connect, guarded
from ._retry import RetryPolicy

__all__ = ["RedisLimiter"]

log = logging.getLogger("aiostream_chat")

_POLL = 0.05  # seconds a waiter blocks for a wake-up before asking again

# The refill both scripts share: ARGV rpm and tpm per minute, `now` in ms.
_REFILL = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local s = redis.call('HMGET', KEYS[1], 'limit', 'epoch', 'resume', 'rl', 'tl', 'stamp', 'streak')
local rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4])
local rl, tl = tonumber(s[4]) or rpm, tonumber(s[5]) or tpm
local dt = math.max(0, now - (tonumber(s[6]) or now))
if rpm > 0 then rl = math.min(rpm, rl + dt * rpm / 60000) end
if tpm > 0 then tl = math.min(tpm, tl + dt * tpm / 60000) end
local maxf = tonumber(ARGV[2])
local limit = math.min(tonumber(s[1]) or maxf, maxf)
local epoch, resume, streak = tonumber(s[2]) or 0, tonumber(s[3]) or 0, tonumber(s[7]) or 0
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
"""

# ARGV: permit, max_in_flight (0: none), rpm (0), tpm (0), slot ttl ms.
# -> {1, epoch, 0} granted, or {0, epoch, ms to wait (-1: poll)}.
_ACQUIRE = (
    _REFILL
    + """
local wait = 0
if now < resume then wait = resume - now end
if rpm > 0 and rl < 1 then wait = math.max(wait, math.ceil((1 - rl) * 60000 / rpm)) end
if tpm > 0 and tl <= 0 then wait = math.max(wait, math.ceil((1 - tl) * 60000 / tpm)) end
local full = maxf > 0 and redis.call('ZCARD', KEYS[2]) >= math.max(1, math.floor(limit))
if wait == 0 and not full then
  if rpm > 0 then rl = rl - 1 end
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[1])
end
redis.call('HSET', KEYS[1], 'limit', limit, 'rl', rl, 'tl', tl, 'stamp', now)
if wait > 0 then return {0, epoch, wait} end
if full then return {0, epoch, -1} end
return {1, epoch, 0}
"""
)

# ARGV: permit, max, rpm, tpm, outcome, epoch, tokens, pause base ms, pause cap ms.
_RELEASE = (
    _REFILL
    + """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
tl = tl - tonumber(ARGV[7])
if maxf > 0 and ARGV[5] == 'completed' then
  limit = math.min(maxf, limit + 1 / limit)
  streak = 0
elseif maxf > 0 and ARGV[5] == 'throttled' and tonumber(ARGV[6]) == epoch then
  epoch = epoch + 1
  streak = streak + 1
  limit = math.max(1, math.min(limit / 2, redis.call('ZCARD', KEYS[3])))
  local pause = math.min(tonumber(ARGV[9]), tonumber(ARGV[8]) * 2 ^ (streak - 1))
  resume = math.max(resume, now + pause)
end
redis.call('HSET', KEYS[1], 'limit', limit, 'epoch', epoch, 'resume', resume, 'streak', streak,
  'rl', rl, 'tl', tl, 'stamp', now)
redis.call('RPUSH', KEYS[4], 1)
redis.call('LTRIM', KEYS[4], -64, -1)
redis.call('PEXPIRE', KEYS[4], 60000)
return 1
"""
)

# KEYS: slots, admitted. ARGV: ttl ms, "renew" (slots still held) or "admit" (one permit), ids.
_TOUCH = """
local t = redis.call('TIME')
local expiry = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
for i = 3, #ARGV do
  if ARGV[2] == 'renew' then
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
    redis.call('ZADD', KEYS[2], 'XX', expiry, ARGV[i])
  elseif redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[2], expiry, ARGV[i])
  end
end
return 1
"""


class _RedisPermit:
    def __init__(self, limiter: RedisLimiter, permit_id: str, epoch: int) -> None:
        self._limiter = limiter
        self.id = permit_id
        self.epoch = epoch
        self.admit: asyncio.Task[Any] | None = None  # the admitted report, awaited by release
        self._released = False

    def admitted(self) -> None:
        if self.admit is None and not self._released:
            self.admit = self._limiter._report(self._limiter._admit(self.id))

    def release(self, outcome: str, tokens: int = 0) -> None:
        if not self._released:
            self._released = True
            self._limiter._held.pop(self.id, None)
            self._limiter._report(self._limiter._release(self, outcome, tokens))


class _Gate:
    """Who asks Redis next in this process: one at a time, queued in order, retries first."""

    def __init__(self) -> None:
        self._held = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, first: bool) -> None:
        if not self._held and not self._waiters:
            self._held = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # handed the gate, then cancelled
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # handed over: the gate stays held
                return
        self._held = False


class RedisLimiter:
    """The engine behind ``Limiter.redis``: limits whose state lives in Redis under ``name``.

    Arguments are checked by ``Limiter``; this module stays below ``_limiter`` (no cycle).
    """

    def __init__(
        self,
        url: str,
        name: str,
        *,
        max_in_flight: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        prefix: str = "aiostream_chat",
        slot_ttl: float = 30.0,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        if not name or "{" in name or "}" in name:
            raise ValueError("name must be non-empty and without braces")
        self.name = name
        self._redis = connect(url)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release_script = self._redis.register_script(_RELEASE)
        self._touch = self._redis.register_script(_TOUCH)
        base = f"{prefix}:limiter:{{{name}}}"
        self._keys = [f"{base}:state", f"{base}:slots", f"{base}:admitted", f"{base}:wake"]
        self._slot_ms = int(slot_ttl * 1000)
        self._gate = _Gate()  # one poller per process; the others queue here
        self._held: dict[str, _RedisPermit] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._closed = False

    def _args(self) -> list[str | int]:
        return [self.max_in_flight or 0, self.requests_per_minute or 0, self.tokens_per_minute or 0]

    async def acquire(self, *, retry: bool = False) -> _RedisPermit:
        """Wait for a slot and the rate buckets in Redis; a ``retry`` goes ahead of the first
        attempts queued in this process (not of other processes' waiters)."""
        if self._closed:
            raise RuntimeError("the limiter is closed")
        permit_id = uuid.uuid4().hex
        args = [permit_id, *self._args(), self._slot_ms]
        await self._gate.acquire(first=retry)
        try:
            while True:
                granted, epoch, wait = await guarded(
                    lambda: self._acquire(keys=self._keys, args=args), "acquire a limiter slot"
                )
                if granted:
                    break
                if wait > 0:
                    await asyncio.sleep(wait / 1000)
                else:  # full: wait for a release to push a wake-up token (or poll again soon)
                    await guarded(
                        lambda: self._redis.blpop([self._keys[3]], timeout=_POLL),
                        "wait for a limiter slot",
                    )
        finally:
            self._gate.release()
        permit = _RedisPermit(self, permit_id, int(epoch))
        self._held[permit_id] = permit
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat())
        return permit

    async def _admit(self, permit_id: str) -> None:
        args: list[str | int] = [self._slot_ms, "admit", permit_id]
        await guarded(lambda: self._touch(keys=self._keys[1:], args=args), "report a slot")

    async def _release(self, permit: _RedisPermit, outcome: str, tokens: int) -> None:
        if permit.admit is not None:
            await asyncio.wait([permit.admit])  # in order: admitted, then released
        policy = RetryPolicy()
        pause = [int(policy.delay(1) * 1000), int(policy.max_delay * 1000)]
        args = [permit.id, *self._args(), outcome, permit.epoch, max(0, tokens), *pause]
        await guarded(
            lambda: self._release_script(keys=self._keys, args=args), "release a limiter slot"
        )

    def _report(self, call: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a release or report in the background; failures are logged (slots expire)."""
        task = asyncio.ensure_future(call)
        self._pending.add(task)
        task.add_done_callback(self._reported)
        return task

    def _reported(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning(
                "limiter %r: a report to Redis failed (%s); its slot will expire", self.name, exc
            )

    async def _beat(self) -> None:
        """Keep this process's slots alive while it holds any."""
        while self._held:
            await asyncio.sleep(self._slot_ms / 3000)
            ids = list(self._held)
            if ids:
                try:
                    await self._touch(keys=self._keys[1:], args=[self._slot_ms, "renew", *ids])
                except Exception as exc:  # Redis away: the slots may lapse, which only frees them
                    log.warning("limiter %r: could not renew slots (%s)", self.name, exc)

    async def aclose(self) -> None:
        """Wait for pending releases, stop the heartbeat, close the connection pool."""
        if self._closed:
            return
        self._closed = True
        if self._pending:
            await asyncio.wait(list(self._pending))
        beat = self._heartbeat
        if beat is not None and not beat.done():
            beat.cancel()
            await asyncio.wait([beat])
        await self._redis.aclose()
