"""The fast path: send ConverseStream ourselves on the client's own aiohttp pool.

botocore's per-call pipeline (parameter validation, serialisation, endpoint rules, user agent,
event hooks) costs more client CPU than the rest of a short turn. Here the endpoint is resolved
once per client by botocore's own ruleset, the JSON body is ours, the request is signed with
the client's own credentials (SigV4 by ``_signing.sigv4_headers``, tested equal to botocore's;
bearer auth for API keys; the client's botocore signer for anything else), and it goes out on
the client's own aiohttp session. Where that is not provably what botocore would send,
``route()`` (checked once per client, on its first request) returns None and the caller takes
the botocore path:

- the httpx backend, a proxy for the endpoint, FIPS or dual-stack endpoints, endpoint rules
  that add headers;
- event hooks on the client that are neither botocore's nor ours (a user's hooks must run);
- ``AIOSTREAM_CHAT_FASTPATH=0`` in the environment, or botocore internals that changed shape
  (logged once as a warning; ``check_botocore_shape()`` fails loudly in the tests).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import weakref
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import botocore
import botocore.exceptions as boto
from aiobotocore.httpsession import AIOHTTPSession
from botocore.awsrequest import AWSRequest
from botocore.tokens import FrozenAuthToken
from yarl import URL

from ._http_errors import error_from_response
from ._signing import amz_date, check_signer_shape, sign, sigv4_headers

__all__ = ["AiohttpBody", "Route", "check_botocore_shape", "enabled", "open_fast", "route"]

log = logging.getLogger("aiostream_chat")

enabled = os.environ.get("AIOSTREAM_CHAT_FASTPATH", "1") != "0"

_OPERATION = "ConverseStream"
_ENV_TOKEN = "AWS_BEARER_TOKEN_BEDROCK"
_USER_AGENT = f"aiostream-chat/{version('aiostream-chat')} botocore/{botocore.__version__}"
# Events a converse_stream() call emits; a handler outside these packages is a user's hook.
_EVENTS = (
    "provide-client-params",
    "before-parameter-build",
    "before-endpoint-resolution",
    "before-call",
    "request-created",
    "before-send",
    "response-received",
    "needs-retry",
    "after-call",
    "after-call-error",
    "before-parse",
    "choose-signer",
    "before-sign",
)
_OURS = ("botocore.", "aiobotocore.", "boto3.", "aioboto3.", "aiostream_chat.")


class AiohttpBody:
    """Reads an aiohttp ``ClientResponse``."""

    __slots__ = ("_response", "request_id")

    def __init__(self, response: aiohttp.ClientResponse, request_id: str | None) -> None:
        self._response = response
        self.request_id = request_id

    def read(self) -> Awaitable[bytes]:
        return self._response.content.readany()

    def close(self) -> None:
        self._response.close()


@dataclass(frozen=True)
class Route:
    """Where and how one client sends ConverseStream, resolved once."""

    base_url: str
    host: str  # the Host header value, as botocore signs it
    region: str  # the signing region and name
    service: str
    context: dict[str, Any]
    http_session: Any
    # The auth botocore's signer picks, by whether AWS_BEARER_TOKEN_BEDROCK is set.
    auth_kinds: dict[bool, str] = field(default_factory=dict)
    _urls: dict[str, tuple[str, URL]] = field(default_factory=dict)

    def path(self, model_id: str) -> str:
        return self.target(model_id)[0]

    def target(self, model_id: str) -> tuple[str, URL]:
        """The request path and URL for a model id (cached: a client talks to few models)."""
        found = self._urls.get(model_id)
        if found is None:
            path = f"/model/{quote(model_id, safe='-_.~')}/converse-stream"
            found = (path, URL(self.base_url + path, encoded=True))
            if len(self._urls) < 64:
                self._urls[model_id] = found
        return found


_routes: weakref.WeakKeyDictionary[Any, Route | None] = weakref.WeakKeyDictionary()
_warned: list[str] = []
_pool_warned: weakref.WeakSet[Any] = weakref.WeakSet()


def check_botocore_shape(client: Any) -> None:
    """Fail loudly (RuntimeError) if a botocore/aiobotocore internal we use has changed."""
    check_signer_shape(client)
    needed = {
        "client._endpoint.http_session": getattr(
            getattr(client, "_endpoint", None), "http_session", None
        ),
        "client._resolve_endpoint_ruleset": getattr(client, "_resolve_endpoint_ruleset", None),
        "client._service_model": getattr(client, "_service_model", None),
        "client.meta.events._emitter._handlers": getattr(
            getattr(client.meta.events, "_emitter", None), "_handlers", None
        ),
    }
    missing = [name for name, value in needed.items() if value is None]
    session = needed["client._endpoint.http_session"]
    if isinstance(session, AIOHTTPSession):
        for name in ("_get_session", "_proxy_config"):
            if not hasattr(session, name):
                missing.append(f"AIOHTTPSession.{name}")
    if missing:
        raise RuntimeError(
            "aiobotocore/botocore internals changed (missing: " + ", ".join(missing) + "); "
            "this aiostream-chat version does not support the installed versions"
        )


def foreign_hooks(client: Any) -> list[str]:
    """Event handlers on a ConverseStream call that are neither botocore's nor ours."""
    handlers = client.meta.events._emitter._handlers
    found = []
    for event in _EVENTS:
        for handler in handlers.prefix_search(f"{event}.bedrock-runtime.{_OPERATION}"):
            module = getattr(getattr(handler, "func", handler), "__module__", None) or ""
            if not module.startswith(_OURS):
                found.append(f"{event}: {handler!r}")
    return found


