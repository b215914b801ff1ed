"""The stream's deadline timer (``_deadline.Watchdog``): one timer per stream, re-armed lazily.

The unit tests drive the watchdog on a bare event loop (it is pure asyncio); the stream tests
go through the emulator and pin what the lazy timer must never change: a steady stream longer
than its idle timeout completes, a stall still fails on time, and a turn arms a handful of
timers however many reads it makes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aioboto3
import pytest

from aiostream_chat import AsyncConversation, IdleTimeoutError, RetryPolicy
from aiostream_chat import Timeouts as T
from aiostream_chat._deadline import Watchdog
from aiostream_chat.testing import FakeBedrock, Fault, reply

from .conftest import MakeConv


async def _guarded(dog: Watchdog, awaitable: Any, deadline: float | None) -> tuple[Any, Any]:
    """(result or exception, why) of one await under the watchdog, as the stream does it."""
    dog.enter(deadline)
    try:
        result = await awaitable
    except BaseException as exc:  # the test inspects whatever came out
        return exc, dog.leave()
    return result, dog.leave()


async def test_deadline_interrupts_the_await_and_leaves_the_task_uncancelled() -> None:
    """An await past its deadline is interrupted; ``leave()`` says "deadline" and the task's
    cancellation count is back to zero (the task can go on awaiting)."""
    dog = Watchdog()
    start = time.monotonic()
    outcome, why = await _guarded(dog, asyncio.sleep(10), time.monotonic() + 0.05)
    assert isinstance(outcome, asyncio.CancelledError) and why == "deadline"
    assert 0.05 <= time.monotonic() - start < 5
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # not cancelled any more
    dog.close()


async def test_a_deadline_that_moved_later_is_re_armed_not_fired() -> None:
    """The timer armed for an early deadline fires while the current await has a later one:
    it re-arms for the later one instead of interrupting (the idle deadline moves so)."""
    dog = Watchdog()
    first, why = await _guarded(dog, asyncio.sleep(0.01, "a"), time.monotonic() + 0.05)
    assert (first, why) == ("a", None)
    # The timer is still armed for +0.05 s; this await's deadline is +0.3 s.
    second, why = await _guarded(dog, asyncio.sleep(0.15, "b"), time.monotonic() + 0.3)
    assert (second, why) == ("b", None)
    dog.close()


async def test_someone_elses_cancellation_is_left_alone() -> None:
    """A task cancelled by its owner during a guarded await sees CancelledError; the watchdog
    claims nothing, even when its own deadline passes at the same moment."""
    dog = Watchdog()

    async def reader(deadline: float) -> tuple[Any, Any]:
        return await _guarded(dog, asyncio.sleep(10), deadline)

    task = asyncio.create_task(reader(time.monotonic() + 10))
    await asyncio.sleep(0.02)
    task.cancel()
    outcome, why = await task
    assert isinstance(outcome, asyncio.CancelledError) and why is None

    # The deadline is already due: the timer and the owner's cancel land in the same loop pass.
    task = asyncio.create_task(reader(time.monotonic() - 1))
    await asyncio.sleep(0)  # the reader is now awaiting, its timer due
    task.cancel()
    outcome, why = await task
    assert isinstance(outcome, asyncio.CancelledError) and why is None
    dog.close()


async def test_interrupt_from_another_task_says_closed() -> None:
    """``interrupt()`` (``aclose()`` from another task) ends the await with "closed"; between
    awaits it is a no-op."""
    dog = Watchdog()
    dog.interrupt()  # nothing awaiting: nothing happens
    task = asyncio.create_task(_guarded(dog, asyncio.sleep(10), None))
    await asyncio.sleep(0.02)
    dog.interrupt()
    outcome, why = await task
    assert isinstance(outcome, asyncio.CancelledError) and why == "closed"


async def test_an_awaitable_that_swallows_the_cancellation_still_times_out() -> None:
    """Some libraries catch CancelledError and return normally: ``leave()`` still reports the
    deadline, and the cancellation it requested is undone."""
    dog = Watchdog()

    async def stubborn() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    outcome, why = await _guarded(dog, stubborn(), time.monotonic() + 0.05)
    assert (outcome, why) == ("swallowed", "deadline")
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_close_cancels_the_armed_timer() -> None:
    """After ``close()`` no timer of the watchdog is left on the loop (a finished stream holds
    nothing there)."""
    dog = Watchdog()
    await _guarded(dog, asyncio.sleep(0), time.monotonic() + 60)
    loop: Any = asyncio.get_running_loop()

    def armed() -> list[Any]:
        return [h for h in loop._scheduled if not h.cancelled() and h._callback == dog._fire]

    assert len(armed()) == 1
    dog.close()
    assert armed() == []


# -- through the stack ------------------------------------------------------------------------


async def test_steady_stream_longer_than_idle_completes(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Deltas 0.1 s apart for about 1 s under idle=0.3: the timer armed at the first read
    fires mid-stream and must re-arm, never interrupt; the turn completes with all text."""
    conv = make_conv(timeouts=T(idle=0.3, first_token=5))
    chunks = [f"w{i} " for i in range(10)]
    fake_bedrock.enqueue(reply("".join(chunks), chunks=chunks, delay=0.1))
    start = time.monotonic()
    seen = [text async for text in conv.stream("question")]
    assert seen == chunks
    assert time.monotonic() - start >= 0.9  # longer than idle three times over


