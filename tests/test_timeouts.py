"""Timeouts: connect, first token, idle and total, each through the real stack.

Every deadline raises its own error class, carries the text received so far and closes the
connection. Bounds are generous ("a 0.4 s timeout fires between 0.4 and 2 s"): the machine
may be busy, and the point is which deadline fired, not its precision.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import botocore.exceptions
import pytest

from aiostream_chat import (
    AsyncConversation,
    ChatError,
    ConnectionLostError,
    FirstTokenTimeoutError,
    IdleTimeoutError,
    Retrying,
    RetryPolicy,
    StreamTimeoutError,
    TextDelta,
    TotalTimeoutError,
)
from aiostream_chat import (
    Timeouts as T,
)
from aiostream_chat.testing import FakeBedrock, Fault, reply

from .conftest import HISTORY, MakeConv

CHUNKS = ["one ", "two ", "three ", "four"]
TEXT = "".join(CHUNKS)
LOW, HIGH = 0.4, 2.0  # a 0.4 s deadline fires within [LOW, HIGH]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A loopback port whose accept queue is full: a new TCP connect hangs (SYNs are dropped)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # non-blocking connect: in progress
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


async def _timed_failure(
    stream_iter: object, seen: list[str]
) -> tuple[ChatError, float, float | None]:
    """Consume; return the error, its time from start and from the last delta received."""
    start = time.monotonic()
    last: float | None = None
    with pytest.raises(ChatError) as caught:
        async for text in stream_iter:  # type: ignore[attr-defined]
            seen.append(text)
            last = time.monotonic()
    now = time.monotonic()
    return caught.value, now - start, (now - last if last is not None else None)


async def _assert_cut_short(fake: FakeBedrock, requests: int) -> None:
    """Every response was closed, each cut short by the client."""
    disconnects = await fake.assert_all_closed(requests)
    assert all(not d.completed for d in disconnects)


def _assert_timeout_error(error: ChatError, cls: type[StreamTimeoutError]) -> None:
    assert type(error) is cls
    assert isinstance(error, StreamTimeoutError)
    assert isinstance(error, TimeoutError)  # the builtin, so `except TimeoutError` works


# -- connect ----------------------------------------------------------------------------------


async def test_connection_refused_fails_fast(make_conv: MakeConv) -> None:
    """A closed port: ConnectionLostError at once (no waiting on a timeout), with botocore's
    error as the cause, after every attempt of the policy."""
    conv = make_conv(
        endpoint_url=f"http://127.0.0.1:{_closed_port()}", retry=RetryPolicy(max_attempts=2)
    )
    start = time.monotonic()
    with pytest.raises(ConnectionLostError) as caught:
        await conv.send("question")
    assert time.monotonic() - start < 3.0
    assert caught.value.attempts == 2
    assert caught.value.partial_text == ""
    assert isinstance(caught.value.__cause__, botocore.exceptions.EndpointConnectionError)
    assert not conv.busy
    assert conv.history == ()


async def test_connect_timeout(make_conv: MakeConv, full_backlog: int) -> None:
    """A TCP connect that hangs is cut off by Timeouts.connect and reported as
    ConnectionLostError (a transport failure), caused by botocore's ConnectTimeoutError."""
    conv = make_conv(
        endpoint_url=f"http://127.0.0.1:{full_backlog}",
        retry=RetryPolicy.none(),
        timeouts=T(connect=LOW, first_token=30),
    )
    await conv.__aenter__()  # create the client first: only the connect is timed
    start = time.monotonic()
    with pytest.raises(ConnectionLostError) as caught:
        await conv.send("question")
    assert LOW <= time.monotonic() - start < HIGH + 1.0
    assert isinstance(caught.value.__cause__, botocore.exceptions.ConnectTimeoutError)
    assert caught.value.attempts == 1


# -- first token ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["headers", "after_message_start"])
async def test_first_token_timeout(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, where: str
) -> None:
    """No content within `first_token` (headers late, or only messageStart sent):
    FirstTokenTimeoutError within [0.4, 2] s, empty partial text, connection dropped."""
    conv = make_conv(history=HISTORY, retry=RetryPolicy.none(), timeouts=T(first_token=LOW))
    await conv.__aenter__()
    if where == "headers":
        fake_bedrock.enqueue(reply(TEXT, chunks=CHUNKS, header_delay=10))
    else:
        fake_bedrock.enqueue(reply(TEXT, chunks=CHUNKS, fault=Fault.stall(10, after=0)))
    seen: list[str] = []
    error, elapsed, _ = await _timed_failure(conv.stream("question"), seen)
    _assert_timeout_error(error, FirstTokenTimeoutError)
    assert LOW <= elapsed < HIGH
    assert error.partial_text == "" and seen == []
    assert error.attempts == 1
    assert isinstance(error.__cause__, TimeoutError)
    assert conv.history == HISTORY and not conv.busy
    await _assert_cut_short(fake_bedrock, 1)