async def _resolve(client: Any) -> Route | None:
    check_botocore_shape(client)
    config = client.meta.config
    http_session = client._endpoint.http_session
    if type(http_session) is not AIOHTTPSession:
        return None  # the httpx backend (or another): botocore knows how to drive it
    if config.use_fips_endpoint or config.use_dualstack_endpoint:
        return None
    if hooks := foreign_hooks(client):
        log.debug("botocore path: the client has event hooks of its own: %s", hooks)
        return None
    model = client._service_model
    operation = model.operation_model(_OPERATION)
    context: dict[str, Any] = {
        "client_region": client.meta.region_name,
        "client_config": config,
        "has_streaming_input": operation.has_streaming_input,
        "auth_type": operation.resolved_auth_type,
        "unsigned_payload": operation.unsigned_payload,
        "auth_options": model.metadata.get("auth"),
    }
    url, headers, _ = await client._resolve_endpoint_ruleset(
        operation, {"modelId": "m", "messages": []}, context
    )
    if headers or http_session._proxy_config.proxy_url_for(url):
        return None
    parts = urlsplit(str(url))
    if parts.query or parts.path.strip("/"):
        return None  # an endpoint with a path or query: botocore knows how to join them
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    if not host or ":" in host:
        return None  # IPv6 literals: leave the Host header rules to botocore
    if parts.port is not None and parts.port != default_port:
        host = f"{host}:{parts.port}"
    signing = context.get("signing", {})
    return Route(
        base_url=f"{parts.scheme}://{parts.netloc}",
        host=host.lower(),
        region=signing.get("region") or client.meta.region_name,
        service=signing.get("signing_name") or client._request_signer._signing_name,
        context=context,
        http_session=http_session,
    )


async def route(client: Any) -> Route | None:
    """How the fast path sends for ``client``, or None for the botocore path."""
    if not enabled:
        return None
    try:
        return _routes[client]
    except KeyError:
        pass
    except TypeError:  # a client object that cannot be weakly referenced
        return None
    try:
        found = await _resolve(client)
    except (RuntimeError, AttributeError) as exc:
        if not _warned:
            _warned.append(str(exc))
            log.warning("aiostream-chat uses the botocore path: %s", exc)
        found = None
    _routes[client] = found
    return found


