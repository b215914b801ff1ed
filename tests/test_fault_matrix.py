"""The fault matrix: every fault FakeBedrock injects, at every point it can happen, through the
real stack (aiobotocore, aiohttp, our decoder and state machine).

Points: before the response headers (HTTP errors, a header delay), before the first content
delta (``after=0``: only ``messageStart`` was sent) and after ``K`` text deltas. For each we pin
the error class, ``attempts``, ``partial_text``, the requests the emulator saw, the history,
the conversation's ``busy`` flag, and that every connection was closed (one disconnect per
request; warnings, ResourceWarning included, are errors in this suite).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import botocore.exceptions
import pytest

from aiostream_chat import (
    AccessDeniedError,
    AsyncConversation,
    ChatError,
    ConnectionLostError,
    FirstTokenTimeoutError,
    IdleTimeoutError,
    IncompleteStreamError,
    InternalServerError,
    InvalidRequestError,
    Message,
    ModelError,
    ModelStreamError,
    ModelTimeoutError,
    ResourceNotFoundError,
    Retrying,
    RetryPolicy,
    ServiceUnavailableError,
    StreamDecodeError,
    TextDelta,
    ThrottlingError,
    Timeouts,
)
from aiostream_chat._codec import encode_frame
from aiostream_chat.testing import FakeBedrock, Fault, Script, reply

from .conftest import HISTORY, MakeConv

CHUNKS = ["Alpha ", "beta ", "gamma ", "delta."]
TEXT = "".join(CHUNKS)
K = 2  # deltas delivered before a mid-stream fault
ATTEMPTS = 3
# Small deadlines for the stall cases (the stalls themselves are far longer); deadlines no busy
# machine can hit by accident for every other case.
SHORT = Timeouts(first_token=0.4, idle=0.4)
CALM = Timeouts(first_token=30, idle=30)
STALL = 5.0

# What kind of library exception the error must carry as __cause__.
HTTP_CAUSE = botocore.exceptions.ClientError
NO_CAUSE = type(None)


@dataclass(frozen=True)
class Case:
    """One cell of the matrix."""

    script: Callable[[], Script]
    error: type[ChatError]
    retried: bool  # whether the emulator sees ATTEMPTS requests (else one)
    delivered: int  # text deltas that reach the caller before the fault
    cause: type[BaseException]
    timeouts: Timeouts = CALM


def _text(fault: Fault | None = None, header_delay: float = 0.0) -> Script:
    return reply(TEXT, chunks=CHUNKS, fault=fault, header_delay=header_delay)


def _http(status: int, error: type[ChatError], retried: bool) -> Case:
    return Case(lambda: _text(Fault.http(status)), error, retried, 0, HTTP_CAUSE)


HTTP_CASES = {
    "http400": _http(400, InvalidRequestError, False),
    "http403": _http(403, AccessDeniedError, False),
    "http404": _http(404, ResourceNotFoundError, False),
    "http408": _http(408, ModelTimeoutError, True),
    "http424": _http(424, ModelError, False),
    "http429": _http(429, ThrottlingError, True),
    "http500": _http(500, InternalServerError, True),
    "http503": _http(503, ServiceUnavailableError, True),
    "header_delay": Case(
        lambda: _text(header_delay=STALL), FirstTokenTimeoutError, True, 0, TimeoutError, SHORT
    ),
}

# name -> (fault at `after`, error class, retryable, cause)
IN_STREAM: dict[str, tuple[Callable[[int], Fault], type[ChatError], bool, type[BaseException]]] = {
    "throttlingException": (
        lambda k: Fault.exception("throttlingException", after=k),
        ThrottlingError,
        True,
        NO_CAUSE,
    ),
    "modelStreamErrorException": (
        lambda k: Fault.exception("modelStreamErrorException", after=k),
        ModelStreamError,
        True,
        NO_CAUSE,
    ),
    "internalServerException": (
        lambda k: Fault.exception("internalServerException", after=k),
        InternalServerError,
        True,
        NO_CAUSE,
    ),
    "serviceUnavailableException": (
        lambda k: Fault.exception("serviceUnavailableException", after=k),
        ServiceUnavailableError,
        True,
        NO_CAUSE,
    ),
    "validationException": (
        lambda k: Fault.exception("validationException", after=k),
        InvalidRequestError,
        False,
        NO_CAUSE,
    ),
    "error_frame_throttling": (
        lambda k: Fault.error("ThrottlingException", after=k),
        ThrottlingError,
        True,
        NO_CAUSE,
    ),
    "error_frame_validation": (
        lambda k: Fault.error("ValidationException", after=k),
        InvalidRequestError,
        False,
        NO_CAUSE,
    ),
    "eof": (lambda k: Fault.eof(after=k), IncompleteStreamError, True, NO_CAUSE),
    "half_frame": (lambda k: Fault.half_frame(after=k), IncompleteStreamError, True, NO_CAUSE),
    "reset": (lambda k: Fault.reset(after=k), ConnectionLostError, True, aiohttp.ClientError),
    "corrupt_crc": (lambda k: Fault.corrupt_crc(after=k), StreamDecodeError, True, NO_CAUSE),
}


def _in_stream(name: str, k: int) -> Case:
    make, error, retryable, cause = IN_STREAM[name]
    # Retried only while nothing reached the caller: never once K > 0 deltas were delivered.
    return Case(lambda: _text(make(k)), error, retryable and k == 0, k, cause)


CASES: dict[str, Case] = dict(HTTP_CASES)
for _name in IN_STREAM:
    CASES[f"{_name}-after0"] = _in_stream(_name, 0)
    CASES[f"{_name}-after{K}"] = _in_stream(_name, K)
# A stall before the first delta is a first-token timeout (retryable); after K, an idle one.
CASES["stall-after0"] = Case(
    lambda: _text(Fault.stall(STALL, after=0)), FirstTokenTimeoutError, True, 0, TimeoutError, SHORT
)
CASES[f"stall-after{K}"] = Case(
    lambda: _text(Fault.stall(STALL, after=K)), IdleTimeoutError, False, K, TimeoutError, SHORT
)


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_fault_outcome(fake_bedrock: FakeBedrock, make_conv: MakeConv, case: Case) -> None:
    """Each fault at each point raises its mapped error with exact attempts and partial text,
    retries only before any delta reached the caller, leaves history and the conversation as
    they were, and closes every connection it opened."""
    conv = make_conv(
        history=HISTORY, retry=RetryPolicy(max_attempts=ATTEMPTS), timeouts=case.timeouts
    )
    await conv.__aenter__()  # the client exists before the turn starts
    fake_bedrock.enqueue(case.script(), times=ATTEMPTS)
    stream = conv.stream("question")
    seen: list[str] = []
    with pytest.raises(ChatError) as caught:
        async for text in stream:
            seen.append(text)
    error = caught.value
    expected_attempts = ATTEMPTS if case.retried else 1

    assert type(error) is case.error
    assert error.attempts == expected_attempts
    assert error.partial_text == "".join(CHUNKS[: case.delivered])
    assert seen == CHUNKS[: case.delivered]  # what the caller saw, once, nothing more
    assert error.retryable == (case.error.retryable)
    assert isinstance(error.__cause__, case.cause)
    assert stream.status == "failed"
    assert stream.error is error
    assert stream.text == error.partial_text
    with pytest.raises(type(error)) as again:
        await stream.get_reply()
    assert again.value is error
    assert conv.history == HISTORY
    assert not conv.busy
    await fake_bedrock.assert_all_closed(expected_attempts)


@pytest.mark.parametrize("case", list(HTTP_CASES.values())[:-1], ids=list(HTTP_CASES)[:-1])
async def test_http_error_keeps_status_and_request_id(
    fake_bedrock: FakeBedrock, conv: AsyncConversation, case: Case
) -> None:
    """An HTTP error before the stream keeps Bedrock's status code, error code and request id."""
    script = case.script()
    assert script.fault is not None
    fake_bedrock.enqueue(script)
    with pytest.raises(ChatError) as caught:
        await conv.send("question", retry=RetryPolicy.none())
    error = caught.value
    assert getattr(error, "status_code", None) == script.fault.status
    assert getattr(error, "code", None) == script.fault.code
    assert error.request_id
    await fake_bedrock.assert_all_closed(1)


