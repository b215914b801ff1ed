"""Cancellation: break, task cancellation at every await point, aclose() from another task,
leaving ``async with`` early, a consumer's own exception and closing the conversation.

Each path must drop the HTTP connection at once (the emulator records the disconnect, cut
short), leave the stream ``cancelled``, free the conversation for its next turn and leave
history as it was. Timing bounds are generous: the machine may be busy.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator

import pytest

from aiostream_chat import (
    AsyncConversation,
    ChatStream,
    Message,
    Retrying,
    RetryPolicy,
    StreamClosedError,
    TextDelta,
)
from aiostream_chat.testing import FakeBedrock, Fault, ReceivedRequest, Script, reply

from .conftest import HISTORY, MakeConv

# A long, paced reply: the server is still writing when the consumer leaves.
LONG = [f"chunk{i} " for i in range(100)]
PACE = 0.02


def _long_reply() -> Script:
    return reply("".join(LONG), chunks=LONG, delay=PACE)


def _stalls_after_one() -> Script:
    """A reply that sends its first delta, then stalls far beyond any test's length."""
    return reply("one two", chunks=["one", " two"], fault=Fault.stall(30.0, after=1))


def _serve_signalling(fake: FakeBedrock, script: Script) -> asyncio.Event:
    """Answer the next request with `script`; the event is set when that request arrives."""
    arrived = asyncio.Event()

    def respond(request: ReceivedRequest) -> Script:
        arrived.set()
        return script

    fake.responder = respond
    return arrived


async def _arrival(event: asyncio.Event) -> None:
    async with asyncio.timeout(5):
        await event.wait()
    await asyncio.sleep(0.05)  # let the client settle into waiting for the headers


async def _assert_cut_short(fake: FakeBedrock, closed_at: float | None = None) -> None:
    """The emulator saw exactly one response cut short by the client, soon after `closed_at`."""
    (disconnect,) = await fake.assert_all_closed(1, timeout=1.0)
    assert not disconnect.completed
    if closed_at is not None:
        assert disconnect.time - closed_at < 0.5


async def _assert_free_for_next_turn(fake: FakeBedrock, conv: AsyncConversation) -> None:
    """History is unchanged and a next turn on the same conversation completes."""
    assert conv.history == HISTORY
    assert not conv.busy
    fake.enqueue(reply("next answer"))
    result = await conv.send("next question")
    assert result.text == "next answer"
    assert conv.history == (*HISTORY, Message.user("next question"), result.message)