def note_pool_wait(connector: Any) -> None:
    """Say once per pool when a request will wait for a free connection."""
    limit = connector.limit
    if limit and len(connector._acquired) >= limit and connector not in _pool_warned:
        _pool_warned.add(connector)
        log.warning(
            "all %d pooled connections are in use: turns now wait for a free one "
            "(raise max_connections= to run more at once)",
            limit,
        )


async def _auth_kind(route: Route, client: Any) -> str:
    has_env_token = _ENV_TOKEN in os.environ
    kind = route.auth_kinds.get(has_env_token)
    if kind is None:
        signer = client._request_signer
        kind = str(await signer._choose_signer(_OPERATION, "standard", dict(route.context)))
        route.auth_kinds[has_env_token] = kind
    return kind


async def _auth_headers(route: Route, client: Any, model_id: str, body: bytes) -> dict[str, str]:
    """The signed headers: our SigV4 or bearer header where we can, else botocore's signer."""
    kind = await _auth_kind(route, client)
    signer = client._request_signer
    if kind == "v4" and model_id not in (".", ".."):
        credentials = signer._credentials
        frozen = None if credentials is None else await credentials.get_frozen_credentials()
        if frozen is not None and frozen.access_key and frozen.secret_key:
            return sigv4_headers(
                frozen,
                region=route.region,
                service=route.service,
                host=route.host,
                path=route.path(model_id),
                body=body,
                amz_date=amz_date(),
            )
    token = signer._auth_token
    if kind == "bearer" and isinstance(token, FrozenAuthToken):
        return {"content-type": "application/json", "authorization": f"Bearer {token.token}"}
    # Anything else (refreshable tokens, missing credentials, other schemes): botocore's
    # signer, which also raises botocore's errors for what is missing.
    request = AWSRequest(
        method="POST",
        url=route.base_url + route.path(model_id),
        data=body,
        headers={"Content-Type": "application/json"},
    )
    request.context = dict(route.context)
    await sign(client, request)
    return {k.lower(): v for k, v in request.headers.items()}


@contextlib.contextmanager
def _as_botocore_errors(url: str) -> Iterator[None]:
    """Raise the botocore exception aiobotocore raises for the same aiohttp failure, so both
    paths map to the same error with the same ``__cause__``."""
    try:
        yield
    except aiohttp.ClientSSLError as exc:
        raise boto.SSLError(endpoint_url=url, error=exc) from exc
    except (
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientPayloadError,
        aiohttp.http_exceptions.BadStatusLine,
    ) as exc:
        # Typically a pooled connection the server had closed: nothing came back yet.
        raise boto.ConnectionClosedError(endpoint_url=url, error=exc) from exc
    except aiohttp.ServerTimeoutError as exc:
        if str(exc).lower().startswith("connect"):
            raise boto.ConnectTimeoutError(endpoint_url=url, error=exc) from exc
        raise boto.ReadTimeoutError(endpoint_url=url, error=exc) from exc
    except (aiohttp.ClientConnectionError, socket.gaierror) as exc:
        raise boto.EndpointConnectionError(endpoint_url=url, error=exc) from exc
    except aiohttp.ClientError as exc:  # e.g. a malformed response: botocore's catch-all
        raise boto.HTTPClientError(error=exc) from exc


async def open_fast(route: Route, client: Any, model_id: str, body: bytes) -> AiohttpBody:
    """Send one ConverseStream request; return the body once Bedrock answered 200."""
    headers = await _auth_headers(route, client, model_id, body)
    headers["user-agent"] = _USER_AGENT
    headers["accept-encoding"] = "identity"
    session = await route.http_session._get_session(None)
    note_pool_wait(session.connector)
    url = route.target(model_id)[1]
    with _as_botocore_errors(str(url)):
        response = await session.post(url, data=body, headers=headers)
    request_id = response.headers.get("x-amzn-RequestId")
    if response.status == 200:
        return AiohttpBody(response, request_id)
    try:
        data = await response.read()
    finally:
        response.release()
    error = error_from_response(response.status, response.headers, data)
    raise error from error.__cause__
