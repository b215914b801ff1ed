"""A cancel scope for the stream's awaits: one deadline, and ``cancel()`` from any task.

Built on ``asyncio.timeout_at``, which does exactly this bookkeeping (cancel the host task,
then uncancel it on exit) at half the cost of anyio's ``CancelScope`` with a deadline, measured
per awaited read; every read of a streamed body passes through here.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

__all__ = ["CancelScope"]


class CancelScope:
    """``async with CancelScope(deadline) as scope:``; afterwards ``expired`` or
    ``cancel_called`` says why the body was interrupted (a ``TimeoutError`` is raised then)."""

    __slots__ = ("_timeout", "cancel_called")

    def __init__(self, deadline: float | None) -> None:
        """``deadline`` is on the event loop's clock; None for none."""
        self._timeout = asyncio.timeout_at(deadline)
        self.cancel_called = False

    async def __aenter__(self) -> CancelScope:
        await self._timeout.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._timeout.__aexit__(exc_type, exc, tb)

    def expired(self) -> bool:
        """True when the body was interrupted, by the deadline or by ``cancel()``."""
        return self._timeout.expired()

    def cancel(self) -> None:
        """Interrupt the body now (safe from any task; a no-op once it is over)."""
        if self.cancel_called or self._timeout.expired():
            return
        self.cancel_called = True
        # No running loop (garbage collection at exit): nothing can be waiting.
        with contextlib.suppress(RuntimeError):
            self._timeout.reschedule(asyncio.get_running_loop().time())
