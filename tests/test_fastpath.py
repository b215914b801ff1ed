"""The fast path sends what botocore would (signed the same way), falls back to botocore where
it cannot prove that, and behaves the same on both paths: errors, API keys, TLS, resets."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aioboto3
import pytest
import pytest_asyncio
import trustme
from aiobotocore.config import AioConfig
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from aiostream_chat import (
    AccessDeniedError,
    AsyncConversation,
    ChatError,
    ConnectionLostError,
    InternalServerError,
    Retrying,
    RetryPolicy,
    ServiceUnavailableError,
    ThrottlingError,
    _fastpath,
)
from aiostream_chat.testing import FakeBedrock, Script, reply

from .conftest import MODEL, MakeConv

ROOT = Path(__file__).resolve().parent.parent
KEY = "bedrock-api-key-never-shown-0123456789"


@pytest.fixture(params=["fast", "botocore"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test once on each request path."""
    monkeypatch.setattr(_fastpath, "enabled", request.param == "fast")
    yield str(request.param)


def _sent_by_fast_path(fake: FakeBedrock) -> bool:
    return fake.requests[-1].headers["User-Agent"].startswith("aiostream-chat/")


async def test_request_is_what_botocore_would_sign(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """The fast path posts our JSON to /model/{percent-encoded id}/converse-stream with a SigV4
    signature that botocore's own signer computes for exactly the bytes that arrived."""
    model = "arn:aws:bedrock:us-east-1:123:inference-profile/us.amazon.nova-micro-v1:0"
    await make_conv(model, system="be brief").send("hello")
    got = fake_bedrock.requests[-1]
    assert _sent_by_fast_path(fake_bedrock)
    assert got.path == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2F"
        "us.amazon.nova-micro-v1%3A0/converse-stream"
    )
    assert got.model_id == model and got.auth == "sigv4"
    body = json.dumps(got.body, separators=(",", ":")).encode()
    request = AWSRequest(
        method="POST",
        url=fake_bedrock.endpoint_url + got.path,
        data=body,
        headers={"Content-Type": "application/json", "X-Amz-Date": got.headers["x-amz-date"]},
    )
    request.context["timestamp"] = got.headers["x-amz-date"]
    signer = SigV4Auth(Credentials("AKIDTEST", "test-secret"), "bedrock", "us-east-1")
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    assert got.headers["Authorization"].endswith(f"Signature={signature}")


