"""The iterators a stream hands out (``async for``, ``events()``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._events import StreamEvent, TextDelta

if TYPE_CHECKING:
    from ._stream import ChatStream

__all__ = ["StreamIterator", "event_of", "text_of"]


class StreamIterator:
    """One pass over a stream. Dropping it unfinished after it took something closes the
    stream at once (``break``); a fresh one dropped unused closes nothing."""

    __slots__ = ("_done", "_pick", "_stream", "_took")

    def __init__(self, stream: ChatStream, pick: Callable[[StreamEvent], Any]) -> None:
        self._stream = stream
        self._pick = pick
        self._took = False
        self._done = False

    def __aiter__(self) -> StreamIterator:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        self._took = True
        try:
            return await self._stream._take(self._pick)
        except StopAsyncIteration:
            self._done = True
            raise

    async def aclose(self) -> None:
        """Close the stream (an unfinished turn is cancelled). Idempotent."""
        self._done = True
        self._stream._abandon()

    def __del__(self) -> None:
        # CPython drops the iterator the moment `async for` is left by break or an exception;
        # closing here is synchronous, so the connection goes at once, not at some later GC.
        if self._took and not self._done:
            self._stream._abandon()


def text_of(event: StreamEvent) -> str | None:
    return event.text if type(event) is TextDelta and event.text else None


def event_of(event: StreamEvent) -> StreamEvent:
    return event
