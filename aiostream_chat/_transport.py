"""Open a ConverseStream and hand over its raw HTTP body: the fast path, or botocore's.

The fast path (``_fastpath``) sends the request itself on the client's own aiohttp pool. The
botocore path lets ``client.converse_stream()`` sign, resolve the endpoint and parse HTTP errors
raised before the stream; from the 200 response on, we read the body ourselves. It touches
aiobotocore internals (``AioEventStream._raw_stream``); ``check_aiobotocore_shape()`` fails
loudly if they change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiobotocore.eventstream import AioEventStream

from ._fastpath import AiohttpBody, open_fast, route

if TYPE_CHECKING:
    from ._request import Request

__all__ = ["RawBody", "check_aiobotocore_shape", "open_stream"]

log = logging.getLogger("aiostream_chat")
_closing: set[asyncio.Task[None]] = set()  # keeps scheduled httpx closes alive


class RawBody(Protocol):
    """The response body of an open ConverseStream."""

    request_id: str | None

    def read(self) -> Awaitable[bytes]:
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


# botocore validates and serialises a minimal stand-in; these hooks then put our own body in
# its place before signing. The body travels in the call's own request context, not in any
# global, so concurrent calls on one client never see each other's body.
_STAND_IN = [{"role": "user", "content": [{"text": "-"}]}]
_BODY_KEY = "aiostream_chat_body"
_EVENTS = (
    ("before-parameter-build.bedrock-runtime.ConverseStream", "_take_body"),
    ("before-call.bedrock-runtime.ConverseStream", "_put_body"),
)


def _take_body(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    body = params.pop(_BODY_KEY, None)
    if body is not None:
        context[_BODY_KEY] = body


def _put_body(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    body = context.pop(_BODY_KEY, None)
    if body is not None:
        params["body"] = body


_HANDLERS = {"_take_body": _take_body, "_put_body": _put_body}


def _install_hooks(client: Any) -> None:
    events = client.meta.events
    for event, name in _EVENTS:
        # unique_id makes this idempotent: each client gets each handler once.
        events.register(event, _HANDLERS[name], unique_id=f"aiostream_chat.{name}")


async def open_stream(client: Any, request: Request) -> RawBody:
    """Send ``request``; return the body once Bedrock answered 200 (errors raise botocore's)."""
    fast = await route(client)
    if fast is not None:
        return await open_fast(fast, client, request.model_id, request.json())
    _install_hooks(client)
    params = {"modelId": request.model_id, "messages": _STAND_IN, _BODY_KEY: request.json()}
    response = await client.converse_stream(**params)
    raw = check_aiobotocore_shape(response["stream"])
    request_id = response.get("ResponseMetadata", {}).get("RequestId")
    if isinstance(raw, aiohttp.ClientResponse):
        return AiohttpBody(raw, request_id)
    return HttpxBody(raw, request_id)
