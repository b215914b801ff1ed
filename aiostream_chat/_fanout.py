"""Fan-out: many turns on forks of one conversation, at most ``concurrency`` at once.

An AIMD limiter adapts to throttling: each ``ThrottlingError`` (retried or final) halves the
number of turns allowed in flight and pauses new starts briefly; each completed turn adds
back a fraction, so the limit climbs back to ``concurrency`` as Bedrock recovers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import anyio

from ._errors import ThrottlingError
from ._events import Retrying, StreamEvent, TurnCompleted, TurnFailed

if TYPE_CHECKING:
    from ._conversation import AsyncConversation, Prompt
    from ._models import Reply

__all__ = ["AdaptiveLimiter", "fan_out", "fan_out_stream"]

_PAUSE = 0.25  # seconds new starts wait after a throttle


class AdaptiveLimiter:
    """Additive-increase, multiplicative-decrease limit on turns in flight."""

    def __init__(self, limit: int) -> None:
        self.max_limit = limit
        self.limit = float(limit)
        self.in_flight = 0
        self.throttles = 0
        self._resume_at = 0.0
        self._changed = asyncio.Event()

    async def acquire(self) -> None:
        while True:
            wait = self._resume_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif self.in_flight < max(1, int(self.limit)):
                self.in_flight += 1
                return
            else:
                self._changed.clear()
                await self._changed.wait()

    def release(self) -> None:
        self.in_flight -= 1
        self._changed.set()

    def succeeded(self) -> None:
        self.limit = min(float(self.max_limit), self.limit + 1.0 / max(self.limit, 1.0))
        self._changed.set()

    def throttled(self) -> None:
        self.throttles += 1
        self.limit = max(1.0, self.limit / 2)
        self._resume_at = time.monotonic() + _PAUSE


def _prepare(conv: AsyncConversation, prompts: Iterable[Prompt], concurrency: int) -> list[Any]:
    from ._conversation import _user_message

    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise TypeError("concurrency must be an int")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    if isinstance(prompts, str | bytes):
        raise TypeError("prompts must be an iterable of prompts, not a single str")
    items = list(prompts)
    for prompt in items:
        _user_message(prompt)  # reject bad input before any network I/O
    return items


async def _run_turn(
    conv: AsyncConversation,
    prompt: Prompt,
    limiter: AdaptiveLimiter,
    emit: Any = None,
) -> Reply:
    """One turn on a fork, reporting throttles to the limiter and events to ``emit``."""
    await limiter.acquire()
    try:
        stream = conv.fork().stream(prompt)
        async with stream:
            async for event in stream.events():
                if isinstance(event, Retrying) and isinstance(event.error, ThrottlingError):
                    limiter.throttled()
                if emit is not None:
                    await emit(event)
            reply = await stream.get_reply()
        limiter.succeeded()
        return reply
    except ThrottlingError:
        limiter.throttled()
        raise
    finally:
        limiter.release()


async def fan_out(
    conv: AsyncConversation,
    prompts: Iterable[Prompt],
    *,
    concurrency: int = 16,
    return_exceptions: bool = False,
) -> list[Reply | BaseException]:
    items = _prepare(conv, prompts, concurrency)
    results: list[Reply | BaseException | None] = [None] * len(items)
    limiter = AdaptiveLimiter(concurrency)
    first_error: list[BaseException] = []

    async def worker(index: int, prompt: Prompt, group: anyio.abc.TaskGroup) -> None:
        try:
            results[index] = await _run_turn(conv, prompt, limiter)
        except Exception as exc:
            if return_exceptions:
                results[index] = exc
                return
            if not first_error:
                first_error.append(exc)
                group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for index, prompt in enumerate(items):
            group.start_soon(worker, index, prompt, group)
    if first_error:
        raise first_error[0]
    return [r for r in results if r is not None]


class _FanOutStream:
    """The async iterator behind ``fan_out_stream``; leaving it early cancels every turn."""

    def __init__(self, conv: AsyncConversation, items: list[Any], concurrency: int) -> None:
        self._conv = conv
        self._items = items
        self._limiter = AdaptiveLimiter(concurrency)
        # Unbounded: a worker never blocks on a slow consumer while holding a connection.
        self._queue: asyncio.Queue[tuple[int, StreamEvent] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def __aiter__(self) -> _FanOutStream:
        return self

    async def _produce(self) -> None:
        async def worker(index: int, prompt: Prompt) -> None:
            async def emit(event: StreamEvent) -> None:
                await self._queue.put((index, event))

            try:
                reply = await _run_turn(self._conv, prompt, self._limiter, emit)
            except Exception as exc:
                await self._queue.put((index, TurnFailed(error=exc)))
            else:
                await self._queue.put((index, TurnCompleted(reply=reply)))

        try:
            async with anyio.create_task_group() as group:
                for index, prompt in enumerate(self._items):
                    group.start_soon(worker, index, prompt)
        finally:
            self._queue.put_nowait(None)

    async def __anext__(self) -> tuple[int, StreamEvent]:
        if self._task is None:
            self._task = asyncio.create_task(self._produce())
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # stay exhausted on further calls
            await self._finish()
            raise StopAsyncIteration
        return item

    async def _finish(self) -> None:
        task = self._task
        if task is not None:
            await task  # re-raises anything unexpected from the workers

    async def aclose(self) -> None:
        """Cancel every turn still running and wait until each stream is closed."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def __del__(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()  # cancellation closes each open stream synchronously


def fan_out_stream(
    conv: AsyncConversation, prompts: Iterable[Prompt], *, concurrency: int = 16
) -> AsyncIterator[tuple[int, StreamEvent]]:
    return _FanOutStream(conv, _prepare(conv, prompts, concurrency), concurrency)
