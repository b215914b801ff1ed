"""A stream's outcome: one value, so status, reply and error can never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._errors import ChatError
    from ._models import Reply

__all__ = ["CANCELLED", "PENDING", "STREAMING", "Outcome", "Status", "completed", "failed"]

Status = Literal["pending", "streaming", "completed", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a stream stands. Build finished ones with ``completed()`` / ``failed()``."""

    status: Status
    reply: Reply | None = None
    error: ChatError | None = None

    @property
    def finished(self) -> bool:
        return self.status not in ("pending", "streaming")


PENDING = Outcome("pending")
STREAMING = Outcome("streaming")
CANCELLED = Outcome("cancelled")


def completed(reply: Reply) -> Outcome:
    return Outcome("completed", reply=reply)


def failed(error: ChatError) -> Outcome:
    return Outcome("failed", error=error)
