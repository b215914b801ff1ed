"""The stream's deadlines: the nearest one for each await, and one timer per stream.

A turn awaits many times (client, request, every read of the body, backoff, tool calls), each
under the nearest of its deadlines. A timer armed and cancelled around every await (what
``asyncio.timeout`` does) cost more than the read it guards when 500 streams each get their
events one TCP segment at a time. Here one timer per stream stays armed across awaits: it is
moved earlier when a nearer deadline comes up, and re-armed when it fires before the current
deadline (the idle deadline moves later with every read). Most turns end before it ever fires.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING, Literal

from ._errors import (
    FirstTokenTimeoutError,
    IdleTimeoutError,
    StreamTimeoutError,
    TotalTimeoutError,
)

if TYPE_CHECKING:
    from ._config import Timeouts

__all__ = ["Watchdog", "nearest"]

Why = Literal["deadline", "closed"]


def nearest(
    timeouts: Timeouts, turn_start: float, attempt_started: float | None, content: bool
) -> tuple[float | None, type[StreamTimeoutError]]:
    """The nearest deadline (``time.monotonic()``) for an await, and the error it raises.

    ``attempt_started`` is None for awaits outside an attempt's body (setup, backoff, tools);
    ``content`` says whether the attempt's content has started (idle rather than first token).
    """
    deadline: float | None = None
    error: type[StreamTimeoutError] = TotalTimeoutError
    if timeouts.total is not None:
        deadline = turn_start + timeouts.total
    if attempt_started is not None:
        if not content:
            if timeouts.first_token is not None:
                other = attempt_started + timeouts.first_token
                if deadline is None or other < deadline:
                    deadline, error = other, FirstTokenTimeoutError
        elif timeouts.idle is not None:
            other = time.monotonic() + timeouts.idle
            if deadline is None or other < deadline:
                deadline, error = other, IdleTimeoutError
    return deadline, error


class Watchdog:
    """Interrupts the task awaiting under it: at its deadline, or on ``interrupt()``.

    ``enter(deadline)`` before an await and ``leave()`` after it, however it ended. When the
    deadline passes or ``interrupt()`` is called during the await, the task is cancelled and
    ``leave()`` says why (undoing that cancellation); a cancellation from anyone else is left
    alone and ``leave()`` returns None.
    """

    __slots__ = ("_armed", "_cancelling", "_deadline", "_handle", "_task", "_why")

    def __init__(self) -> None:
        self._handle: asyncio.TimerHandle | None = None
        self._armed = math.inf  # the deadline the timer is set for
        self._deadline: float | None = None  # of the await in progress
        self._task: asyncio.Task[object] | None = None  # awaiting now
        self._cancelling = 0
        self._why: Why | None = None

    def enter(self, deadline: float | None) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a stream can only be read from inside an asyncio task")
        self._task, self._deadline, self._why = task, deadline, None
        self._cancelling = task.cancelling()
        if deadline is not None and deadline < self._armed:
            self._arm(deadline)

    def leave(self) -> Why | None:
        """End the await; why the watchdog cancelled it, if it did (cancellation undone)."""
        task, why = self._task, self._why
        self._task = self._deadline = self._why = None
        if why is not None and task is not None and task.uncancel() > self._cancelling:
            return None  # someone else cancelled the task too: their cancellation stands
        return why

    def interrupt(self) -> None:
        """Cancel the await in progress now (from any task); a no-op between awaits."""
        task = self._task
        if task is not None and self._why is None:
            self._why = "closed"
            task.cancel()

    def close(self) -> None:
        """Stop the timer (the turn is over)."""
        handle, self._handle = self._handle, None
        self._armed = math.inf
        if handle is not None:
            handle.cancel()

    def _arm(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        loop = asyncio.get_running_loop()
        when = loop.time() + (deadline - time.monotonic())
        self._handle = loop.call_at(when, self._fire)
        self._armed = deadline

    def _fire(self) -> None:
        self._handle, self._armed = None, math.inf
        task, deadline = self._task, self._deadline
        if task is None or deadline is None or self._why is not None:
            return  # between awaits: the next await arms it again
        if time.monotonic() < deadline:
            self._arm(deadline)  # fired for an earlier deadline that has moved since
            return
        self._why = "deadline"
        task.cancel()
