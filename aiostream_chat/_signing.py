"""Authenticating a request: botocore's own signer, or a Bedrock API key as a bearer token.

botocore 1.40.61 has no per-client setting for a bearer token (only the process-wide
``AWS_BEARER_TOKEN_BEDROCK``). Its signer does support bearer auth: a ``choose-signer``
handler picks ``bearer`` and the signer's ``_auth_token`` carries the key.
``check_signer_shape()`` fails loudly if those internals change.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote

from botocore.auth import AUTH_TYPE_MAPS
from botocore.tokens import FrozenAuthToken

__all__ = ["amz_date", "check_signer_shape", "sign", "sigv4_headers", "use_api_key"]

_CHOOSE = "choose-signer.bedrock-runtime"
_OPERATION = "ConverseStream"


def _choose_bearer(**_: Any) -> str:
    return "bearer"


def check_signer_shape(client: Any) -> Any:
    """The client's request signer, or a RuntimeError if botocore changed what we rely on."""
    signer = getattr(client, "_request_signer", None)
    if signer is None or not hasattr(signer, "_auth_token") or "bearer" not in AUTH_TYPE_MAPS:
        raise RuntimeError(
            "botocore's request signer no longer has the bearer-token support aiostream-chat "
            "relies on (_request_signer._auth_token, auth type 'bearer')"
        )
    return signer


def use_api_key(client: Any, api_key: str) -> None:
    """Make every bedrock-runtime request of ``client`` carry ``api_key`` as a bearer token."""
    signer = check_signer_shape(client)
    signer._auth_token = FrozenAuthToken(api_key)
    client.meta.events.register(_CHOOSE, _choose_bearer, unique_id="aiostream_chat.api_key")


async def sign(client: Any, request: Any) -> None:
    """Sign ``request`` (a botocore ``AWSRequest`` with its ``context``) as botocore would.

    The client's signer picks SigV4 or bearer auth by the same rules and handlers as a
    ``converse_stream()`` call, with the client's own (possibly refreshable) credentials.
    """
    await client._request_signer.sign(_OPERATION, request)


_stamp: tuple[int, str] = (0, "")


def amz_date() -> str:
    """The current UTC time as SigV4's ``X-Amz-Date`` (formatted once per second)."""
    global _stamp
    now = int(time.time())
    if now != _stamp[0]:
        _stamp = (now, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)))
    return _stamp[1]


@functools.lru_cache(maxsize=64)
def _canonical_path(path: str) -> str:
    return quote(path, safe="/~")


@functools.lru_cache(maxsize=64)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sigv4_headers(
    credentials: Any,
    *,
    region: str,
    service: str,
    host: str,
    path: str,
    body: bytes,
    amz_date: str,
) -> dict[str, str]:
    """SigV4 headers for a ``POST`` of a JSON ``body`` to ``path`` (no query string).

    The same signature as botocore's ``SigV4Auth`` for this request shape (pinned by
    tests/test_fastpath.py), without its generic header and URL handling per call.
    """
    headers = {"content-type": "application/json", "host": host, "x-amz-date": amz_date}
    if credentials.token:
        headers["x-amz-security-token"] = credentials.token
    names = sorted(headers)
    signed = ";".join(names)
    canonical = "\n".join(
        (
            "POST",
            _canonical_path(path),
            "",
            "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in names),
            signed,
            hashlib.sha256(body).hexdigest(),
        )
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    key = _signing_key(credentials.secret_key, amz_date[:8], region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return headers
