"""Fan-out: many turns on forks of one conversation, at most ``concurrency`` at once.

A fixed pool of worker tasks (one per allowed slot, never one per prompt) takes prompts in
input order. Each *attempt* of a turn holds a slot of an ``AdaptiveLimiter``: a turn whose
attempt was throttled gives its slot back while it waits to retry, so backoff never pins
capacity. The limiter is AIMD: a throttle halves the limit, and cuts it further to the number
of attempts actually streaming (those Bedrock admitted), once per round of attempts so a burst
of 429s from one round counts once; it also pauses new starts. Each completed turn adds
``1 / limit`` back, so the limit climbs back to ``concurrency`` as Bedrock recovers.

The effective ``concurrency`` never exceeds the client's connection pool: turns beyond it
would only queue inside aiohttp, with their first-token deadline running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ._errors import ThrottlingError
from ._events import Retrying, StreamEvent, TurnCompleted, TurnFailed
from ._output import OutputSpec
from ._retry import RetryPolicy
from ._validate import Prompt, user_message

if TYPE_CHECKING:
    from types import TracebackType

    from ._conversation import AsyncConversation
    from ._models import Message, Reply

__all__ = ["AdaptiveLimiter", "fan_out", "fan_out_stream"]

log = logging.getLogger("aiostream_chat")
Emit = Callable[[StreamEvent], None]
# Producer tasks of fan_out_stream iterators, kept alive until they finish (asyncio only keeps
# weak references to tasks, and an abandoned iterator must still get to close its streams).
_producers: set[asyncio.Task[None]] = set()


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


def _prepare(prompts: Iterable[Prompt], concurrency: int) -> list[Message]:
    """The prompts as user messages: bad input fails here, before any network I/O."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise TypeError("concurrency must be an int")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    if isinstance(prompts, str | bytes) or not isinstance(prompts, Iterable):
        raise TypeError("prompts must be an iterable of prompts, not a single prompt")
    return [user_message(prompt) for prompt in prompts]


def _pause_policy(retry: RetryPolicy) -> Callable[[int], float]:
    """Pause new starts like the conversation's backoff, without jitter (no_backoff: none)."""
    steady = RetryPolicy(initial_delay=retry.initial_delay, max_delay=retry.max_delay, jitter=False)
    return steady.delay


async def _limiter(base: AsyncConversation, concurrency: int) -> AdaptiveLimiter:
    """The fan-out's limiter, its ceiling clamped to the client's connection pool."""
    limit = concurrency
    try:
        client = await base._clients.get()
    except Exception:  # each turn then fails with this error, mapped to our tree
        client = None
    config = getattr(getattr(client, "meta", None), "config", None)
    pool = getattr(config, "max_pool_connections", 0)
    if isinstance(pool, int) and 0 < pool < concurrency:
        log.warning(
            "fan-out concurrency %d exceeds the client's connection pool of %d; running at most "
            "%d turns at once (raise max_connections, or max_pool_connections of your client)",
            concurrency,
            pool,
            pool,
            extra={"model_id": base.model_id, "request_id": None},
        )
        limit = pool
    return AdaptiveLimiter(limit, _pause_policy(base._retry))


async def _run_turn(
    base: AsyncConversation,
    prompt: Message,
    limiter: AdaptiveLimiter,
    epoch: int,
    emit: Emit | None,
) -> Reply:
    """One turn on a fork of ``base``, holding a limiter slot (already acquired) per attempt."""
    held, admitted = True, False
    try:
        async with base.fork().stream(prompt, **base._turn_options) as stream:
            async for event in stream.events():
                if emit is not None:
                    emit(event)
                if type(event) is not Retrying:
                    if not admitted:
                        admitted = True
                        limiter.admitted()
                elif isinstance(event.error, ThrottlingError):
                    # Wait for the retry without a slot: backoff must not pin capacity.
                    limiter.throttled(epoch)
                    held = False
                    limiter.release(admitted)
                    admitted = False
                    epoch = await limiter.acquire(retry=True)
                    held = True
            reply = await stream.get_reply()
        limiter.succeeded()
        return reply
    except ThrottlingError:
        limiter.throttled(epoch)
        raise
    finally:
        if held:
            limiter.release(admitted)


def _no_emit(index: int) -> None:
    return None


async def _work(
    base: AsyncConversation,
    jobs: Iterator[tuple[int, Message]],
    limiter: AdaptiveLimiter,
    done: Callable[[int, Reply | Exception], bool],
    emit: Callable[[int], Emit | None],
) -> None:
    """A worker: take the next prompt once a slot is free, until none are left or ``done``."""
    while True:
        epoch = await limiter.acquire()
        job = next(jobs, None)
        if job is None:
            limiter.release()
            return
        index, prompt = job
        outcome: Reply | Exception
        try:
            outcome = await _run_turn(base, prompt, limiter, epoch, emit(index))
        except Exception as exc:
            outcome = exc
        if done(index, outcome):
            return


