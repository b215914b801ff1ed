"""The ChatStream surface of API.md section 2 under the ways people really use it: ``anext``
before ``async for`` (the SSE pattern), ``aclose()`` on iterators, ``contextlib.aclosing``,
two readers, and the one-outcome rule (status, reply and error never disagree)."""

from __future__ import annotations

import asyncio
import contextlib
import gc

import pytest

from aiostream_chat import (
    ChatError,
    IncompleteStreamError,
    RetryPolicy,
    StreamClosedError,
    TextDelta,
    ThrottlingError,
)
from aiostream_chat.testing import FakeBedrock, Fault, reply

from .conftest import MakeConv

WORDS = ["one ", "two ", "three ", "four"]
TEXT = "".join(WORDS)


async def test_anext_takes_the_first_chunk_and_async_for_continues(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """`await anext(stream)` takes one chunk without closing anything; a later `async for`
    over the same stream goes on from the second chunk, and the turn completes."""
    conv = make_conv()
    fake_bedrock.enqueue(reply(TEXT, chunks=WORDS))
    stream = conv.stream("count")
    first = await anext(stream)
    assert first == "one "
    assert stream.status == "streaming"
    rest = [chunk async for chunk in stream]
    assert [first, *rest] == WORDS
    assert stream.status == "completed"
    assert (await stream.get_reply()).text == TEXT
    assert len(conv.history) == 2
    assert len(fake_bedrock.requests) == 1


async def test_first_error_is_seen_by_anext_before_anything_else(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A server can look at the first chunk or the first error before sending its headers:
    `anext` raises the turn's error, and the stream is failed with that same error."""
    conv = make_conv(retry=RetryPolicy.none())
    fake_bedrock.enqueue(reply(fault=Fault.http(429)))
    stream = conv.stream("hi")
    with pytest.raises(ThrottlingError) as caught:
        await anext(stream)
    assert stream.status == "failed"
    assert stream.error is caught.value
    assert not conv.busy


async def test_a_fresh_iterator_dropped_unused_closes_nothing(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Creating `aiter(stream)` or `stream.events()` and dropping it before it took anything
    leaves the stream open; the next iterator reads the whole reply."""
    conv = make_conv()
    fake_bedrock.enqueue(reply(TEXT, chunks=WORDS))
    stream = conv.stream("count")
    first = await anext(stream)
    unused = aiter(stream)
    unused_events = stream.events()
    del unused, unused_events
    gc.collect()
    assert stream.status == "streaming"
    assert [first, *[c async for c in stream]] == WORDS
    assert stream.status == "completed"


async def test_iterator_aclose_closes_the_stream_and_is_idempotent(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """The iterators of `async for` and `events()` have `aclose()`: it cancels the unfinished
    turn, drops the connection, and a second call does nothing."""
    conv = make_conv()
    fake_bedrock.enqueue(reply(TEXT, chunks=WORDS, delay=0.05))
    stream = conv.stream("count")
    events = stream.events()
    assert type(await anext(events)).__name__ == "MessageStart"
    await events.aclose()  # type: ignore[attr-defined]
    await events.aclose()  # type: ignore[attr-defined]
    assert stream.status == "cancelled"
    assert conv.history == ()
    assert not conv.busy
    with pytest.raises(StopAsyncIteration):
        await anext(events)
    with pytest.raises(StreamClosedError):
        await stream.get_reply()
    [disconnect] = await fake_bedrock.wait_for_disconnects(1)
    assert not disconnect.completed


async def test_contextlib_aclosing_works_on_events(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """`contextlib.aclosing(stream.events())` closes the stream when the block is left early."""
    conv = make_conv()
    fake_bedrock.enqueue(reply(TEXT, chunks=WORDS, delay=0.05))
    stream = conv.stream("count")
    async with contextlib.aclosing(stream.events()) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                break
    assert stream.status == "cancelled"
    assert not conv.busy
    [disconnect] = await fake_bedrock.wait_for_disconnects(1)
    assert not disconnect.completed


async def test_second_reader_task_gets_runtime_error_at_once(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """While one task waits on the stream, a second task reading it raises RuntimeError at
    once: no second HTTP request, no raw aiohttp error, no wait. The first reader finishes."""
    conv = make_conv()
    fake_bedrock.enqueue(reply(TEXT, chunks=WORDS, delay=0.05))
    stream = conv.stream("count")

    async def read_all() -> list[str]:
        return [chunk async for chunk in stream]

    first = asyncio.create_task(read_all())
    await asyncio.sleep(0.05)  # the first reader is now waiting on the body
    with pytest.raises(RuntimeError, match="another task"):
        await anext(stream)
    with pytest.raises(RuntimeError, match="another task"):
        await stream.get_reply()
    assert await first == WORDS
    assert stream.status == "completed"
    assert len(fake_bedrock.requests) == 1


@pytest.mark.parametrize(
    "fault",
    [
        None,
        Fault.http(400),
        Fault.http(503),
        Fault.exception("throttlingException", after=0),
        Fault.exception("validationException", after=2),
        Fault.eof(after=2),
        Fault.corrupt_crc(after=1),
        Fault.reset(after=0),
    ],
    ids=repr,
)
async def test_status_reply_and_error_never_disagree(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, fault: Fault | None
) -> None:
    """Whatever happens, `status` is one of completed (with a reply, no error), failed (with
    the error that was raised) or cancelled, and the conversation is never left busy."""
    conv = make_conv(retry=RetryPolicy(max_attempts=2))
    fake_bedrock.enqueue(reply(TEXT, chunks=WORDS, fault=fault), reply(TEXT, chunks=WORDS))
    stream = conv.stream("count")
    raised: ChatError | None = None
    try:
        async for _ in stream:
            pass
    except ChatError as exc:
        raised = exc
    if raised is None:
        assert stream.status == "completed"
        assert stream.error is None
        assert (await stream.get_reply()).text == TEXT
    else:
        assert stream.status == "failed"
        assert stream.error is raised
        with pytest.raises(type(raised)):
            await stream.get_reply()
    assert not conv.busy
    await stream.aclose()  # closing a finished stream changes nothing
    assert stream.status in ("completed", "failed")


async def test_incomplete_stream_fails_with_its_error(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A body that ends without messageStop after text was shown fails the turn (never
    retried), keeps the partial text on the error, and leaves history as it was."""
    conv = make_conv()
    fake_bedrock.enqueue(reply(TEXT, chunks=WORDS, fault=Fault.eof(after=2)))
    stream = conv.stream("count")
    with pytest.raises(IncompleteStreamError) as caught:
        async for _ in stream:
            pass
    assert caught.value.partial_text == "one two "
    assert stream.error is caught.value
    assert conv.history == ()
