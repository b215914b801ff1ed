"""Limits on Bedrock requests: attempts in flight (AIMD), requests and tokens per minute.

``Limiter.local(...)`` holds its state in this process; ``Limiter.redis(url, name, ...)`` in
Redis, shared by every process that uses ``name`` (see ``_redis_limiter``). A stream takes a
``Permit`` before each request (attempt) and releases it with the attempt's outcome:

- ``max_in_flight``: attempts holding a permit at once. Under throttling it is AIMD: a throttled
  attempt halves the limit (and cuts it to the attempts Bedrock admitted), once per round of
  attempts, and pauses new starts briefly; each completed attempt adds ``1 / limit`` back, up
  to ``max_in_flight``. Without ``max_in_flight`` there is no in-flight limit to adapt.
- ``requests_per_minute``: a token bucket of that size refilled continuously; each attempt
  takes one.
- ``tokens_per_minute``: a bucket refilled the same way; an attempt starts while it is above
  zero and the usage (total tokens) of each completed attempt is taken out of it afterwards.

``AdaptiveLimiter`` is the in-process AIMD engine (also the fan-out's own limiter).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol

from ._redis_limiter import RedisLimiter
from ._retry import RetryPolicy

__all__ = ["AdaptiveLimiter", "Limiter", "Outcome", "Permit", "pause_policy"]

Outcome = Literal["completed", "throttled", "failed"]


class AdaptiveLimiter:
    """Additive-increase, multiplicative-decrease limit on attempts in flight (FIFO waiters).

    ``pause(n)`` gives the seconds new starts wait after the ``n``-th decrease in a row.
    """

    def __init__(self, limit: int, pause: Callable[[int], float] = lambda n: 0.0) -> None:
        self.max_limit = limit
        self.limit = float(limit)
        self.in_flight = 0
        self.streaming = 0  # attempts in flight that Bedrock admitted (their first event came)
        self.throttles = 0  # throttled attempts reported
        self.decreases = 0  # times the limit was halved
        self._pause = pause
        self._epoch = 0  # bumped at each decrease; attempts carry the epoch they started in
        self._streak = 0  # decreases since the last success
        self._resume_at = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def _free(self) -> bool:
        return self.in_flight < max(1, int(self.limit)) and time.monotonic() >= self._resume_at

    async def acquire(self, retry: bool = False) -> int:
        """Wait for a slot; returns the epoch to pass to ``throttled()`` for this attempt.

        A ``retry`` goes to the head of the queue: it has waited longest, and starting it at
        the next free slot (right after a decrease) is when it is least likely to be throttled
        again.
        """
        if not self._waiters and self._free():
            self.in_flight += 1
            return self._epoch
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if retry:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        self._wake()
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # granted, then cancelled: give back
                self.release()
            raise
        return self._epoch

    def admitted(self) -> None:
        """The attempt holding a slot got its first event: Bedrock let it through."""
        self.streaming += 1

    def release(self, admitted: bool = False) -> None:
        self.in_flight -= 1
        self.streaming -= admitted
        self._wake()

    def succeeded(self) -> None:
        self._streak = 0
        self.limit = min(float(self.max_limit), self.limit + 1.0 / self.limit)
        self._wake()

    def throttled(self, epoch: int) -> None:
        """An attempt started in ``epoch`` was throttled."""
        self.throttles += 1
        if epoch < self._epoch:
            return  # started before the last decrease, which already accounted for it
        self._epoch += 1
        self._streak += 1
        self.decreases += 1
        self.limit = max(1.0, min(self.limit / 2, float(self.streaming)))
        self._resume_at = max(self._resume_at, time.monotonic() + self._pause(self._streak))

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self._free():
            waiter = waiters.popleft()
            if not waiter.done():  # skip waiters cancelled while queued
                self.in_flight += 1
                waiter.set_result(None)
        if waiters and self._timer is None and time.monotonic() < self._resume_at:
            loop = asyncio.get_running_loop()
            delay = self._resume_at - time.monotonic()
            self._timer = loop.call_later(delay, self._resume)

    def _resume(self) -> None:
        self._timer = None
        self._wake()


def pause_policy(retry: RetryPolicy) -> Callable[[int], float]:
    """Pause new starts like ``retry``'s backoff, without jitter (no_backoff: none)."""
    steady = RetryPolicy(initial_delay=retry.initial_delay, max_delay=retry.max_delay, jitter=False)
    return steady.delay


