"""AsyncConversation on aiobotocore's httpx backend, with ConverseStream mocked in-process by
respx (aiostream_chat.testing.RespxBedrock): streaming, error mapping, retries, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import pytest
import pytest_asyncio
import respx
from aiobotocore.config import AioConfig
from aiobotocore.httpxsession import HttpxSession

from aiostream_chat import (
    AsyncConversation,
    ConnectionLostError,
    IdleTimeoutError,
    RetryPolicy,
    ThrottlingError,
    Timeouts,
)
from aiostream_chat.testing import Fault, RespxBedrock, reply

ENDPOINT = "https://bedrock-runtime.us-east-1.amazonaws.com"


@pytest_asyncio.fixture
async def mocked() -> AsyncIterator[RespxBedrock]:
    with respx.mock(using="httpx", assert_all_called=False) as router:
        yield RespxBedrock(router)


@pytest_asyncio.fixture
async def httpx_client(session: aioboto3.Session) -> AsyncIterator[Any]:
    config = AioConfig(http_session_cls=HttpxSession, retries={"total_max_attempts": 1})
    async with session.client("bedrock-runtime", endpoint_url=ENDPOINT, config=config) as client:
        yield client


async def test_streams_text_over_httpx(mocked: RespxBedrock, httpx_client: Any) -> None:
    """Text deltas arrive one by one and the turn commits, exactly as on aiohttp."""
    mocked.enqueue(reply("one two three", chunks=["one", " two", " three"]))
    conv = AsyncConversation("us.amazon.nova-micro-v1:0", client=httpx_client)
    chunks = [c async for c in conv.stream("count")]
    assert chunks == ["one", " two", " three"]
    assert [m.text for m in conv.history] == ["count", "one two three"]
    assert mocked.model_ids == ["us.amazon.nova-micro-v1:0"]
    assert mocked.body()["messages"][0]["content"] == [{"text": "count"}]
    await conv.aclose()  # a user-supplied client stays open
    assert (await AsyncConversation("m", client=httpx_client).send("again")).text


async def test_in_stream_exception_maps_over_httpx(mocked: RespxBedrock, httpx_client: Any) -> None:
    """An in-stream throttlingException after text is ThrottlingError with the partial text."""
    mocked.enqueue(reply("a b c", chunks=3, fault=Fault.exception("throttlingException", after=2)))
    conv = AsyncConversation("m", client=httpx_client)
    with pytest.raises(ThrottlingError) as info:
        await conv.send("hi")
    assert info.value.partial_text == "a b" and info.value.attempts == 1
    assert conv.history == ()


async def test_http_429_is_retried_over_httpx(mocked: RespxBedrock, httpx_client: Any) -> None:
    """A 429 before the stream is retried by our policy and the second attempt succeeds."""
    mocked.enqueue(reply(fault=Fault.http(429)), reply("recovered"))
    conv = AsyncConversation("m", client=httpx_client, retry=RetryPolicy(max_attempts=2))
    result = await conv.send("hi")
    assert result.text == "recovered" and result.metrics.attempts == 2
    assert len(mocked.requests) == 2


async def test_reset_maps_to_connection_lost(mocked: RespxBedrock, httpx_client: Any) -> None:
    """An httpx read error mid-stream is ConnectionLostError; the httpx exception is the cause."""
    mocked.enqueue(reply("a b c", chunks=["a", " b", " c"], fault=Fault.reset(after=1)))
    conv = AsyncConversation("m", client=httpx_client, retry=RetryPolicy.none())
    with pytest.raises(ConnectionLostError) as info:
        await conv.send("hi")
    assert type(info.value.__cause__).__module__.startswith("httpx")
    assert info.value.partial_text == "a"


async def test_stall_maps_to_idle_timeout(mocked: RespxBedrock, httpx_client: Any) -> None:
    """Our idle deadline applies on httpx too."""
    mocked.enqueue(reply("a b c", chunks=3, fault=Fault.stall(5, after=1)))
    conv = AsyncConversation("m", client=httpx_client, timeouts=Timeouts(idle=0.2))
    with pytest.raises(IdleTimeoutError):
        await conv.send("hi")
    await asyncio.sleep(0)  # let the scheduled close run
    assert mocked.closed_early == 1


async def test_break_closes_httpx_response(mocked: RespxBedrock, httpx_client: Any) -> None:
    """Leaving the loop early closes the httpx response and frees the conversation."""
    mocked.enqueue(reply("a b c d e", chunks=5, delay=0.01), reply("next"))
    conv = AsyncConversation("m", client=httpx_client)
    async for _ in conv.stream("hi"):
        break
    assert not conv.busy and conv.history == ()
    await asyncio.sleep(0.01)  # the scheduled aclose() runs on the next loop pass
    assert mocked.closed_early == 1
    assert (await conv.send("again")).text == "next"


async def test_cancelled_task_closes_httpx_response(
    mocked: RespxBedrock, httpx_client: Any
) -> None:
    """Cancelling the consuming task mid-stream closes the response; history unchanged."""
    mocked.enqueue(reply("a b c d e f", chunks=6, delay=0.2))
    conv = AsyncConversation("m", client=httpx_client)
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in conv.stream("hi"):
            got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.01)
    assert mocked.closed_early == 1 and not conv.busy and conv.history == ()
