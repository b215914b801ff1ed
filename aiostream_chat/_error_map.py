"""The one boundary where botocore, aiohttp, httpx and in-stream errors become our errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import botocore.exceptions as boto

from . import _errors as e
from ._codec import Frame

__all__ = ["error_from_code", "error_from_frame", "map_exception"]

# Bedrock error codes, lower-cased, without the "exception" suffix.
_BY_CODE: dict[str, type[e.BedrockError]] = {
    "throttling": e.ThrottlingError,
    "toomanyrequests": e.ThrottlingError,
    "serviceunavailable": e.ServiceUnavailableError,
    "internalserver": e.InternalServerError,
    "internalfailure": e.InternalServerError,
    "modelstreamerror": e.ModelStreamError,
    "modelnotready": e.ModelNotReadyError,
    "modeltimeout": e.ModelTimeoutError,
    "modelerror": e.ModelError,
    "validation": e.InvalidRequestError,
    "servicequotaexceeded": e.InvalidRequestError,
    "conflict": e.InvalidRequestError,
    "accessdenied": e.AccessDeniedError,
    "unrecognizedclient": e.AccessDeniedError,
    "expiredtoken": e.AccessDeniedError,
    "invalidsignature": e.AccessDeniedError,
    "resourcenotfound": e.ResourceNotFoundError,
}
_BY_STATUS: dict[int, type[e.BedrockError]] = {
    400: e.InvalidRequestError,
    401: e.AccessDeniedError,
    403: e.AccessDeniedError,
    404: e.ResourceNotFoundError,
    408: e.ModelTimeoutError,
    424: e.ModelError,
    429: e.ThrottlingError,
    500: e.InternalServerError,
    502: e.ServiceUnavailableError,
    503: e.ServiceUnavailableError,
    504: e.ServiceUnavailableError,
}


def _error_class(code: str, status: int | None) -> type[e.BedrockError]:
    key = code.split(":", 1)[0].lower().removesuffix("exception")
    cls = _BY_CODE.get(key)
    if cls is None and key.isdigit():
        status = status or int(key)
    if cls is None and status is not None:
        cls = _BY_STATUS.get(status)
        if cls is None and status >= 500:
            cls = e.InternalServerError
    return cls or e.BedrockError


def error_from_code(
    code: str, message: str, *, status: int | None = None, request_id: str | None = None
) -> e.BedrockError:
    """The error for a Bedrock error code, whether it came as HTTP or as an in-stream event."""
    cls = _error_class(code, status)
    return cls(message or code, code=code, status_code=status, request_id=request_id)


def error_from_frame(frame: Frame, request_id: str | None) -> e.ChatError:
    """The error for an ``exception`` or ``error`` frame inside the stream."""
    headers = frame.headers
    if headers.get(":message-type") == "exception":
        code = str(headers.get(":exception-type", "UnknownException"))
        try:
            body: Any = json.loads(frame.payload) if frame.payload else {}
        except ValueError:
            body = {}
        message = body.get("message") or body.get("Message") if isinstance(body, dict) else None
        return error_from_code(code, str(message or code), request_id=request_id)
    code = str(headers.get(":error-code", "UnknownError"))
    return error_from_code(code, str(headers.get(":error-message", code)), request_id=request_id)


def _from_client_error(exc: boto.ClientError) -> e.ChatError:
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    status = meta.get("HTTPStatusCode")
    return error_from_code(
        str(error.get("Code", "")),
        str(error.get("Message", "")),
        status=status,
        request_id=meta.get("RequestId"),
    )


def map_exception(exc: BaseException, *, content_started: bool) -> e.ChatError | None:
    """Our error for a library exception, or None when it is not one we translate."""
    if isinstance(exc, e.ChatError):
        return exc
    if isinstance(exc, boto.ClientError):
        return _from_client_error(exc)
    if isinstance(exc, boto.ConnectTimeoutError):
        return e.ConnectionLostError(f"timed out connecting to Bedrock: {exc}")
    if isinstance(exc, boto.ReadTimeoutError | asyncio.TimeoutError | aiohttp.SocketTimeoutError):
        if content_started:
            return e.IdleTimeoutError(f"the stream stalled: {exc}")
        return e.FirstTokenTimeoutError(f"no response in time: {exc}")
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return e.AccessDeniedError(str(exc), code="NoCredentials")
    if isinstance(exc, boto.ParamValidationError):
        return e.InvalidRequestError(str(exc), code="ParamValidation")
    if isinstance(exc, boto.NoRegionError):
        return e.InvalidRequestError(
            "no AWS region: pass region_name= or set AWS_REGION", code="NoRegion"
        )
    if isinstance(exc, boto.EndpointConnectionError | aiohttp.ClientConnectorError):
        return _not_connected(exc)
    if isinstance(
        exc,
        boto.ConnectionClosedError
        | aiohttp.ClientConnectionError
        | aiohttp.ClientPayloadError
        | ConnectionError,
    ):
        return e.ConnectionLostError(f"connection to Bedrock lost: {exc!r}")
    if isinstance(exc, boto.HTTPClientError):
        return e.TransportError(f"HTTP failure talking to Bedrock: {exc}")
    if isinstance(exc, boto.BotoCoreError):
        return e.ChatError(f"botocore failed: {exc}")
    httpx_error = _map_httpx(exc, content_started)
    if httpx_error is not None:
        return httpx_error
    return None


def _not_connected(exc: Exception) -> e.ConnectionLostError:
    """The connection never opened (refused, unreachable, DNS): say so, naming the endpoint."""
    inner = exc.kwargs.get("error") if isinstance(exc, boto.EndpointConnectionError) else exc
    if isinstance(exc, boto.EndpointConnectionError):
        parts = urlsplit(str(exc.kwargs.get("endpoint_url", "")))
        endpoint = f"{parts.scheme}://{parts.netloc}" if parts.netloc else "Bedrock"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        endpoint = f"{exc.host}:{exc.port}"
    else:
        endpoint = "Bedrock"
    os_error = getattr(inner, "os_error", inner)
    if isinstance(os_error, ConnectionRefusedError):
        reason = "the connection was refused"
    else:
        reason = str(os_error or exc)
    return e.ConnectionLostError(f"could not connect to {endpoint}: {reason}")


def _map_httpx(exc: BaseException, content_started: bool) -> e.ChatError | None:
    try:
        import httpx
    except ImportError:  # httpx is optional
        return None
    if isinstance(exc, httpx.TimeoutException):
        if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
            return e.ConnectionLostError(f"timed out connecting to Bedrock: {exc!r}")
        cls = e.IdleTimeoutError if content_started else e.FirstTokenTimeoutError
        return cls(f"the stream stalled: {exc!r}")
    if isinstance(exc, httpx.ConnectError):
        return e.ConnectionLostError(f"could not connect to Bedrock: {exc!r}")
    if isinstance(exc, httpx.TransportError):
        return e.ConnectionLostError(f"connection to Bedrock lost: {exc!r}")
    return None
