"""The aiobotocore adapter's assumptions, checked against the installed aiobotocore: if its
ConverseStream response changes shape, these fail loudly instead of streams breaking quietly."""

from __future__ import annotations

import aioboto3
import aiohttp
import pytest
from aiobotocore.config import AioConfig

from aiostream_chat._codec import EventStreamDecoder
from aiostream_chat._models import Message
from aiostream_chat._request import build_request
from aiostream_chat._transport import check_aiobotocore_shape, open_stream
from aiostream_chat.testing import FakeBedrock, reply

PARAMS = {"modelId": "m", "messages": [{"role": "user", "content": [{"text": "hi"}]}]}


async def test_raw_body_is_exposed_and_untouched(
    fake_bedrock: FakeBedrock, session: aioboto3.Session
) -> None:
    """converse_stream returns an AioEventStream over an aiohttp response from which botocore
    has consumed nothing: the first frame we read ourselves is messageStart."""
    fake_bedrock.enqueue(reply("hello"))
    config = AioConfig(retries={"total_max_attempts": 1})
    async with session.client(
        "bedrock-runtime", endpoint_url=fake_bedrock.endpoint_url, config=config
    ) as client:
        response = await client.converse_stream(**PARAMS)
        raw = check_aiobotocore_shape(response["stream"])
        assert isinstance(raw, aiohttp.ClientResponse)
        decoder, frames = EventStreamDecoder(), []
        while chunk := await raw.content.readany():
            frames += decoder.feed(chunk)
        raw.close()
    assert frames[0].headers[":event-type"] == "messageStart"
    assert frames[-1].headers[":event-type"] == "metadata"


async def test_open_stream_reads_the_body(
    fake_bedrock: FakeBedrock, session: aioboto3.Session
) -> None:
    """The adapter yields the body bytes and the x-amzn-RequestId of the response."""
    fake_bedrock.enqueue(reply("hello"))
    async with session.client("bedrock-runtime", endpoint_url=fake_bedrock.endpoint_url) as client:
        request = build_request(model_id="m", messages=[Message.user("hi")])
        body = await open_stream(client, request)
        data = b""
        while chunk := await body.read():
            data += chunk
        body.close()
    assert body.request_id and len(EventStreamDecoder().feed(data)) > 3


def test_unknown_shape_fails_loudly() -> None:
    """Anything but aiobotocore's event stream is refused with a message naming the cause."""
    with pytest.raises(RuntimeError, match=r"no longer exposes AioEventStream\._raw_stream"):
        check_aiobotocore_shape(object())
