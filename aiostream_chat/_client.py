"""Owning, sharing, lending and closing the aiobotocore bedrock-runtime client.

Conversations opened without ``client=`` or ``session=`` share one client per event loop and
settings (credentials source, region, endpoint, pool, API key): one pool, one set of warm
connections, reference-counted and closed with the last conversation that uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import weakref
from dataclasses import dataclass, field
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig

from ._error_map import map_exception
from ._signing import use_api_key

__all__ = ["KEEPALIVE_TIMEOUT", "ClientManager", "Secret", "check_region", "shared_clients"]

log = logging.getLogger("aiostream_chat")

# Idle pooled connections stay open this long (aiobotocore's default is 12 s, shorter than
# many pauses between chat turns). A connection the server dropped meanwhile fails on reuse
# before any content, as a retryable ConnectionLostError.
KEEPALIVE_TIMEOUT = 55.0

# Environment variables that decide which credentials and region a default session finds.
_SOURCE_VARS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_BEARER_TOKEN_BEDROCK",
)
_NO_REGION = (
    "no AWS region: pass region_name= or set the AWS_REGION (or AWS_DEFAULT_REGION) "
    "environment variable"
)


class Secret:
    """A string that never shows in a repr, a log line or an error."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def digest(self) -> str:
        return hashlib.sha256(self._value.encode()).hexdigest()

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


def check_region(region: str | None) -> str:
    """The region, or a ValueError that says how to give one."""
    if region is None or not region.strip():
        raise ValueError(_NO_REGION)
    return region


def _config(max_connections: int, connect_timeout: float | None) -> AioConfig:
    return AioConfig(
        max_pool_connections=max_connections,
        connect_timeout=connect_timeout,
        # Our own deadlines (first token, idle, total) govern reads.
        read_timeout=None,
        # Exactly one retry policy applies: ours.
        retries={"total_max_attempts": 1, "mode": "standard"},
        tcp_keepalive=True,
        connector_args={"keepalive_timeout": KEEPALIVE_TIMEOUT},
    )


async def _open_client(
    session: aioboto3.Session,
    stack: contextlib.AsyncExitStack,
    *,
    region_name: str | None,
    endpoint_url: str | None,
    max_connections: int,
    connect_timeout: float | None,
    api_key: Secret | None,
) -> Any:
    # botocore 1.40 reads only AWS_DEFAULT_REGION (and profiles); AWS_REGION as the other SDKs do.
    region = check_region(region_name or session.region_name or os.environ.get("AWS_REGION"))
    client = await stack.enter_async_context(
        session.client(
            "bedrock-runtime",
            region_name=region,
            endpoint_url=endpoint_url,
            config=_config(max_connections, connect_timeout),
        )
    )
    if api_key is not None:
        use_api_key(client, api_key.reveal())
    return client