@pytest.mark.parametrize("name", [n for n in IN_STREAM if n.endswith("Exception")])
async def test_in_stream_exception_keeps_request_id(
    fake_bedrock: FakeBedrock, conv: AsyncConversation, name: str
) -> None:
    """An exception event inside the stream carries the request id of the 200 response."""
    fake_bedrock.enqueue(_text(IN_STREAM[name][0](K)))
    with pytest.raises(ChatError) as caught:
        await conv.send("question")
    assert caught.value.request_id
    assert getattr(caught.value, "code", None) == name


RETRYABLE_BEFORE_CONTENT = {name: case for name, case in CASES.items() if case.retried}


@pytest.mark.parametrize(
    "case", list(RETRYABLE_BEFORE_CONTENT.values()), ids=list(RETRYABLE_BEFORE_CONTENT)
)
@pytest.mark.parametrize("attempts", [3])
async def test_retryable_fault_then_success(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, case: Case, attempts: int
) -> None:
    """A retryable fault on attempts 1..N-1 then a clean reply: the text arrives exactly once,
    `Retrying` events number the attempts 2..N with the fault's error, the reply counts N
    attempts and the turn is committed."""
    conv = make_conv(
        history=HISTORY, retry=RetryPolicy(max_attempts=attempts), timeouts=case.timeouts
    )
    await conv.__aenter__()
    fake_bedrock.enqueue(case.script(), times=attempts - 1)
    fake_bedrock.enqueue(_text())
    stream = conv.stream("question")
    texts: list[str] = []
    retries: list[Retrying] = []
    async for event in stream.events():
        if isinstance(event, Retrying):
            assert texts == []  # never a retry after text was shown
            retries.append(event)
        elif isinstance(event, TextDelta) and event.text:
            texts.append(event.text)
    result = await stream.get_reply()

    assert texts == CHUNKS
    assert result.text == TEXT
    assert result.metrics.attempts == attempts
    assert [r.attempt for r in retries] == list(range(2, attempts + 1))
    assert all(type(r.error) is case.error for r in retries)
    assert all(r.delay == 0.0 for r in retries)  # the suite runs under no_backoff()
    assert stream.status == "completed"
    assert conv.history == (*HISTORY, Message.user("question"), result.message)
    await fake_bedrock.assert_all_closed(attempts)


