"""Bedrock's HTTP error responses (before the stream starts), parsed the way botocore does.

The code comes from the ``x-amzn-ErrorType`` header, else the JSON ``__type`` or ``code``; a body
that is empty or not JSON gives the status as the code and its reason phrase as the message.
The result is the ``ClientError`` botocore would raise (kept as ``__cause__``) and our error for
it from ``_error_map``, so both paths raise the same errors.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from botocore.exceptions import ClientError

from ._error_map import map_exception
from ._errors import ChatError

__all__ = ["error_from_response"]


def _code_of(raw: str) -> str:
    return raw.split(":", 1)[0].rsplit("#", 1)[-1].strip()


def client_error(status: int, headers: Mapping[str, str], body: bytes) -> ClientError:
    """The ``ClientError`` botocore raises for this ConverseStream error response."""
    try:
        data: Any = json.loads(body) if body else None
    except ValueError:
        data = None
    code = _code_of(headers.get("x-amzn-ErrorType", ""))
    message = ""
    if isinstance(data, dict):
        code = code or _code_of(str(data.get("__type") or data.get("code") or ""))
        message = str(data.get("message") or data.get("Message") or "")
    if not code:
        code = str(status)
        with contextlib.suppress(ValueError):  # a status http.HTTPStatus does not know
            message = message or HTTPStatus(status).phrase
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {
            "RequestId": headers.get("x-amzn-RequestId"),
            "HTTPStatusCode": status,
            "HTTPHeaders": {k.lower(): v for k, v in headers.items()},
        },
    }
    return ClientError(response, "ConverseStream")


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> ChatError:
    """Our error for a non-200 ConverseStream response, with botocore's as its cause."""
    cause = client_error(status, headers, body)
    error = map_exception(cause, content_started=False)
    assert error is not None  # a ClientError always maps
    error.__cause__ = cause
    return error