async def test_break_closes_connection_at_once(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """`break` out of a plain `async for` (no `async with`) closes the stream synchronously:
    status is `cancelled` and the conversation free before any await, and the server sees
    the disconnect promptly."""
    conv = make_conv(history=HISTORY)
    fake_bedrock.enqueue(_long_reply())
    stream = conv.stream("question")
    seen = []
    async for text in stream:
        seen.append(text)
        if len(seen) == 2:
            break
    broke_at = time.monotonic()
    assert stream.status == "cancelled"
    assert not conv.busy
    assert stream.error is None
    assert seen == LONG[:2]
    assert stream.text == "".join(LONG[:2])
    await _assert_cut_short(fake_bedrock, broke_at)
    await _assert_free_for_next_turn(fake_bedrock, conv)


async def test_break_out_of_events_closes_connection_at_once(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """The same for `break` out of `stream.events()`."""
    conv = make_conv(history=HISTORY)
    fake_bedrock.enqueue(_long_reply())
    stream = conv.stream("question")
    async for event in stream.events():
        if isinstance(event, TextDelta):
            break
    broke_at = time.monotonic()
    assert stream.status == "cancelled"
    assert not conv.busy
    await _assert_cut_short(fake_bedrock, broke_at)
    await _assert_free_for_next_turn(fake_bedrock, conv)


async def test_break_returns_no_connection_to_the_pool_half_read(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """With a pool of one connection, turns after a `break` still get a connection at once:
    the half-read one was dropped, not leaked or returned to the pool."""
    conv = make_conv(history=HISTORY, max_connections=1)
    for _ in range(3):
        fake_bedrock.enqueue(_long_reply())
        async for _text in conv.stream("question"):
            break
    await fake_bedrock.wait_for_disconnects(3, timeout=1.0)
    async with asyncio.timeout(5):
        await _assert_free_for_next_turn(fake_bedrock, conv)
    assert [d.completed for d in fake_bedrock.disconnects] == [False, False, False, True]


async def test_get_reply_after_break_raises_stream_closed(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """After `break`, get_reply() raises StreamClosedError, and so does iterating again."""
    fake_bedrock.enqueue(_long_reply())
    stream = conv.stream("question")
    async for _text in stream:
        break
    with pytest.raises(StreamClosedError):
        await stream.get_reply()
    with pytest.raises(StreamClosedError):
        async for _text in stream:
            pass
    await _assert_cut_short(fake_bedrock)


async def test_get_reply_after_aclose_raises_stream_closed(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """aclose() is idempotent; get_reply() afterwards raises StreamClosedError."""
    fake_bedrock.enqueue(_long_reply())
    stream = conv.stream("question")
    async for _text in stream.events():
        break
    await stream.aclose()
    await stream.aclose()
    with pytest.raises(StreamClosedError):
        await stream.get_reply()
    assert stream.status == "cancelled"


async def test_aclose_before_start_sends_nothing(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """Closing a stream that never started makes no request and leaves it `cancelled`."""
    stream = conv.stream("question")
    await stream.aclose()
    assert stream.status == "cancelled"
    with pytest.raises(StreamClosedError):
        await stream.get_reply()
    assert fake_bedrock.requests == []
    assert not conv.busy


# -- task cancellation at each await point --------------------------------------------------


async def _consume(stream: ChatStream, seen: list[str], first: asyncio.Event) -> None:
    async for event in stream.events():
        if isinstance(event, TextDelta):
            seen.append(event.text)
        if isinstance(event, TextDelta | Retrying):
            first.set()


async def _cancel_and_check(
    task: asyncio.Task[None], stream: ChatStream, conv: AsyncConversation
) -> float:
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled_at < 1.0
    assert stream.status == "cancelled"
    assert not conv.busy
    return cancelled_at


async def test_cancel_while_waiting_for_headers(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Cancelling the consuming task while it waits for the response headers propagates
    CancelledError and drops the connection."""
    conv = make_conv(history=HISTORY)
    arrived = _serve_signalling(fake_bedrock, reply("late", header_delay=10.0))
    stream = conv.stream("question")
    task = asyncio.create_task(_consume(stream, [], asyncio.Event()))
    await _arrival(arrived)
    cancelled_at = await _cancel_and_check(task, stream, conv)
    await _assert_cut_short(fake_bedrock, cancelled_at)
    await _assert_free_for_next_turn(fake_bedrock, conv)


async def test_cancel_while_waiting_between_deltas(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Cancelling the consuming task while it waits for the next delta propagates
    CancelledError, drops the connection and keeps only the text already received."""
    conv = make_conv(history=HISTORY)
    fake_bedrock.enqueue(_stalls_after_one())
    stream = conv.stream("question")
    seen: list[str] = []
    first = asyncio.Event()
    task = asyncio.create_task(_consume(stream, seen, first))
    async with asyncio.timeout(5):
        await first.wait()
    cancelled_at = await _cancel_and_check(task, stream, conv)
    assert seen == ["one"]
    assert stream.text == "one"
    await _assert_cut_short(fake_bedrock, cancelled_at)
    await _assert_free_for_next_turn(fake_bedrock, conv)


@pytest.mark.usefixtures("real_backoff")
async def test_cancel_during_retry_backoff(fake_bedrock: FakeBedrock, make_conv: MakeConv) -> None:
    """Cancelling the consuming task during a (real, 5 s) backoff sleep propagates
    CancelledError at once and sends no further request."""
    conv = make_conv(history=HISTORY, retry=RetryPolicy(initial_delay=5, jitter=False))
    fake_bedrock.enqueue(reply("never", fault=Fault.http(429)))
    stream = conv.stream("question")
    retrying = asyncio.Event()
    task = asyncio.create_task(_consume(stream, [], retrying))
    async with asyncio.timeout(5):
        await retrying.wait()
    await asyncio.sleep(0.05)  # now inside the backoff sleep
    await _cancel_and_check(task, stream, conv)
    await fake_bedrock.wait_for_disconnects(1, timeout=1.0)
    assert len(fake_bedrock.requests) == 1
    await _assert_free_for_next_turn(fake_bedrock, conv)
    assert len(fake_bedrock.requests) == 2


async def test_cancel_inside_send(fake_bedrock: FakeBedrock, make_conv: MakeConv) -> None:
    """Cancelling a task blocked in send() propagates CancelledError and closes the stream."""
    conv = make_conv(history=HISTORY)
    arrived = _serve_signalling(fake_bedrock, _long_reply())
    task = asyncio.create_task(conv.send("question"))
    await _arrival(arrived)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not conv.busy
    await _assert_cut_short(fake_bedrock)
    await _assert_free_for_next_turn(fake_bedrock, conv)


async def test_cancel_right_after_start(fake_bedrock: FakeBedrock, make_conv: MakeConv) -> None:
    """Cancelling a send() almost at once (while the client is being created or the request
    sent, whichever comes first) propagates CancelledError and leaves nothing open."""
    conv = make_conv(history=HISTORY)
    fake_bedrock.responder = lambda request: (
        reply("next answer") if request.prompt_text == "next question" else _long_reply()
    )
    task = asyncio.create_task(conv.send("question"))
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not conv.busy
    assert conv.history == HISTORY
    result = await conv.send("next question")
    assert result.text == "next answer"
    assert conv.history == (*HISTORY, Message.user("next question"), result.message)
    await fake_bedrock.assert_all_closed(timeout=1.0)


async def test_outer_asyncio_timeout_cancels_the_turn(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A caller's own `asyncio.timeout()` around the loop cancels the turn like any task
    cancellation: the caller gets its TimeoutError, the connection is dropped."""
    conv = make_conv(history=HISTORY)
    fake_bedrock.enqueue(_long_reply())
    stream = conv.stream("question")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(None) as scope:
            async for _text in stream:
                if scope.when() is None:  # armed once text flows, so it fires mid-stream
                    scope.reschedule(asyncio.get_running_loop().time() + 0.2)
    assert stream.status == "cancelled"
    assert stream.error is None
    await _assert_cut_short(fake_bedrock)
    await _assert_free_for_next_turn(fake_bedrock, conv)


# -- aclose() from another task --------------------------------------------------------------


async def _consume_expecting_close(
    stream: ChatStream, seen: list[str], first: asyncio.Event
) -> None:
    with pytest.raises(StreamClosedError):
        await _consume(stream, seen, first)


async def test_aclose_from_another_task_between_deltas(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """aclose() while the consumer awaits the next delta: the consumer wakes at once with
    StreamClosedError and the connection is dropped."""
    conv = make_conv(history=HISTORY)
    fake_bedrock.enqueue(_stalls_after_one())
    stream = conv.stream("question")
    seen: list[str] = []
    first = asyncio.Event()
    task = asyncio.create_task(_consume_expecting_close(stream, seen, first))
    async with asyncio.timeout(5):
        await first.wait()
    closed_at = time.monotonic()
    await stream.aclose()
    assert stream.status == "cancelled"
    assert not conv.busy
    async with asyncio.timeout(1):
        await task
    assert seen == ["one"]
    await _assert_cut_short(fake_bedrock, closed_at)
    await _assert_free_for_next_turn(fake_bedrock, conv)


async def test_aclose_from_another_task_while_waiting_for_headers(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """aclose() while the consumer waits for the response headers interrupts the wait at once
    (not when the headers finally come) and drops the connection."""
    conv = make_conv(history=HISTORY)
    arrived = _serve_signalling(fake_bedrock, reply("late", header_delay=10.0))
    stream = conv.stream("question")
    task = asyncio.create_task(_consume_expecting_close(stream, [], asyncio.Event()))
    await _arrival(arrived)
    closed_at = time.monotonic()
    await stream.aclose()
    async with asyncio.timeout(1):
        await task
    await _assert_cut_short(fake_bedrock, closed_at)
    await _assert_free_for_next_turn(fake_bedrock, conv)


@pytest.mark.usefixtures("real_backoff")
async def test_aclose_from_another_task_during_backoff(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """aclose() during a backoff sleep wakes the consumer at once and no retry is sent after
    the stream was closed."""
    conv = make_conv(history=HISTORY, retry=RetryPolicy(initial_delay=5, jitter=False))
    fake_bedrock.enqueue(reply("never", fault=Fault.http(503)))
    stream = conv.stream("question")
    retrying = asyncio.Event()
    task = asyncio.create_task(_consume_expecting_close(stream, [], retrying))
    async with asyncio.timeout(5):
        await retrying.wait()
    await asyncio.sleep(0.05)
    await stream.aclose()
    async with asyncio.timeout(1):
        await task
    await asyncio.sleep(0.1)  # a wrongly sent retry would show up here
    assert len(fake_bedrock.requests) == 1
    await _assert_free_for_next_turn(fake_bedrock, conv)


# -- async with, consumer exceptions, closing the conversation ------------------------------


async def test_leaving_async_with_early_closes(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Leaving `async with` while an iterator is still alive (so no `break` closes it) closes
    the stream on exit."""
    conv = make_conv(history=HISTORY)
    fake_bedrock.enqueue(_long_reply())
    async with conv.stream("question") as stream:
        iterator = aiter(stream)
        assert await anext(iterator) == LONG[0]
        assert stream.status == "streaming"
    left_at = time.monotonic()
    assert stream.status == "cancelled"
    assert not conv.busy
    await _assert_cut_short(fake_bedrock, left_at)
    del iterator
    await _assert_free_for_next_turn(fake_bedrock, conv)


async def test_async_with_entered_but_never_read(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Entering the stream claims the conversation; leaving without reading releases it,
    sends no request and leaves the stream `cancelled`."""
    conv = make_conv(history=HISTORY)
    async with conv.stream("question") as stream:
        assert conv.busy
    assert stream.status == "cancelled"
    assert fake_bedrock.requests == []
    await _assert_free_for_next_turn(fake_bedrock, conv)


@pytest.mark.parametrize("with_async_with", [False, True])
async def test_consumer_exception_propagates_and_closes(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, with_async_with: bool
) -> None:
    """An exception raised by the consumer inside the loop propagates unchanged; the stream is
    closed (`cancelled`, no error of its own) and the connection dropped."""
    conv = make_conv(history=HISTORY)
    fake_bedrock.enqueue(_long_reply())
    stream = conv.stream("question")
    boom = KeyError("consumer bug")

    async def run() -> None:
        async for _text in stream:
            raise boom

    with pytest.raises(KeyError) as caught:
        if with_async_with:
            async with stream:
                await run()
        else:
            await run()
    raised_at = time.monotonic()
    assert caught.value is boom
    assert stream.status == "cancelled"
    assert stream.error is None
    await _assert_cut_short(fake_bedrock, raised_at)
    await _assert_free_for_next_turn(fake_bedrock, conv)


async def test_conversation_aclose_closes_open_stream_first(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """conv.aclose() with a stream open mid-reply closes the stream (cancelled, connection
    dropped) and then the client, without any warning."""
    conv = make_conv(history=HISTORY)
    fake_bedrock.enqueue(_long_reply())
    stream = conv.stream("question")
    iterator = aiter(stream)
    assert await anext(iterator) == LONG[0]
    await conv.aclose()
    assert stream.status == "cancelled"
    assert not conv.busy
    assert conv.history == HISTORY
    await _assert_cut_short(fake_bedrock)
    with pytest.raises(StreamClosedError):
        await anext(iterator)
    del iterator
    gc.collect()  # an unclosed connection would warn (an error in this suite) here


async def test_conversation_aclose_while_consumer_awaits(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """conv.aclose() while another task awaits the next delta: that task gets
    StreamClosedError, nothing leaks."""
    conv = make_conv(history=HISTORY)
    fake_bedrock.enqueue(_stalls_after_one())
    stream = conv.stream("question")
    first = asyncio.Event()
    task = asyncio.create_task(_consume_expecting_close(stream, [], first))
    async with asyncio.timeout(5):
        await first.wait()
    await conv.aclose()
    async with asyncio.timeout(1):
        await task
    assert stream.status == "cancelled"
    await _assert_cut_short(fake_bedrock)
    gc.collect()


async def test_fork_turns_cancel_independently(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Cancelling one fork's turn drops only its connection; a sibling fork's turn on the
    shared client completes and the parent's history is untouched."""
    conv = make_conv(history=HISTORY)
    fake_bedrock.responder = lambda request: (
        _long_reply() if request.prompt_text == "slow" else reply("quick answer", delay=0.01)
    )
    slow, quick = conv.fork(), conv.fork()

    async def run_slow() -> None:
        async for _text in slow.stream("slow"):
            await asyncio.sleep(10)

    slow_task = asyncio.create_task(run_slow())
    result = await quick.send("quick")
    slow_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow_task
    assert result.text == "quick answer"
    assert slow.history == HISTORY
    assert len(quick.history) == len(HISTORY) + 2
    assert conv.history == HISTORY
    disconnects = await fake_bedrock.wait_for_disconnects(2, timeout=1.0)
    by_prompt = {fake_bedrock.requests[d.request_index].prompt_text: d for d in disconnects}
    assert by_prompt["quick"].completed
    assert not by_prompt["slow"].completed


async def _agen_consumer(stream: ChatStream) -> AsyncIterator[str]:
    async for text in stream:
        yield text


async def test_break_through_wrapping_async_generator(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A caller's own async generator wrapping the stream: closing it (aclosing) drops the
    inner iterator and so the connection, without waiting for the loop's finalizer."""
    conv = make_conv(history=HISTORY)
    fake_bedrock.enqueue(_long_reply())
    stream = conv.stream("question")
    wrapper = _agen_consumer(stream)
    assert await anext(wrapper) == LONG[0]
    await wrapper.aclose()
    assert stream.status == "cancelled"
    await _assert_cut_short(fake_bedrock)
    await _assert_free_for_next_turn(fake_bedrock, conv)
