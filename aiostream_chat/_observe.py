"""The instrumentation seam: what a stream reports about its turn, when someone listens.

While ``observer_factory`` is None a stream makes no observer calls at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._models import Reply

__all__ = ["TurnInfo", "TurnObserver", "observer_factory"]


@dataclass(frozen=True, slots=True)
class TurnInfo:
    """What is known when a turn starts."""

    model_id: str
    request: Any  # the first round's Request
    endpoint_url: str | None


class TurnObserver(Protocol):
    """Receives one turn's life: its rounds (model calls), retries, first chunk and end."""

    def call_started(self, round_index: int, request: Any) -> None: ...

    def retrying(self, attempt: int, delay: float, error: BaseException) -> None: ...

    def first_chunk(self, seconds: float) -> None: ...

    def call_ended(self, reply: Reply | None, error: BaseException | None) -> None: ...

    def turn_ended(
        self, reply: Reply | None, error: BaseException | None, cancelled: bool
    ) -> None: ...


observer_factory: Callable[[TurnInfo], TurnObserver] | None = None
