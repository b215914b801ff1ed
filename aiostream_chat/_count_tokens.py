"""Bedrock's CountTokens for a Converse request, with the library's own JSON body.

botocore 1.40 knows only ``messages`` and ``system`` in ``input.converse``; Bedrock also
counts ``toolConfig`` and ``additionalModelRequestFields``. So botocore validates and signs a
one-message stand-in, and a ``before-call`` hook swaps in the real body before signing.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from ._error_map import map_exception
from ._errors import FirstTokenTimeoutError

__all__ = ["count_tokens", "count_tokens_body"]

_HOOK = "before-call.bedrock-runtime.CountTokens"
_FIELDS = ("messages", "system", "toolConfig", "additionalModelRequestFields")
_body: ContextVar[bytes | None] = ContextVar("aiostream_chat_count_body", default=None)
_STAND_IN = {"converse": {"messages": [{"role": "user", "content": [{"text": "."}]}]}}


def _encode(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot send a {type(value).__name__} to Bedrock")


def count_tokens_body(request_body: Mapping[str, Any]) -> bytes:
    """The CountTokens JSON body for a Converse request body (bytes as base64)."""
    converse = {k: request_body[k] for k in _FIELDS if k in request_body}
    return json.dumps({"input": {"converse": converse}}, default=_encode).encode()


def _swap(params: dict[str, Any], **_: Any) -> None:
    body = _body.get()
    if body is not None:
        params["body"] = body


async def count_tokens(
    client: Any,
    model_id: str,
    request_body: Mapping[str, Any],
    timeout: float | None = None,  # noqa: ASYNC109  # the client has no read timeout to lean on
) -> int:
    """The number of input tokens Bedrock counts for this Converse request.

    ``timeout`` bounds the wait for the answer (the client itself has no read timeout).
    """
    client.meta.events.register(_HOOK, _swap, unique_id="aiostream_chat.count_tokens")
    token = _body.set(count_tokens_body(request_body))
    try:
        async with asyncio.timeout(timeout):
            response = await client.count_tokens(modelId=model_id, input=_STAND_IN)
    except TimeoutError:
        raise FirstTokenTimeoutError(f"CountTokens got no answer within {timeout} s") from None
    except Exception as exc:
        mapped = map_exception(exc, content_started=False)
        if mapped is None:
            raise
        raise mapped from exc
    finally:
        _body.reset(token)
    return int(response["inputTokens"])
