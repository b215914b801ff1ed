"""Retries: which errors are retried and when, the backoff schedule, exhaustion, that only our
policy retries (botocore's own retries are off), and what is logged."""

from __future__ import annotations

import itertools
import logging
import random
import statistics
from collections.abc import Iterator

import botocore.exceptions
import pytest

from aiostream_chat import (
    AccessDeniedError,
    AsyncConversation,
    ChatError,
    ConnectionLostError,
    IdleTimeoutError,
    InternalServerError,
    InvalidRequestError,
    ResourceNotFoundError,
    Retrying,
    RetryPolicy,
    ServiceUnavailableError,
    TextDelta,
    ThrottlingError,
    Timeouts,
    TotalTimeoutError,
)
from aiostream_chat.testing import FakeBedrock, Fault, Script, no_backoff, reply, set_backoff

from .conftest import HISTORY, MakeConv

CHUNKS = ["one ", "two ", "three ", "four"]
TEXT = "".join(CHUNKS)


@pytest.fixture
def seeded() -> Iterator[None]:
    """A fixed seed for the jitter draws, and the global random state restored afterwards."""
    state = random.getstate()
    random.seed(20240601)
    try:
        yield
    finally:
        random.setstate(state)


def _text(fault: Fault | None = None) -> Script:
    return reply(TEXT, chunks=CHUNKS, fault=fault)


# -- what is retried ----------------------------------------------------------------------------

NEVER_RETRIED = {
    "http400-validation": (Fault.http(400), InvalidRequestError),
    "http403-access-denied": (Fault.http(403), AccessDeniedError),
    "http404-not-found": (Fault.http(404), ResourceNotFoundError),
    "in-stream-validation": (Fault.exception("validationException"), InvalidRequestError),
}


@pytest.mark.parametrize(("fault", "error"), list(NEVER_RETRIED.values()), ids=list(NEVER_RETRIED))
async def test_non_retryable_errors_are_raised_at_once(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, fault: Fault, error: type[ChatError]
) -> None:
    """Validation, access denied and not found fail on the first attempt, whatever the policy."""
    conv = make_conv(retry=RetryPolicy(max_attempts=5))
    fake_bedrock.enqueue(_text(fault), times=5)
    with pytest.raises(error) as caught:
        await conv.send("question")
    assert caught.value.attempts == 1
    assert not caught.value.retryable
    await fake_bedrock.assert_all_closed(1)


RETRYABLE_AFTER_TEXT = {
    "throttling": (Fault.exception("throttlingException", after=1), ThrottlingError),
    "service-unavailable": (
        Fault.exception("serviceUnavailableException", after=3),
        ServiceUnavailableError,
    ),
    "reset": (Fault.reset(after=1), ConnectionLostError),
}


@pytest.mark.parametrize(
    ("fault", "error"), list(RETRYABLE_AFTER_TEXT.values()), ids=list(RETRYABLE_AFTER_TEXT)
)
async def test_retryable_error_after_text_is_not_retried(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, fault: Fault, error: type[ChatError]
) -> None:
    """Once a delta reached the caller, even a retryable error is raised, with the text the
    caller saw as partial_text: a retry would show that text twice."""
    conv = make_conv(history=HISTORY, retry=RetryPolicy(max_attempts=5))
    fake_bedrock.enqueue(_text(fault), times=5)
    seen = []
    with pytest.raises(error) as caught:
        async for text in conv.stream("question"):
            seen.append(text)
    assert caught.value.retryable
    assert caught.value.attempts == 1
    assert caught.value.partial_text == "".join(CHUNKS[: fault.after]) == "".join(seen)
    assert conv.history == HISTORY
    await fake_bedrock.assert_all_closed(1)


