"""The adapter to aiobotocore: open a ConverseStream and take over its raw HTTP body.

botocore signs the request, resolves the endpoint and parses HTTP errors raised before the
stream; from the 200 response on, we read the body ourselves. This is the only module that
touches aiobotocore internals (``AioEventStream._raw_stream``); ``check_aiobotocore_shape()``
fails loudly if they change.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any, Protocol

import aiohttp
from aiobotocore.eventstream import AioEventStream

from ._fastpath import AiohttpBody, open_fast, route

__all__ = ["RawBody", "check_aiobotocore_shape", "json_body", "open_converse_stream"]

log = logging.getLogger("aiostream_chat")
_HOOK = "before-call.bedrock-runtime.ConverseStream"
_closing: set[asyncio.Task[None]] = set()  # keeps scheduled httpx closes alive
_body_override: ContextVar[bytes | None] = ContextVar("aiostream_chat_body", default=None)


class RawBody(Protocol):
    """The response body of an open ConverseStream."""

    request_id: str | None

    async def read(self) -> bytes:
        """The next bytes of the body; ``b""`` at its end."""
        ...

    def close(self) -> None:
        """Drop the connection now (it is never returned to the pool half-read)."""
        ...


class HttpxBody:
    """Reads an ``httpx.Response`` (aiobotocore's optional httpx backend)."""

    __slots__ = ("_chunks", "_closed", "_response", "request_id")

    def __init__(self, response: Any, request_id: str | None) -> None:
        self._response = response
        self._chunks: AsyncIterator[bytes] = response.aiter_raw()
        self._closed = False
        self.request_id = request_id

    async def read(self) -> bytes:
        async for chunk in self._chunks:
            if chunk:
                return bytes(chunk)
        return b""

    def close(self) -> None:
        # httpx only closes asynchronously: schedule it now; it runs on the next loop pass,
        # and a half-read HTTP/1.1 response closes its connection rather than pooling it.
        if self._closed:
            return
        self._closed = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (interpreter shutdown): nothing left to close on
            return
        task = loop.create_task(self._response.aclose())
        _closing.add(task)
        task.add_done_callback(_closing.discard)


def check_aiobotocore_shape(stream: object) -> Any:
    """Return the raw HTTP response behind aiobotocore's event stream, or fail loudly."""
    if not isinstance(stream, AioEventStream) or not hasattr(stream, "_raw_stream"):
        raise RuntimeError(
            "aiobotocore's ConverseStream response no longer exposes AioEventStream._raw_stream; "
            "this aiostream-chat version does not support the installed aiobotocore"
        )
    return stream._raw_stream


def json_body(params: dict[str, Any]) -> bytes:
    """The JSON request body Bedrock expects for ``params`` (bytes as base64, like botocore)."""

    def encode(value: object) -> str:
        if isinstance(value, bytes | bytearray):
            return base64.b64encode(value).decode("ascii")
        raise TypeError(f"cannot send a {type(value).__name__} to Bedrock")

    fields = {k: v for k, v in params.items() if k != "modelId"}
    return json.dumps(fields, default=encode, separators=(",", ":")).encode()


def _swap_body(params: dict[str, Any], **_: Any) -> None:
    body = _body_override.get()
    if body is not None:
        params["body"] = body


async def open_converse_stream(
    client: Any, params: dict[str, Any], body: bytes | None = None
) -> RawBody:
    """Send the request; return the body once Bedrock answered 200 (errors raise botocore's).

    ``body``, when given, replaces the JSON botocore serialised, after its validation and
    before signing: botocore 1.40 rejects content blocks newer than its model, which we
    must still send back to Bedrock verbatim.
    """
    fast = await route(client)
    if fast is not None:
        return await open_fast(fast, client, params["modelId"], body or json_body(params))
    if body is None:
        response = await client.converse_stream(**params)
    else:
        client.meta.events.register(_HOOK, _swap_body, unique_id="aiostream_chat.swap_body")
        token = _body_override.set(body)
        try:
            response = await client.converse_stream(**params)
        finally:
            _body_override.reset(token)
    raw = check_aiobotocore_shape(response["stream"])
    request_id = response.get("ResponseMetadata", {}).get("RequestId")
    if isinstance(raw, aiohttp.ClientResponse):
        return AiohttpBody(raw, request_id)
    return HttpxBody(raw, request_id)
