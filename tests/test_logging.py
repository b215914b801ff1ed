"""Logging: every record of the "aiostream_chat" logger carries `request_id` and `model_id`
as extra fields, and none holds prompt text, reply text or credentials."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from aiostream_chat import AsyncConversation, ThrottlingError
from aiostream_chat.testing import FakeBedrock, Fault, Script, reply

from .conftest import MODEL, MakeConv

SECRET_PROMPT = "my-secret-prompt-51a9"
REPLY_TEXT = "a reply that must never be logged"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _text(fault: Fault | None = None) -> Script:
    return reply(REPLY_TEXT, chunks=4, fault=fault)


def _ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    records = [r for r in caplog.records if r.name.startswith("aiostream_chat")]
    assert records, "the library logged nothing"
    return records


def _check_clean(records: list[logging.LogRecord]) -> None:
    for record in records:
        assert getattr(record, "model_id", "missing") == MODEL, record.getMessage()
        assert hasattr(record, "request_id"), record.getMessage()
        text = record.getMessage() + repr(record.__dict__)
        for secret in (SECRET_PROMPT, REPLY_TEXT, "test-secret", "AKIDTEST"):
            assert secret not in text, (secret, record.getMessage())


async def test_a_completed_turn_logs_its_request_id_and_model(
    fake_bedrock: FakeBedrock, conv: AsyncConversation, caplog: pytest.LogCaptureFixture
) -> None:
    """The DEBUG lines of a completed turn carry the model id, and the completion line
    carries the request id Bedrock returned (the reply's)."""
    fake_bedrock.enqueue(_text())
    with caplog.at_level(logging.DEBUG, logger="aiostream_chat"):
        result = await conv.send(SECRET_PROMPT)
    records = _ours(caplog)
    _check_clean(records)
    assert result.request_id is not None
    assert records[-1].request_id == result.request_id  # type: ignore[attr-defined]


async def test_retries_log_the_failed_attempts_request_id(
    fake_bedrock: FakeBedrock, conv: AsyncConversation, caplog: pytest.LogCaptureFixture
) -> None:
    """Each INFO retry line names the request id of the attempt that failed, which differs
    from the request id of the attempt that succeeded."""
    fake_bedrock.enqueue(_text(Fault.http(429)), _text())
    with caplog.at_level(logging.DEBUG, logger="aiostream_chat"):
        result = await conv.send(SECRET_PROMPT)
    records = _ours(caplog)
    _check_clean(records)
    (retry,) = [r for r in records if r.levelno == logging.INFO]
    failed_id = retry.request_id  # type: ignore[attr-defined]
    assert isinstance(failed_id, str) and UUID.match(failed_id)
    assert failed_id != result.request_id


async def test_a_failed_turn_logs_its_request_id(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, caplog: pytest.LogCaptureFixture
) -> None:
    """The failure line of a turn carries the request id that is also on the raised error."""
    from aiostream_chat import RetryPolicy

    conv = make_conv(retry=RetryPolicy.none())
    fake_bedrock.enqueue(_text(Fault.http(429)))
    with (
        caplog.at_level(logging.DEBUG, logger="aiostream_chat"),
        pytest.raises(ThrottlingError) as info,
    ):
        await conv.send(SECRET_PROMPT)
    records = _ours(caplog)
    _check_clean(records)
    assert info.value.request_id is not None
    assert records[-1].request_id == info.value.request_id  # type: ignore[attr-defined]


async def test_a_cancelled_turn_logs_cleanly(
    fake_bedrock: FakeBedrock, conv: AsyncConversation, caplog: pytest.LogCaptureFixture
) -> None:
    """Breaking out of a stream logs the cancellation with the model and request id."""
    fake_bedrock.enqueue(reply(REPLY_TEXT, chunks=8, delay=0.01))
    with caplog.at_level(logging.DEBUG, logger="aiostream_chat"):
        async for _ in conv.stream(SECRET_PROMPT):
            break
        await asyncio.sleep(0)
    records = _ours(caplog)
    _check_clean(records)
    assert UUID.match(str(records[-1].request_id))  # type: ignore[attr-defined]


async def test_fan_out_pool_warning_carries_the_model(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, caplog: pytest.LogCaptureFixture
) -> None:
    """The fan-out's WARNING about a small connection pool carries model_id (and a
    request_id of None: it is about no single request)."""
    conv = make_conv(max_connections=2)
    fake_bedrock.enqueue(_text(), times=3)
    with caplog.at_level(logging.WARNING, logger="aiostream_chat"):
        await conv.fan_out([SECRET_PROMPT] * 3, concurrency=3)
    (warning,) = [r for r in _ours(caplog) if r.levelno == logging.WARNING]
    _check_clean([warning])
    assert warning.request_id is None  # type: ignore[attr-defined]
