"""Every Bedrock error, whether sent as an HTTP status before the stream or as an exception
frame inside it, becomes the same class of our tree, with botocore's original as __cause__."""

from __future__ import annotations

import socket

import aioboto3
import botocore.exceptions
import pytest

from aiostream_chat import (
    AccessDeniedError,
    AsyncConversation,
    BedrockError,
    ChatError,
    ConnectionLostError,
    InternalServerError,
    InvalidRequestError,
    ModelError,
    ModelNotReadyError,
    ModelStreamError,
    ModelTimeoutError,
    ResourceNotFoundError,
    RetryPolicy,
    ServiceUnavailableError,
    ThrottlingError,
    TransportError,
)
from aiostream_chat.testing import FakeBedrock, Fault, reply

from .conftest import MODEL

HTTP_ERRORS = [
    (400, "ValidationException", InvalidRequestError, False),
    (400, "ServiceQuotaExceededException", InvalidRequestError, False),
    (403, "AccessDeniedException", AccessDeniedError, False),
    (404, "ResourceNotFoundException", ResourceNotFoundError, False),
    (408, "ModelTimeoutException", ModelTimeoutError, True),
    (424, "ModelErrorException", ModelError, False),
    (429, "ThrottlingException", ThrottlingError, True),
    (429, "ModelNotReadyException", ModelNotReadyError, True),
    (500, "InternalServerException", InternalServerError, True),
    (503, "ServiceUnavailableException", ServiceUnavailableError, True),
]

STREAM_ERRORS = [
    ("throttlingException", ThrottlingError, True),
    ("modelStreamErrorException", ModelStreamError, True),
    ("internalServerException", InternalServerError, True),
    ("serviceUnavailableException", ServiceUnavailableError, True),
    ("validationException", InvalidRequestError, False),
]


@pytest.mark.parametrize(("status", "code", "cls", "retryable"), HTTP_ERRORS)
async def test_http_error_maps_to_class(
    status: int,
    code: str,
    cls: type[BedrockError],
    retryable: bool,
    fake_bedrock: FakeBedrock,
    conv: AsyncConversation,
) -> None:
    """An HTTP error before the stream maps by code, keeps status, request id and cause."""
    fake_bedrock.enqueue(reply(fault=Fault.http(status, code, message=f"boom {code}")))
    with pytest.raises(cls) as info:
        await conv.send("hi", retry=RetryPolicy.none())
    error = info.value
    assert type(error) is cls
    assert (error.code, error.status_code, error.message) == (code, status, f"boom {code}")
    assert error.retryable is retryable
    assert error.request_id and error.attempts == 1 and error.partial_text == ""
    assert isinstance(error.__cause__, botocore.exceptions.ClientError)
    assert len(fake_bedrock.requests) == 1  # botocore's own retries are off


@pytest.mark.parametrize(("name", "cls", "retryable"), STREAM_ERRORS)
async def test_in_stream_exception_maps_to_class(
    name: str,
    cls: type[BedrockError],
    retryable: bool,
    fake_bedrock: FakeBedrock,
    conv: AsyncConversation,
) -> None:
    """An exception frame after text maps to the same class as its HTTP twin, with partial text."""
    fake_bedrock.enqueue(
        reply(
            "alpha beta gamma",
            chunks=["alpha", " beta", " gamma"],
            fault=Fault.exception(name, "mid-stream", after=2),
        )
    )
    stream = conv.stream("hi", retry=RetryPolicy.none())
    received: list[str] = []
    with pytest.raises(cls) as info:
        async for chunk in stream:
            received.append(chunk)
    error = info.value
    assert type(error) is cls and error.retryable is retryable
    assert error.code.lower() == name.lower() and error.message == "mid-stream"
    assert error.partial_text == "alpha beta" == "".join(received)
    assert isinstance(error.request_id, str) and len(error.request_id) >= 8
    assert stream.error is error and stream.status == "failed"


async def test_error_message_frame_maps_by_code(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """A `:message-type error` frame maps by its :error-code header."""
    fake_bedrock.enqueue(
        reply("x y", fault=Fault.error("ThrottlingException", "slow down", after=1))
    )
    with pytest.raises(ThrottlingError) as info:
        await conv.send("hi", retry=RetryPolicy.none())
    assert info.value.message == "slow down"


async def test_no_library_exception_escapes(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """A TCP reset surfaces as our ChatError, with the aiohttp exception kept as __cause__."""
    fake_bedrock.enqueue(reply("a b c", fault=Fault.reset(after=1)))
    with pytest.raises(ChatError) as info:
        await conv.send("hi", retry=RetryPolicy.none())
    assert type(info.value).__module__ == "aiostream_chat"
    assert info.value.__cause__ is not None
    assert not type(info.value.__cause__).__module__.startswith("aiostream_chat")


def test_errors_are_documented_tree() -> None:
    """The module docstring draws every public error class (the tree is the documentation)."""
    from aiostream_chat import _errors

    for name in _errors.__all__:
        assert name in (_errors.__doc__ or ""), name


async def test_refused_connection_says_it_could_not_connect(session: aioboto3.Session) -> None:
    """An endpoint that refuses connections raises ConnectionLostError (a retryable
    TransportError) whose message says it could not connect to that endpoint, never "lost"."""
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    retry = RetryPolicy(max_attempts=2)
    async with AsyncConversation(MODEL, session=session, endpoint_url=endpoint) as conv:
        with pytest.raises(ConnectionLostError) as info:
            await conv.send("hi", retry=retry)
    error = info.value
    assert isinstance(error, TransportError) and error.retryable and error.attempts == 2
    assert str(error) == f"could not connect to {endpoint}: the connection was refused"
    assert isinstance(error.__cause__, botocore.exceptions.EndpointConnectionError)


def test_every_public_exception_explains_itself() -> None:
    """Every public exception class has its own one-line docstring, so help() explains it."""
    import aiostream_chat

    classes = [
        obj
        for name in aiostream_chat.__all__
        if isinstance(obj := getattr(aiostream_chat, name), type) and issubclass(obj, BaseException)
    ]
    assert len(classes) >= 22
    for cls in classes:
        doc = cls.__dict__.get("__doc__")
        assert doc and doc.strip() and "\n" not in doc.strip(), cls.__name__