async def test_reasoning_delta_counts_as_content(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A reasoning delta is content too: after one reached the caller, no retry (even though
    no text was shown), and partial_text is empty."""
    conv = make_conv(retry=RetryPolicy(max_attempts=3))
    script = reply(
        TEXT,
        reasoning="thinking hard about it",
        fault=Fault.exception("throttlingException", after=1),
    )
    fake_bedrock.enqueue(script, times=3)
    with pytest.raises(ThrottlingError) as caught:
        await conv.send("question")
    assert caught.value.attempts == 1
    assert caught.value.partial_text == ""
    await fake_bedrock.assert_all_closed(1)


async def test_events_before_content_do_not_block_a_retry(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """messageStart reaching the caller is not content: a fault right after it is retried, and
    the events view shows MessageStart, Retrying, then the new attempt's events."""
    conv = make_conv(retry=RetryPolicy(max_attempts=2))
    fake_bedrock.enqueue(_text(Fault.exception("internalServerException", after=0)), _text())
    stream = conv.stream("question")
    kinds = [type(e).__name__ async for e in stream.events()]
    assert kinds[:3] == ["MessageStart", "Retrying", "MessageStart"]
    assert kinds.count("Retrying") == 1
    assert (await stream.get_reply()).text == TEXT


async def test_idle_and_total_timeouts_are_not_retried(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """IdleTimeoutError (text was delivered) and TotalTimeoutError (budget spent) end the turn
    on the attempt where they happened."""
    conv = make_conv(retry=RetryPolicy(max_attempts=4))
    fake_bedrock.enqueue(_text(Fault.stall(10, after=1)), times=4)
    with pytest.raises(IdleTimeoutError) as idle:
        await conv.send("question", timeouts=Timeouts(idle=0.2))
    assert idle.value.attempts == 1
    await fake_bedrock.assert_all_closed(1)
    fake_bedrock.reset()
    fake_bedrock.enqueue(reply(TEXT, header_delay=10), times=4)
    with pytest.raises(TotalTimeoutError) as total:
        await conv.send("question", timeouts=Timeouts(total=0.5))
    assert total.value.attempts == 1
    assert not total.value.retryable
    await fake_bedrock.assert_all_closed(1)


# -- exhaustion and counting ----------------------------------------------------------------


async def test_exhausted_retries_raise_the_last_error(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Three different retryable failures: the third (last) is raised as itself, not wrapped,
    with attempts=3 and botocore's error as its cause; the Retrying events carry the first
    two."""
    conv = make_conv(history=HISTORY, retry=RetryPolicy(max_attempts=3))
    fake_bedrock.enqueue(_text(Fault.http(429)), _text(Fault.http(503)), _text(Fault.http(500)))
    stream = conv.stream("question")
    retries: list[Retrying] = []
    with pytest.raises(ChatError) as caught:
        async for event in stream.events():
            if isinstance(event, Retrying):
                retries.append(event)
    assert type(caught.value) is InternalServerError
    assert caught.value.attempts == 3
    assert isinstance(caught.value.__cause__, botocore.exceptions.ClientError)
    assert [(r.attempt, type(r.error)) for r in retries] == [
        (2, ThrottlingError),
        (3, ServiceUnavailableError),
    ]
    assert [r.error.attempts for r in retries] == [1, 2]
    assert stream.error is caught.value
    assert conv.history == HISTORY
    await fake_bedrock.assert_all_closed(3)


async def test_reply_counts_attempts(fake_bedrock: FakeBedrock, conv: AsyncConversation) -> None:
    """Reply.metrics.attempts counts every attempt, the successful one included."""
    fake_bedrock.enqueue(_text(Fault.http(429)), _text(Fault.eof()), _text())
    result = await conv.send("question")
    assert result.metrics.attempts == 3
    assert result.text == TEXT
    fake_bedrock.enqueue(_text())
    assert (await conv.send("again")).metrics.attempts == 1


async def test_policy_none_is_one_attempt(fake_bedrock: FakeBedrock, make_conv: MakeConv) -> None:
    """RetryPolicy.none() makes exactly one attempt, for the turn and per-turn override alike."""
    assert RetryPolicy.none().max_attempts == 1
    conv = make_conv(retry=RetryPolicy.none())
    fake_bedrock.enqueue(_text(Fault.http(503)), times=3)
    with pytest.raises(ServiceUnavailableError) as caught:
        await conv.send("question")
    assert caught.value.attempts == 1
    await fake_bedrock.assert_all_closed(1)


async def test_per_turn_retry_override(fake_bedrock: FakeBedrock, make_conv: MakeConv) -> None:
    """`stream(..., retry=)` replaces the conversation's policy for that turn only."""
    conv = make_conv(retry=RetryPolicy.none())
    fake_bedrock.enqueue(_text(Fault.http(429)), _text())
    result = await conv.send("question", retry=RetryPolicy(max_attempts=2))
    assert result.metrics.attempts == 2
    fake_bedrock.enqueue(_text(Fault.http(429)), _text())
    with pytest.raises(ThrottlingError):
        await conv.send("question")


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_botocore_retries_are_off(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, status: int
) -> None:
    """On a client the conversation creates, botocore does not retry on its own: one error
    response with RetryPolicy.none() is exactly one request on the wire."""
    conv = make_conv(retry=RetryPolicy.none())
    fake_bedrock.enqueue(_text(Fault.http(status)), times=6)
    with pytest.raises(ChatError):
        await conv.send("question")
    await fake_bedrock.assert_all_closed(1)


# -- backoff -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("seeded", "real_backoff")
def test_backoff_is_exponential_with_full_jitter() -> None:
    """delay(n) is uniform on [0, min(max_delay, initial * 2**(n-1))]: every draw in range,
    mean near half the cap, spread over the whole range."""
    policy = RetryPolicy(max_attempts=10, initial_delay=0.5, max_delay=3.0)
    for retry, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        draws = [policy.delay(retry) for _ in range(4000)]
        assert all(0.0 <= d <= cap for d in draws)
        assert statistics.fmean(draws) == pytest.approx(cap / 2, rel=0.05)
        assert min(draws) < cap * 0.02 and max(draws) > cap * 0.98
        # Uniform: a quarter of the draws in each quarter of the range, roughly.
        quarters = [sum(q * cap / 4 <= d < (q + 1) * cap / 4 for d in draws) for q in range(4)]
        assert all(800 < n < 1200 for n in quarters)


@pytest.mark.usefixtures("real_backoff")
def test_backoff_without_jitter_is_the_cap() -> None:
    """jitter=False gives exactly initial * 2**(n-1), capped by max_delay, even for huge n."""
    policy = RetryPolicy(max_attempts=5000, initial_delay=0.25, max_delay=5.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.delay(4000) == 5.0  # no float overflow on a long run


def test_backoff_switch_is_reversible() -> None:
    """set_backoff(enabled) switches at once and, used in ``with``, restores the previous mode;
    no_backoff() is the shorthand for set_backoff(False)."""
    policy = RetryPolicy(initial_delay=5, jitter=False)
    assert policy.delay(3) == 0.0  # the suite's autouse no_backoff()
    with set_backoff(True):
        assert policy.delay(3) == 20.0
        with no_backoff():
            assert policy.delay(3) == 0.0
        assert policy.delay(3) == 20.0
        restore = set_backoff(False)  # switches without a `with` too
        assert policy.delay(3) == 0.0
        with restore:
            pass
        assert policy.delay(3) == 20.0
    assert policy.delay(3) == 0.0
    with pytest.raises(TypeError, match="bool"):
        set_backoff(1)  # type: ignore[arg-type]


@pytest.mark.usefixtures("real_backoff")
async def test_backoff_sleeps_really_happen(fake_bedrock: FakeBedrock, make_conv: MakeConv) -> None:
    """With real (small) backoff, the Retrying delays are the policy's, the emulator sees the
    attempts at least that far apart, and the reply still arrives once."""
    conv = make_conv(
        retry=RetryPolicy(max_attempts=3, initial_delay=0.1, max_delay=0.15, jitter=False)
    )
    await conv.__aenter__()
    fake_bedrock.enqueue(_text(Fault.http(429)), _text(Fault.exception("throttlingException")))
    fake_bedrock.enqueue(_text())
    stream = conv.stream("question")
    delays, texts = [], []
    async for event in stream.events():
        if isinstance(event, Retrying):
            delays.append(event.delay)
        elif isinstance(event, TextDelta):
            texts.append(event.text)
    assert delays == [0.1, 0.15]
    assert texts == CHUNKS
    times = [r.time for r in fake_bedrock.requests]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.1
    assert times[2] - times[1] >= 0.15
    assert times[2] - times[0] < 0.25 + 1.5  # generous: the sleeps are not much longer


@pytest.mark.usefixtures("real_backoff", "seeded")
async def test_jittered_backoff_matches_retrying_events(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """With jitter, each Retrying.delay lies within its cap and the emulator sees the next
    attempt no sooner than that delay."""
    conv = make_conv(retry=RetryPolicy(max_attempts=4, initial_delay=0.1, max_delay=0.3))
    await conv.__aenter__()
    fake_bedrock.enqueue(_text(Fault.http(503)), times=3)
    fake_bedrock.enqueue(_text())
    stream = conv.stream("question")
    delays = [e.delay async for e in stream.events() if isinstance(e, Retrying)]
    assert (await stream.get_reply()).metrics.attempts == 4
    assert len(delays) == 3
    assert all(0 <= d <= cap for d, cap in zip(delays, [0.1, 0.2, 0.3], strict=True))
    times = [r.time for r in fake_bedrock.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= d for gap, d in zip(gaps, delays, strict=True))


# -- logging -----------------------------------------------------------------------------------


async def test_retries_logged_at_info_without_prompt(
    fake_bedrock: FakeBedrock, conv: AsyncConversation, caplog: pytest.LogCaptureFixture
) -> None:
    """Each retry is logged at INFO on the "aiostream_chat" logger with the attempt and error
    type; nothing logged at any level contains the prompt or the reply text."""
    secret = "my-secret-prompt-7c1e"
    fake_bedrock.enqueue(_text(Fault.http(429)), _text(Fault.http(503)), _text())
    with caplog.at_level(logging.DEBUG, logger="aiostream_chat"):
        await conv.send(secret)
    ours = [r for r in caplog.records if r.name == "aiostream_chat"]
    retries = [r for r in ours if r.levelno == logging.INFO]
    assert len(retries) == 2
    assert "ThrottlingError" in retries[0].getMessage()
    assert "attempt 2" in retries[0].getMessage()
    assert "ServiceUnavailableError" in retries[1].getMessage()
    assert "attempt 3" in retries[1].getMessage()
    assert all(r.levelno <= logging.INFO for r in ours)
    for record in ours:
        assert secret not in record.getMessage()
        assert TEXT not in record.getMessage()


async def test_no_info_log_without_retry(
    fake_bedrock: FakeBedrock, conv: AsyncConversation, caplog: pytest.LogCaptureFixture
) -> None:
    """A turn that succeeds first time logs nothing at INFO or above."""
    fake_bedrock.enqueue(_text())
    with caplog.at_level(logging.INFO, logger="aiostream_chat"):
        await conv.send("question")
    assert [r for r in caplog.records if r.name == "aiostream_chat"] == []