async def test_a_stall_after_a_steady_start_still_fails_on_time(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Five steady deltas, then a stall: IdleTimeoutError about `idle` after the last delta."""
    conv = make_conv(timeouts=T(idle=0.3), retry=RetryPolicy.none())
    chunks = [f"w{i} " for i in range(8)]
    script = reply("".join(chunks), chunks=chunks, delay=0.05, fault=Fault.stall(10, after=5))
    fake_bedrock.enqueue(script)
    stream = conv.stream("question")
    last = time.monotonic()
    with pytest.raises(IdleTimeoutError) as caught:
        async for _ in stream:
            last = time.monotonic()
    assert 0.3 <= time.monotonic() - last < 2.3
    assert caught.value.partial_text == "".join(chunks[:5])


async def test_a_turn_arms_a_few_timers_however_many_reads_it_makes(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 deltas arriving one by one (40+ reads under an idle deadline) arm the stream's timer
    at most a few times, not once per read: the cost this module exists to avoid."""
    arms: list[float] = []
    real_arm = Watchdog._arm

    def counting_arm(self: Watchdog, deadline: float) -> None:
        arms.append(deadline)
        real_arm(self, deadline)

    monkeypatch.setattr(Watchdog, "_arm", counting_arm)
    conv = make_conv(timeouts=T(idle=30, first_token=60))
    chunks = [f"w{i} " for i in range(40)]
    fake_bedrock.enqueue(reply("".join(chunks), chunks=chunks, delay=0.005))
    stream = conv.stream("question")
    seen = [text async for text in stream]
    assert seen == chunks and stream.status == "completed"
    assert 1 <= len(arms) <= 3, arms


def test_deadlines_on_uvloop(session: aioboto3.Session) -> None:
    """On uvloop (what uvicorn runs when it is installed; its clock is cached per loop pass):
    a steady stream longer than `idle` completes, and a stall fails about `idle` after the
    last delta."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> tuple[list[str], float, str]:
        async with FakeBedrock() as fake:
            conv = AsyncConversation(
                "m",
                session=session,
                endpoint_url=fake.endpoint_url,
                timeouts=T(idle=0.3),
                retry=RetryPolicy.none(),
            )
            async with conv:
                chunks = [f"w{i} " for i in range(8)]
                fake.enqueue(reply("".join(chunks), chunks=chunks, delay=0.1))
                steady = [text async for text in conv.stream("question")]
                stall = Fault.stall(10, after=3)
                fake.enqueue(reply("".join(chunks), chunks=chunks, delay=0.05, fault=stall))
                last = time.monotonic()
                with pytest.raises(IdleTimeoutError) as caught:
                    async for _ in conv.fork().stream("question"):
                        last = time.monotonic()
                return steady, time.monotonic() - last, caught.value.partial_text

    steady, waited, partial = uvloop.run(main())
    assert steady == [f"w{i} " for i in range(8)]
    assert 0.3 <= waited < 2.3
    assert partial == "w0 w1 w2 "