async def test_first_token_timeout_is_per_attempt(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """first_token restarts with each attempt: two stalled attempts then a good one complete,
    although the turn took longer than first_token overall."""
    conv = make_conv(retry=RetryPolicy(max_attempts=3), timeouts=T(first_token=LOW))
    await conv.__aenter__()
    fake_bedrock.enqueue(reply(TEXT, header_delay=10), times=2)
    fake_bedrock.enqueue(reply(TEXT, chunks=CHUNKS))
    start = time.monotonic()
    result = await conv.send("question")
    assert time.monotonic() - start >= 2 * LOW
    assert result.text == TEXT
    assert result.metrics.attempts == 3


# -- idle -------------------------------------------------------------------------------------


async def test_idle_timeout_after_deltas(fake_bedrock: FakeBedrock, make_conv: MakeConv) -> None:
    """The server stalls after two deltas: IdleTimeoutError within [0.4, 2] s of the last
    delta, partial text is exactly those deltas, not retried, connection dropped."""
    conv = make_conv(history=HISTORY, retry=RetryPolicy(max_attempts=3), timeouts=T(idle=LOW))
    fake_bedrock.enqueue(reply(TEXT, chunks=CHUNKS, fault=Fault.stall(10, after=2)), times=3)
    seen: list[str] = []
    error, _, since_last = await _timed_failure(conv.stream("question"), seen)
    _assert_timeout_error(error, IdleTimeoutError)
    assert since_last is not None and LOW <= since_last < HIGH
    assert error.partial_text == "".join(CHUNKS[:2]) and seen == CHUNKS[:2]
    assert error.attempts == 1
    assert conv.history == HISTORY and not conv.busy
    await _assert_cut_short(fake_bedrock, 1)


async def test_slow_consumer_does_not_trip_idle(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A consumer that spends longer than `idle` on each delta, while the server sends at full
    speed, completes: time in the caller's code is not a server stall."""
    conv = make_conv(timeouts=T(idle=0.1))
    chunks = [f"c{i} " for i in range(4)]
    fake_bedrock.enqueue(reply("".join(chunks), chunks=chunks, delay=0.005))
    stream = conv.stream("question")
    seen = []
    async for text in stream:
        seen.append(text)
        await asyncio.sleep(0.2)  # 2 x idle, per delta
    assert seen == chunks
    assert stream.status == "completed"
    await fake_bedrock.wait_for_disconnects(1)
    assert fake_bedrock.disconnects[0].completed


async def test_slow_consumer_of_events_does_not_trip_idle(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """The same through events(), slow on every event, not only text."""
    conv = make_conv(timeouts=T(idle=0.1))
    fake_bedrock.enqueue(reply(TEXT, chunks=CHUNKS))
    stream = conv.stream("question")
    async for _event in stream.events():
        await asyncio.sleep(0.15)
    assert (await stream.get_reply()).text == TEXT


async def test_idle_counts_only_time_waiting_on_the_server(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """The server pauses 0.6 s after the first delta while the consumer spends 0.5 s on it:
    the client itself waits only ~0.1 s for the next delta, so idle=0.3 does not fire, even
    though the gap between the two events exceeds it."""
    conv = make_conv(timeouts=T(idle=0.3))
    fake_bedrock.enqueue(reply(TEXT, chunks=CHUNKS, fault=Fault.stall(0.6, after=1)))
    stream = conv.stream("question")
    seen = []
    async for text in stream:
        if not seen:
            await asyncio.sleep(0.5)
        seen.append(text)
    assert seen == CHUNKS


# -- total ------------------------------------------------------------------------------------


async def test_total_timeout_mid_stream(fake_bedrock: FakeBedrock, make_conv: MakeConv) -> None:
    """A steady but slow stream outlives `total`: TotalTimeoutError within [1, 3] s, with
    the text received so far, never retried, connection dropped."""
    conv = make_conv(
        history=HISTORY,
        retry=RetryPolicy(max_attempts=4),
        timeouts=T(total=1.0, first_token=None, idle=None),
    )
    await conv.__aenter__()
    chunks = [f"w{i} " for i in range(100)]
    fake_bedrock.enqueue(reply("".join(chunks), chunks=chunks, delay=0.02), times=4)
    seen: list[str] = []
    error, elapsed, _ = await _timed_failure(conv.stream("question"), seen)
    _assert_timeout_error(error, TotalTimeoutError)
    assert 1.0 <= elapsed < 1.0 + HIGH
    assert not error.retryable
    assert error.attempts == 1
    assert seen and error.partial_text == "".join(seen)
    assert conv.history == HISTORY and not conv.busy
    await _assert_cut_short(fake_bedrock, 1)


async def test_total_bounds_retries(fake_bedrock: FakeBedrock, make_conv: MakeConv) -> None:
    """`total` covers every attempt: first-token timeouts are retried until the total budget
    runs out, which raises TotalTimeoutError (not retried), not the per-attempt error."""
    conv = make_conv(retry=RetryPolicy(max_attempts=10), timeouts=T(first_token=0.2, total=0.7))
    await conv.__aenter__()
    fake_bedrock.enqueue(reply(TEXT, header_delay=10), times=10)
    stream = conv.stream("question")
    retries = []
    start = time.monotonic()
    with pytest.raises(TotalTimeoutError) as caught:
        async for event in stream.events():
            if isinstance(event, Retrying):
                retries.append(event)
    assert 0.7 <= time.monotonic() - start < 0.7 + HIGH
    # Attempts fail at about 0.2, 0.4 and 0.6 s, the next is cut at 0.7 s (fewer on a busy
    # machine): retried, but never past the budget.
    attempts = caught.value.attempts
    assert 2 <= attempts <= 4
    assert [type(r.error) for r in retries] == [FirstTokenTimeoutError] * (attempts - 1)
    assert stream.status == "failed"
    # An attempt cut before the emulator read its request is never seen there (on a loaded
    # machine, any attempt's 0.2 s may run out before the request arrives).
    assert 1 <= len(fake_bedrock.requests) <= attempts
    await _assert_cut_short(fake_bedrock, len(fake_bedrock.requests))


@pytest.mark.usefixtures("real_backoff")
async def test_total_bounds_backoff(fake_bedrock: FakeBedrock, make_conv: MakeConv) -> None:
    """A backoff sleep that would run past `total` is not started: the last error is raised at
    once, with its attempts, instead of sleeping into the deadline."""
    conv = make_conv(
        retry=RetryPolicy(max_attempts=5, initial_delay=0.2, jitter=False),
        timeouts=T(total=1.0),
    )
    await conv.__aenter__()
    fake_bedrock.enqueue(reply(TEXT, fault=Fault.http(429)), times=5)
    stream = conv.stream("question")
    delays = []
    start = time.monotonic()
    with pytest.raises(ChatError) as caught:
        async for event in stream.events():
            if isinstance(event, Retrying):
                delays.append(event.delay)
    elapsed = time.monotonic() - start
    # Backoffs 0.2 then 0.4 fit in 1.0 s; the next, 0.8, would end past it.
    assert delays == [0.2, 0.4]
    assert type(caught.value).__name__ == "ThrottlingError"
    assert caught.value.attempts == 3
    assert 0.6 <= elapsed < 1.0
    await fake_bedrock.assert_all_closed(3)


# -- per-turn overrides -----------------------------------------------------------------------


async def test_per_turn_timeouts_override_tighter(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """`stream(..., timeouts=)` replaces the conversation's timeouts for that turn only."""
    conv = make_conv(retry=RetryPolicy.none(), timeouts=T(first_token=30))
    fake_bedrock.enqueue(reply(TEXT, header_delay=10))
    start = time.monotonic()
    with pytest.raises(FirstTokenTimeoutError):
        async for _text in conv.stream("question", timeouts=T(first_token=LOW)):
            pass
    assert time.monotonic() - start < HIGH + 1.0  # client creation included
    fake_bedrock.enqueue(reply(TEXT, header_delay=0.5))
    assert (await conv.send("question")).text == TEXT  # the conversation's 30 s applies again


async def test_per_turn_timeouts_override_looser(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A per-turn override can also loosen a tight conversation default."""
    conv = make_conv(retry=RetryPolicy.none(), timeouts=T(idle=0.1))
    fake_bedrock.enqueue(reply(TEXT, chunks=CHUNKS, fault=Fault.stall(0.4, after=1)))
    result = await conv.send("question", timeouts=T(idle=5))
    assert result.text == TEXT
    fake_bedrock.enqueue(reply(TEXT, chunks=CHUNKS, fault=Fault.stall(5, after=1)))
    with pytest.raises(IdleTimeoutError) as caught:
        await conv.send("question")
    assert caught.value.partial_text == CHUNKS[0]


async def test_disabled_timeouts_wait(fake_bedrock: FakeBedrock, make_conv: MakeConv) -> None:
    """With every deadline None, a slow start and a mid-stream pause are simply waited out."""
    conv = make_conv(timeouts=T(connect=None, first_token=None, idle=None, total=None))
    fake_bedrock.enqueue(reply(TEXT, chunks=CHUNKS, header_delay=0.3, fault=Fault.stall(0.3, 2)))
    assert (await conv.send("question")).text == TEXT


async def test_timeout_errors_are_builtin_timeouts(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """`except TimeoutError` catches a stream deadline, as with asyncio and httpx."""
    fake_bedrock.enqueue(reply(TEXT, chunks=CHUNKS, fault=Fault.stall(10, after=1)))
    with pytest.raises(TimeoutError):
        async for event in conv.stream("question", timeouts=T(idle=0.2)).events():
            assert not isinstance(event, TextDelta) or event.text == CHUNKS[0]