async def test_retry_then_success_text_iterator_has_no_duplicates(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """Through `async for`, a reply that succeeds on the third attempt yields its text once."""
    fake_bedrock.enqueue(_text(Fault.exception("throttlingException", after=0)))
    fake_bedrock.enqueue(_text(Fault.reset(after=0)))
    fake_bedrock.enqueue(_text())
    stream = conv.stream("question")
    assert [t async for t in stream] == CHUNKS
    assert (await stream.get_reply()).metrics.attempts == 3
    await fake_bedrock.assert_all_closed(3)


async def test_corrupt_frame_in_same_chunk_keeps_earlier_frames(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """Deltas that arrived intact in the same network read as a corrupt frame still reach the
    caller before the StreamDecodeError, so partial_text is exact and nothing is retried."""
    # No pacing: the emulator writes messageStart, K deltas and the bad frame back to back.
    fake_bedrock.enqueue(_text(Fault.corrupt_crc(after=K)), times=ATTEMPTS)
    seen: list[str] = []
    with pytest.raises(StreamDecodeError) as caught:
        async for text in conv.stream("question"):
            seen.append(text)
    assert seen == CHUNKS[:K]
    assert caught.value.partial_text == "".join(CHUNKS[:K])
    assert caught.value.attempts == 1
    await fake_bedrock.assert_all_closed(1)


def _frame(payload: bytes, event: str = "contentBlockDelta") -> bytes:
    headers = {":event-type": event, ":content-type": "application/json", ":message-type": "event"}
    return encode_frame(headers, payload)


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b"\xff\xfe"])
async def test_bad_payload_is_a_decode_error(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, payload: bytes
) -> None:
    """A frame with valid checksums whose payload is not a JSON object fails the turn with
    StreamDecodeError (never a raw ValueError), after the deltas before it were delivered."""
    conv = make_conv(history=HISTORY, retry=RetryPolicy.none())
    start = _frame(b'{"role":"assistant"}', "messageStart")
    good = _frame(b'{"contentBlockIndex":0,"delta":{"text":"ok"}}')
    fake_bedrock.enqueue(Script(body=(start, good, _frame(payload))))
    seen: list[str] = []
    with pytest.raises(StreamDecodeError) as caught:
        async for text in conv.stream("question"):
            seen.append(text)
    assert seen == ["ok"]
    assert caught.value.partial_text == "ok"
    assert conv.history == HISTORY
    await fake_bedrock.assert_all_closed(1)