async def fan_out(
    conv: AsyncConversation,
    prompts: Iterable[Prompt],
    *,
    concurrency: int = 16,
    return_exceptions: bool = False,
    output: Any = None,
) -> list[Reply | BaseException]:
    """Answer each prompt on its own fork of the current history; results in input order."""
    items = _prepare(prompts, concurrency)
    base = conv.fork()  # the history as it is now, whatever happens to ``conv`` meanwhile
    if output is not None:
        OutputSpec(output, model_id=conv.model_id)  # a bad output type raises here, before I/O
        base._turn_options = {"output": output}
    if not items:
        return []
    limiter = await _limiter(base, concurrency)
    results: list[Reply | BaseException | None] = [None] * len(items)
    failure: list[Exception] = []
    jobs = iter(enumerate(items))
    workers: list[asyncio.Task[None]] = []

    def done(index: int, outcome: Reply | Exception) -> bool:
        if isinstance(outcome, Exception) and not return_exceptions:
            if not failure:
                failure.append(outcome)
                current = asyncio.current_task()
                for worker in workers:  # the first failure cancels the rest
                    if worker is not current:
                        worker.cancel()
            return True
        results[index] = outcome
        return False

    async with asyncio.TaskGroup() as group:
        for _ in range(min(limiter.max_limit, len(items))):
            workers.append(group.create_task(_work(base, jobs, limiter, done, _no_emit)))
    if failure:
        raise failure[0]
    return results  # type: ignore[return-value]  # every slot is filled when nothing failed


async def _produce(
    base: AsyncConversation,
    items: list[Message],
    concurrency: int,
    put: Callable[[tuple[int, StreamEvent] | None], None],
) -> None:
    """Run the fan-out, passing each turn's events, then its outcome, to ``put``."""

    def done(index: int, outcome: Reply | Exception) -> bool:
        event = TurnFailed(error=outcome) if isinstance(outcome, Exception) else None
        put((index, event or TurnCompleted(reply=outcome)))  # type: ignore[arg-type]
        return False

    def emit(index: int) -> Emit:
        return lambda event: put((index, event))

    try:
        limiter = await _limiter(base, concurrency)
        jobs = iter(enumerate(items))
        async with asyncio.TaskGroup() as group:
            for _ in range(min(limiter.max_limit, len(items))):
                group.create_task(_work(base, jobs, limiter, done, emit))
    finally:
        put(None)


class FanOutStream:
    """The async iterator behind ``fan_out_stream``; leaving it early cancels every turn.

    Also an async context manager (and ``aclose()`` works with ``contextlib.aclosing``): use
    one when you keep a reference to the iterator, since only dropping it or closing it stops
    the turns still running. The producer task holds no reference to this object, so a
    ``break`` drops it at once.
    """

    def __init__(self, conv: AsyncConversation, items: list[Message], concurrency: int) -> None:
        self._base = conv.fork()  # the history as it is now
        self._items = items
        self._concurrency = concurrency
        # Unbounded: a worker never waits on a slow consumer while holding a connection.
        self._queue: asyncio.Queue[tuple[int, StreamEvent] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __aiter__(self) -> FanOutStream:
        return self

    async def __aenter__(self) -> FanOutStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def __anext__(self) -> tuple[int, StreamEvent]:
        if self._closed:
            raise StopAsyncIteration
        if self._task is None:
            work = _produce(self._base, self._items, self._concurrency, self._queue.put_nowait)
            self._task = task = asyncio.create_task(work)
            _producers.add(task)
            task.add_done_callback(_producers.discard)
        item = await self._queue.get()
        if item is None:
            self._closed = True
            await self._task  # re-raises anything unexpected from the workers
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Cancel every turn still running and wait until each of their streams is closed."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    def __del__(self) -> None:
        task = self._task
        if task is not None and not task.done():
            # Dropped unfinished (``break``): cancelling closes each open stream as the loop
            # runs the workers' cleanup, within an iteration or two.
            task.cancel()


def fan_out_stream(
    conv: AsyncConversation, prompts: Iterable[Prompt], *, concurrency: int = 16
) -> FanOutStream:
    """``(prompt_index, event)`` pairs as they arrive; each index ends with a Turn* event."""
    return FanOutStream(conv, _prepare(prompts, concurrency), concurrency)
