"""The aiobotocore adapter's assumptions, checked against the installed aiobotocore: if its
ConverseStream response changes shape, these fail loudly instead of streams breaking quietly."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aioboto3
import aiohttp
import botocore.session
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.parsers import create_parser
from botocore.tokens import FrozenAuthToken
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostream_chat import _fastpath
from aiostream_chat._client import KEEPALIVE_TIMEOUT
from aiostream_chat._codec import EventStreamDecoder
from aiostream_chat._fastpath import check_botocore_shape, foreign_hooks
from aiostream_chat._http_errors import client_error
from aiostream_chat._models import Message
from aiostream_chat._request import build_request
from aiostream_chat._signing import check_signer_shape, sigv4_headers, use_api_key
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


# -- the fast path's reliance on botocore/aiobotocore internals --------------------------------


async def test_botocore_internals_the_fast_path_uses(session: aioboto3.Session) -> None:
    """The client exposes what the fast path reads: its aiohttp session and pool, proxy config,
    endpoint ruleset (whose only parameters are per client), signer and event handlers."""
    async with session.client("bedrock-runtime") as client:
        check_botocore_shape(client)
        http_session = client._endpoint.http_session
        assert isinstance(http_session, AIOHTTPSession)
        assert isinstance(await http_session._get_session(None), aiohttp.ClientSession)
        assert http_session._proxy_config.proxy_url_for("https://x.amazonaws.com") is None
        params = client._ruleset_resolver._param_definitions
        assert set(params) == {"Region", "UseDualStack", "UseFIPS", "Endpoint"}
        assert foreign_hooks(client) == []
        signer = client._request_signer
        assert signer._signing_name == "bedrock"
        route = await _fastpath.route(client)
        assert route is not None
        assert (
            await signer._choose_signer("ConverseStream", "standard", dict(route.context)) == "v4"
        )
        credentials = await signer._credentials.get_frozen_credentials()
        assert credentials.access_key == "AKIDTEST"


def test_missing_internals_fail_loudly() -> None:
    """A client without the attributes the fast path relies on is refused with a clear message."""

    class Meta:
        events = object()

    class Stub:
        _request_signer = type("Signer", (), {"_auth_token": None})()
        meta = Meta()

    with pytest.raises(RuntimeError, match=r"internals changed \(missing: client\._endpoint"):
        check_botocore_shape(Stub())
    with pytest.raises(RuntimeError, match="bearer-token support"):
        check_signer_shape(object())


async def test_shared_pool_keeps_connections_across_chat_pauses(
    fake_bedrock: FakeBedrock, make_conv: Any
) -> None:
    """Our clients keep idle connections KEEPALIVE_TIMEOUT seconds (aiobotocore: 12)."""
    conv = make_conv()
    await conv.send("hi")
    client = await conv._clients.get()
    pool = (await client._endpoint.http_session._get_session(None)).connector
    assert pool._keepalive_timeout == KEEPALIVE_TIMEOUT > 30
    assert len(pool._conns) == 1  # the turn's connection went back to the pool


@settings(max_examples=60, deadline=None)
@given(
    model_id=st.text(min_size=1, max_size=40).filter(lambda m: m not in (".", "..")),
    body=st.binary(max_size=200),
    token=st.none() | st.text(alphabet="abcXYZ019+/=", min_size=1, max_size=30),
    port=st.none() | st.integers(1, 65535),
)
def test_sigv4_matches_botocore(
    model_id: str, body: bytes, token: str | None, port: int | None
) -> None:
    """Our SigV4 headers equal botocore's SigV4Auth for every model id, body, session token and
    port (the fast path's signature is botocore's signature)."""
    credentials = Credentials("AKIDEXAMPLE", "secret/key+value", token)
    host = "bedrock-runtime.us-west-2.amazonaws.com" + (f":{port}" if port else "")
    path = f"/model/{quote(model_id, safe='-_.~')}/converse-stream"
    request = AWSRequest(
        method="POST",
        url=f"https://{host}{path}",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(credentials, "bedrock", "us-west-2").add_auth(request)
    ours = sigv4_headers(
        credentials.get_frozen_credentials(),
        region="us-west-2",
        service="bedrock",
        host=host,
        path=path,
        body=body,
        amz_date=request.headers["X-Amz-Date"],
    )
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours.get("x-amz-security-token") == request.headers.get("X-Amz-Security-Token")


ERROR_RESPONSES = [
    (429, {"x-amzn-ErrorType": "ThrottlingException:http://internal/"}, b'{"message":"slow"}'),
    (400, {}, b'{"__type":"com.amazonaws#ValidationException","message":"bad"}'),
    (403, {}, b'{"code":"AccessDeniedException","Message":"no"}'),
    (500, {}, b""),
    (502, {}, b"<html>Bad Gateway</html>"),
    (424, {"x-amzn-ErrorType": "ModelErrorException"}, b'{"message":"m","originalStatusCode":500}'),
]


@pytest.mark.parametrize(("status", "headers", "body"), ERROR_RESPONSES)
def test_error_responses_parse_like_botocore(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    """Our parse of an HTTP error response gives botocore's error code and message."""
    headers = {**headers, "x-amzn-RequestId": "rid-1"}
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    operation = model.operation_model("ConverseStream")
    parsed = create_parser("rest-json").parse(
        {
            "status_code": status,
            "headers": {k.lower(): v for k, v in headers.items()},
            "body": body,
        },
        operation.output_shape,
    )
    ours = client_error(status, headers, body).response
    assert ours["Error"]["Code"] == parsed["Error"]["Code"]
    assert ours["Error"]["Message"] == parsed["Error"]["Message"]
    assert ours["ResponseMetadata"]["HTTPStatusCode"] == status


async def test_api_key_signer_hook(session: aioboto3.Session, fake_bedrock: FakeBedrock) -> None:
    """use_api_key() makes botocore's own converse_stream() send the key as a bearer token."""
    async with session.client("bedrock-runtime", endpoint_url=fake_bedrock.endpoint_url) as client:
        use_api_key(client, "the-key")
        assert isinstance(client._request_signer._auth_token, FrozenAuthToken)
        response = await client.converse_stream(**PARAMS)
        response["stream"].close()
    assert fake_bedrock.requests[-1].headers["Authorization"] == "Bearer the-key"