def _check_limit(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


class Permit(Protocol):
    """One attempt's right to send a request; release it exactly once with the outcome."""

    def admitted(self) -> None:
        """The attempt's first event arrived: Bedrock let it through."""

    def release(self, outcome: Outcome, tokens: int = 0) -> None:
        """Give the permit back; ``tokens`` is the attempt's total token usage."""


class Limiter:
    """Limits on requests to Bedrock, local to this process or shared through Redis."""

    max_in_flight: int | None
    requests_per_minute: int | None
    tokens_per_minute: int | None

    def __init__(
        self,
        *,
        max_in_flight: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> None:
        self.max_in_flight = _check_limit("max_in_flight", max_in_flight)
        self.requests_per_minute = _check_limit("requests_per_minute", requests_per_minute)
        self.tokens_per_minute = _check_limit("tokens_per_minute", tokens_per_minute)

    @classmethod
    def local(
        cls,
        *,
        max_in_flight: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> Limiter:
        """A limiter for the conversations of this process."""
        return LocalLimiter(
            max_in_flight=max_in_flight,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
        )

    @classmethod
    def redis(
        cls,
        url: str,
        name: str,
        *,
        max_in_flight: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> Limiter:
        """A limiter shared through Redis by every process that uses ``name``."""
        limiter = SharedLimiter(
            max_in_flight=max_in_flight,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
        )
        limiter.engine = RedisLimiter(
            url,
            name,
            max_in_flight=limiter.max_in_flight,
            requests_per_minute=limiter.requests_per_minute,
            tokens_per_minute=limiter.tokens_per_minute,
        )
        return limiter

    async def acquire(self, *, retry: bool = False) -> Permit:
        """Wait until a request may start; ``retry`` asks to go first (it waited longest)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release resources (connections, background tasks); idempotent."""

    async def __aenter__(self) -> Limiter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(max_in_flight={self.max_in_flight}, "
            f"requests_per_minute={self.requests_per_minute}, "
            f"tokens_per_minute={self.tokens_per_minute})"
        )


class Bucket:
    """A token bucket of ``per_minute`` tokens, refilled continuously; may go negative."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self._rate = per_minute / 60.0
        self._stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self._rate)
        self._stamp = now

    def wait(self, need: float) -> float:
        """Seconds until the level reaches ``need`` (0 if it has)."""
        self._refill()
        return 0.0 if self.level >= need else (need - self.level) / self._rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount


class _LocalPermit:
    def __init__(self, limiter: LocalLimiter, epoch: int) -> None:
        self._limiter = limiter
        self._epoch = epoch
        self._admitted = False
        self._released = False

    def admitted(self) -> None:
        engine = self._limiter.engine
        if engine is not None and not self._admitted and not self._released:
            self._admitted = True
            engine.admitted()

    def release(self, outcome: Outcome, tokens: int = 0) -> None:
        if self._released:
            return
        self._released = True
        limiter = self._limiter
        if limiter.tokens is not None and tokens > 0:
            limiter.tokens.take(tokens)
        engine = limiter.engine
        if engine is None:
            return
        if outcome == "throttled":
            engine.throttled(self._epoch)
        elif outcome == "completed":
            engine.succeeded()
        engine.release(self._admitted)


class LocalLimiter(Limiter):
    """``Limiter.local``: the AIMD engine plus request and token buckets, in this process."""

    def __init__(
        self,
        *,
        max_in_flight: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> None:
        super().__init__(
            max_in_flight=max_in_flight,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
        )
        self.engine = (
            None
            if max_in_flight is None
            else AdaptiveLimiter(max_in_flight, pause_policy(RetryPolicy()))
        )
        self.requests = None if requests_per_minute is None else Bucket(requests_per_minute)
        self.tokens = None if tokens_per_minute is None else Bucket(tokens_per_minute)
        self._rate_gate = asyncio.Lock()  # FIFO through the buckets

    async def acquire(self, *, retry: bool = False) -> Permit:
        if self.requests is not None or self.tokens is not None:
            async with self._rate_gate:
                await self._wait_for_rate()
        epoch = 0 if self.engine is None else await self.engine.acquire(retry=retry)
        return _LocalPermit(self, epoch)

    async def _wait_for_rate(self) -> None:
        while True:
            delay = max(
                0.0 if self.requests is None else self.requests.wait(1.0),
                0.0 if self.tokens is None else self.tokens.wait(1e-9),
            )
            if delay <= 0:
                break
            await asyncio.sleep(delay)
        if self.requests is not None:
            self.requests.take(1.0)


class SharedLimiter(Limiter):
    """``Limiter.redis``: the checked limits in front of the Redis engine."""

    engine: RedisLimiter

    async def acquire(self, *, retry: bool = False) -> Permit:
        return await self.engine.acquire(retry=retry)

    async def aclose(self) -> None:
        await self.engine.aclose()
