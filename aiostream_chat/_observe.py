"""The instrumentation seam: how a stream reports a turn to an observer (OpenTelemetry).

When ``observer_factory`` is None (not instrumented) a stream makes no call at all, so the
per-event path pays nothing. ``instrument()`` sets it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._errors import ChatError
    from ._models import Reply, ToolResultBlock, ToolUseBlock
    from ._request import Request

__all__ = ["TurnInfo", "TurnObserver", "observer_factory"]


@dataclass(frozen=True, slots=True)
class TurnInfo:
    """What an observer learns when a turn starts."""

    model_id: str
    endpoint_url: str | None


class TurnObserver(Protocol):
    """Receives one turn's life: model calls (rounds), retries and the outcome."""

    def call_started(self, round_index: int, request: Request) -> None:
        """A model call (round ``round_index``, from 0) starts its first attempt."""

    def sending(self) -> AbstractContextManager[None]:
        """Around sending each attempt's request: the current call's context is current, so
        HTTP-level instrumentation (aiohttp, botocore) nests its spans under the call."""

    def tool_call(
        self, use: ToolUseBlock, description: str | None
    ) -> AbstractContextManager[Callable[[ToolResultBlock, str | None], None]]:
        """Around running one tool call, inside its task (its own spans nest under it); yields
        where the call's result and failure kind (None for success) go."""

    def retrying(self, attempt: int, delay: float, error: ChatError) -> None:
        """Attempt ``attempt`` of the current call starts after ``delay`` seconds."""

    def first_chunk(self, seconds: float) -> None:
        """The current call's first content arrived ``seconds`` after its attempt started."""

    def call_ended(self, reply: Reply | None, error: BaseException | None) -> None:
        """The current call ended with its round's reply, or with an error (None if cancelled)."""

    def turn_ended(self, reply: Reply | None, error: BaseException | None, cancelled: bool) -> None:
        """The whole turn ended: completed (``reply``), failed (``error``) or ``cancelled``."""


observer_factory: Callable[[TurnInfo], TurnObserver] | None = None
