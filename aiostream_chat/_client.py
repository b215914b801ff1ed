"""Owning, lending and closing the aiobotocore bedrock-runtime client."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig

from ._error_map import map_exception

__all__ = ["ClientManager"]


class ClientManager:
    """Opens the client on first use (or ``async with``) and closes it if it owns it.

    A user-supplied client is used as is and never closed. Forks borrow the parent's manager:
    they use its client and never close it.
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
    ) -> None:
        self._client = client
        self._owned = client is None
        self._session = session
        self._region_name = region_name
        self._endpoint_url = endpoint_url
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._stack: contextlib.AsyncExitStack | None = None
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
        return self._endpoint_url

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
                except Exception as exc:  # e.g. no region: our error, not botocore's
                    error = map_exception(exc, content_started=False)
                    if error is None:
                        raise
                    raise error from exc
        return self._client

    def _config(self) -> AioConfig:
        return AioConfig(
            max_pool_connections=self._max_connections,
            connect_timeout=self._connect_timeout,
            # Our own deadlines (first token, idle, total) govern reads.
            read_timeout=None,
            # Exactly one retry policy applies: ours.
            retries={"total_max_attempts": 1, "mode": "standard"},
            tcp_keepalive=True,
        )

    async def _open(self) -> Any:
        session = self._session or aioboto3.Session(region_name=self._region_name)
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(
            session.client(
                "bedrock-runtime",
                region_name=self._region_name,
                endpoint_url=self._endpoint_url,
                config=self._config(),
            )
        )
        self._stack = stack
        return client

    async def aclose(self) -> None:
        """Close the client if this manager opened it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        stack, self._stack = self._stack, None
        if self._owned:
            self._client = None
        if stack is not None:
            await stack.aclose()

    def borrow(self) -> ClientManager:
        """A manager that uses this one's client and never closes it (for forks)."""
        return _Borrowed(self)


class _Borrowed(ClientManager):
    def __init__(self, parent: ClientManager) -> None:
        super().__init__(client=None)
        self._parent = parent
        self._owned = False

    async def get(self) -> Any:
        return await self._parent.get()

    @property
    def endpoint_url(self) -> str | None:
        return self._parent.endpoint_url

    async def aclose(self) -> None:
        self._closed = True

    def borrow(self) -> ClientManager:
        return _Borrowed(self._parent)