async def test_switch_takes_the_botocore_path(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the fast path off (AIOSTREAM_CHAT_FASTPATH=0), aiobotocore sends the request."""
    monkeypatch.setattr(_fastpath, "enabled", False)
    await make_conv().send("hello")
    assert fake_bedrock.requests[-1].headers["User-Agent"].startswith("aiobotocore/")


async def test_a_users_event_hook_takes_the_botocore_path(
    fake_bedrock: FakeBedrock, session: aioboto3.Session
) -> None:
    """A client with an event hook of the user's own goes through botocore, so the hook runs."""
    seen: list[str] = []

    def hook(**kwargs: Any) -> None:
        seen.append(kwargs["event_name"])

    async with session.client("bedrock-runtime", endpoint_url=fake_bedrock.endpoint_url) as client:
        client.meta.events.register("before-send.bedrock-runtime.ConverseStream", hook)
        conv = AsyncConversation(MODEL, client=client)
        assert (await conv.send("hello")).text
    assert seen == ["before-send.bedrock-runtime.ConverseStream"]
    assert not _sent_by_fast_path(fake_bedrock)


@pytest.mark.parametrize(
    "config",
    [
        AioConfig(use_fips_endpoint=True),
        AioConfig(use_dualstack_endpoint=True),
        AioConfig(proxies={"https": "http://127.0.0.1:9"}),
    ],
    ids=["fips", "dualstack", "proxy"],
)
async def test_endpoints_botocore_must_build_take_its_path(
    session: aioboto3.Session, config: AioConfig
) -> None:
    """FIPS, dual-stack and proxied endpoints are left to botocore (no fast route)."""
    async with session.client("bedrock-runtime", config=config) as client:
        assert await _fastpath.route(client) is None


async def test_plain_client_gets_a_fast_route(session: aioboto3.Session) -> None:
    """A regional client resolves to botocore's regional endpoint and SigV4 name, once."""
    async with session.client("bedrock-runtime") as client:
        route = await _fastpath.route(client)
        assert route is not None
        assert route.base_url == "https://bedrock-runtime.us-east-1.amazonaws.com"
        assert (route.host, route.region, route.service) == (
            "bedrock-runtime.us-east-1.amazonaws.com",
            "us-east-1",
            "bedrock",
        )
        assert await _fastpath.route(client) is route


def _http_error(status: int, code: str | None, body: bytes) -> Script:
    headers = [("Content-Type", "application/json")]
    if code:
        headers.append(("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/com.amazon/"))
    return Script(body=(body,), status=status, headers=tuple(headers))


ERRORS = {
    "throttled": (
        _http_error(429, "ThrottlingException", b'{"message":"slow down"}'),
        ThrottlingError,
    ),
    "type-in-body": (
        _http_error(403, None, b'{"__type":"com.amazon#AccessDeniedException","message":"no"}'),
        AccessDeniedError,
    ),
    "empty-500": (_http_error(500, None, b""), InternalServerError),
    "html-502": (_http_error(502, None, b"<html>Bad Gateway</html>"), ServiceUnavailableError),
}


@pytest.mark.parametrize("name", list(ERRORS))
async def test_http_errors_match_on_both_paths(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, name: str, path: str
) -> None:
    """An HTTP error before the stream gives the same class, code, message, status and request
    id on both paths, with botocore's ClientError as its cause."""
    script, cls = ERRORS[name]
    fake_bedrock.enqueue(script)
    with pytest.raises(ChatError) as caught:
        await make_conv(retry=RetryPolicy.none()).send("hi")
    error = caught.value
    assert type(error) is cls
    assert isinstance(error.__cause__, ClientError)
    assert error.status_code == script.status
    expected = {
        "throttled": ("ThrottlingException", "slow down"),
        "type-in-body": ("AccessDeniedException", "no"),
        "empty-500": ("500", "Internal Server Error"),
        "html-502": ("502", "Bad Gateway"),
    }[name]
    assert (error.code, error.message) == expected
    # botocore drops the request id of an error body it cannot parse; the fast path keeps it.
    assert error.request_id or (path == "botocore" and name in ("empty-500", "html-502"))
    assert _sent_by_fast_path(fake_bedrock) == (path == "fast")


async def test_api_key_is_sent_as_bearer_on_both_paths(
    fake_bedrock: FakeBedrock, path: str
) -> None:
    """api_key= authenticates with Authorization: Bearer <key> instead of SigV4."""
    async with AsyncConversation(
        MODEL, region_name="us-east-1", endpoint_url=fake_bedrock.endpoint_url, api_key=KEY
    ) as conv:
        await conv.send("hello")
    got = fake_bedrock.requests[-1]
    assert got.auth == "bearer" and got.headers["Authorization"] == f"Bearer {KEY}"
    assert _sent_by_fast_path(fake_bedrock) == (path == "fast")


async def test_env_bearer_token_works_as_botocore_defines_it(
    fake_bedrock: FakeBedrock, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_BEARER_TOKEN_BEDROCK, set when the client is created, makes requests bearer-signed."""
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "env-token")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    async with AsyncConversation(
        MODEL, region_name="us-east-1", endpoint_url=fake_bedrock.endpoint_url
    ) as conv:
        await conv.send("hello")
    assert fake_bedrock.requests[-1].headers["Authorization"] == "Bearer env-token"


async def test_api_key_never_shows(
    fake_bedrock: FakeBedrock, caplog: pytest.LogCaptureFixture
) -> None:
    """The key appears in no repr, snapshot, error or log line (debug level included)."""
    caplog.set_level(logging.DEBUG)
    fake_bedrock.enqueue(_http_error(403, "AccessDeniedException", b'{"message":"denied"}'))
    conv = AsyncConversation(
        MODEL, region_name="us-east-1", endpoint_url=fake_bedrock.endpoint_url, api_key=KEY
    )
    async with conv:
        with pytest.raises(AccessDeniedError) as caught:
            await conv.send("hi")
        await conv.send("hi")
        shown = [
            repr(conv),
            repr(conv.__dict__),
            repr(conv._clients.__dict__),
            conv.snapshot().model_dump_json(),
            str(caught.value),
            repr(caught.value),
            repr(caught.value.__cause__),
            caplog.text,
        ]
    assert not [text for text in shown if KEY in text]


def test_api_key_is_checked_before_io(session: aioboto3.Session) -> None:
    """A wrong api_key is refused at construction, and it cannot apply to a given client."""
    with pytest.raises(TypeError, match="api_key"):
        AsyncConversation(MODEL, api_key=123)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="api_key"):
        AsyncConversation(MODEL, api_key=" ")
    with pytest.raises(ValueError, match="api_key"):
        AsyncConversation(MODEL, client=SimpleNamespace(converse_stream=1, meta=1), api_key=KEY)


@pytest_asyncio.fixture
async def drop_first_request(fake_bedrock: FakeBedrock) -> AsyncIterator[str]:
    """A loopback proxy to the emulator that reads the first request and closes without a word
    (what a pooled connection the server timed out looks like); the rest pass through."""
    dropped = False
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal dropped
        writers.append(writer)
        if not dropped:
            dropped = True
            await reader.readuntil(b"\r\n\r\n")
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", fake_bedrock.port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.close()
    for writer in writers:
        writer.close()
    await server.wait_closed()


async def test_connection_closed_before_response_is_retried(
    drop_first_request: str, make_conv: MakeConv, path: str
) -> None:
    """A connection closed after the request and before any response is a retryable
    ConnectionLostError: the turn retries on a new connection and completes."""
    conv = make_conv(endpoint_url=drop_first_request)
    events = [event async for event in conv.stream("hello").events()]
    retries = [e for e in events if isinstance(e, Retrying)]
    assert len(retries) == 1 and isinstance(retries[0].error, ConnectionLostError)
    assert conv.history[-1].text


@pytest.fixture(scope="module")
def tls() -> Iterator[tuple[ssl.SSLContext, str]]:
    """A self-signed CA and a server context for 127.0.0.1 (trustme)."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    with ca.cert_pem.tempfile() as ca_path:
        yield server, ca_path


async def test_tls_emulator_on_both_paths(
    tls: tuple[ssl.SSLContext, str], session: aioboto3.Session, path: str
) -> None:
    """FakeBedrock serves HTTPS with ssl_context=; a client that trusts its CA (verify=)
    streams over TLS on either path, reusing one connection for consecutive turns."""
    server_context, ca_path = tls
    async with FakeBedrock(ssl_context=server_context) as fake:
        assert fake.endpoint_url.startswith("https://127.0.0.1:")
        async with session.client(
            "bedrock-runtime", endpoint_url=fake.endpoint_url, verify=ca_path
        ) as client:
            conv = AsyncConversation(MODEL, client=client)
            fake.enqueue(reply("secure"), reply("again"))
            assert (await conv.send("one")).text == "secure"
            assert (await conv.send("two")).text == "again"
        assert _sent_by_fast_path(fake) == (path == "fast")


async def test_pool_wait_is_logged_once(
    fake_bedrock: FakeBedrock, make_conv: MakeConv, caplog: pytest.LogCaptureFixture
) -> None:
    """When every pooled connection is busy, one warning says turns wait (and how to fix it)."""
    fake_bedrock.enqueue(
        reply("slow reply here", chunks=["slow ", "reply ", "here"], delay=0.05), times=6
    )
    conv = make_conv(max_connections=2)
    for _ in range(2):
        replies = await asyncio.gather(*(conv.fork().send("hi") for _ in range(3)))
        assert [r.text for r in replies] == ["slow reply here"] * 3
    waits = [r for r in caplog.records if "pooled connections are in use" in r.getMessage()]
    assert len(waits) == 1 and "max_connections=" in waits[0].getMessage()


@pytest.mark.timeout(900)
def test_suite_passes_on_the_botocore_path() -> None:
    """The turns, fault-matrix, error-mapping and httpx tests also pass with the fast path off."""
    files = [
        "test_turns.py",
        "test_fault_matrix.py",
        "test_error_mapping.py",
        "test_httpx_backend.py",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
        + [str(ROOT / "tests" / name) for name in files],
        cwd=ROOT,
        env={**os.environ, "AIOSTREAM_CHAT_FASTPATH": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