@dataclass(eq=False)
class _Shared:
    """One process-wide client and the number of conversations using it."""

    key: tuple[Any, ...]
    refs: int = 0
    client: Any = None
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class _Registry:
    """The shared clients of each event loop (a client cannot move between loops)."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, _Shared]]
        self._by_loop = weakref.WeakKeyDictionary()

    def live(self) -> int:
        """How many shared clients are open on the running loop."""
        return len(self._by_loop.get(asyncio.get_running_loop(), {}))

    async def acquire(self, key: tuple[Any, ...], **open_kwargs: Any) -> _Shared:
        entries = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = _Shared(key)
        entry.refs += 1
        try:
            async with entry.lock:
                if entry.client is None:
                    session = aioboto3.Session(region_name=open_kwargs["region_name"])
                    entry.client = await _open_client(session, entry.stack, **open_kwargs)
        except BaseException:
            await self.release(entry)
            raise
        return entry

    async def release(self, entry: _Shared) -> None:
        entry.refs -= 1
        if entry.refs > 0:
            return
        entries = self._by_loop.get(asyncio.get_running_loop(), {})
        if entries.get(entry.key) is entry:
            del entries[entry.key]
        entry.client = None
        await entry.stack.aclose()


shared_clients = _Registry()


def _source_key() -> str:
    """Where a default session finds credentials and region (hashed: it may hold secrets)."""
    values = "\0".join(os.environ.get(name, "") for name in _SOURCE_VARS)
    return hashlib.sha256(values.encode()).hexdigest()


class ClientManager:
    """Opens the client on first use (or ``async with``) and closes it if it owns it.

    A user-supplied client is used as is and never closed; a user-supplied session opens a
    client of its own. Otherwise the client is shared (see the module docstring). Forks borrow
    the parent's manager: they use its client and never close it.
    """

    def __init__(
        self,
        *,
        client: Any = None,
        session: aioboto3.Session | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        max_connections: int = 100,
        connect_timeout: float | None = 10.0,
        api_key: str | None = None,
    ) -> None:
        if region_name is not None and not region_name.strip():
            raise ValueError(_NO_REGION)
        if api_key is not None and not api_key.strip():
            raise ValueError("api_key is empty")
        if api_key is not None and client is not None:
            raise ValueError("api_key= cannot apply to a client passed as client=; pass one")
        self._client = client
        self._owned = client is None
        self._session = session
        self._open_kwargs: dict[str, Any] = {
            "region_name": region_name,
            "endpoint_url": endpoint_url,
            "max_connections": max_connections,
            "connect_timeout": connect_timeout,
            "api_key": None if api_key is None else Secret(api_key),
        }
        self._stack: contextlib.AsyncExitStack | None = None
        self._shared: _Shared | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False

    @property
    def owns_client(self) -> bool:
        """True when this manager opened (or will open) the client and so closes it."""
        return self._owned

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint requests go to, once the client is open (else the one configured)."""
        client = self._client
        if client is not None:
            return str(client.meta.endpoint_url)
        return self._open_kwargs["endpoint_url"]  # type: ignore[no-any-return]

    def ready(self) -> Any:
        """The client if it is open already, else None (``get()`` opens it)."""
        return None if self._closed else self._client

    async def get(self) -> Any:
        if self._closed:
            raise RuntimeError("the conversation is closed; create a new one")
        if self._client is not None:
            return self._client
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await self._open()
                except ValueError:
                    raise
                except Exception as exc:  # e.g. an unknown profile: our error, not botocore's
                    error = map_exception(exc, content_started=False)
                    if error is None:
                        raise
                    raise error from exc
        return self._client

    async def _open(self) -> Any:
        if self._session is None:
            kwargs = self._open_kwargs
            api_key: Secret | None = kwargs["api_key"]
            key = (
                _source_key(),
                kwargs["region_name"],
                kwargs["endpoint_url"],
                kwargs["max_connections"],
                kwargs["connect_timeout"],
                None if api_key is None else api_key.digest(),
            )
            self._shared = await shared_clients.acquire(key, **kwargs)
            return self._shared.client
        stack = contextlib.AsyncExitStack()
        try:
            client = await _open_client(self._session, stack, **self._open_kwargs)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return client

    async def aclose(self) -> None:
        """Close (or release) the client if this manager opened it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owned:
            self._client = None
        stack, self._stack = self._stack, None
        shared, self._shared = self._shared, None
        if stack is not None:
            await stack.aclose()
        if shared is not None:
            await shared_clients.release(shared)

    def borrow(self) -> ClientManager:
        """A manager that uses this one's client and never closes it (for forks)."""
        return _Borrowed(self)


class _Borrowed(ClientManager):
    def __init__(self, parent: ClientManager) -> None:
        super().__init__(client=None)
        self._parent = parent
        self._owned = False

    def ready(self) -> Any:
        return self._parent.ready()

    async def get(self) -> Any:
        return await self._parent.get()

    @property
    def endpoint_url(self) -> str | None:
        return self._parent.endpoint_url

    async def aclose(self) -> None:
        self._closed = True

    def borrow(self) -> ClientManager:
        return _Borrowed(self._parent)
