"""Timeouts for a turn."""

from __future__ import annotations

from pydantic import Field

from ._models import Frozen

__all__ = ["Timeouts"]


def _seconds(default: float | None) -> float | None:
    # strict: "5" and True are not numbers of seconds (an int is).
    return Field(default=default, gt=0, strict=True)


class Timeouts(Frozen):
    """Deadlines in seconds; ``None`` disables one.

    ``first_token`` runs from the start of an attempt to its first content delta, ``idle`` is
    the longest wait for the server between events after that, and ``total`` bounds the whole
    turn, every attempt and backoff sleep included. ``connect`` is a setting of the client, so
    it belongs on the conversation: a per-turn ``Timeouts`` may not change it.
    """

    connect: float | None = _seconds(10.0)
    first_token: float | None = _seconds(60.0)
    idle: float | None = _seconds(30.0)
    total: float | None = _seconds(None)


def check_turn_timeouts(conversation: Timeouts, turn: Timeouts | None) -> None:
    """Refuse a per-turn connect timeout: the client's connect timeout applies to every turn."""
    if turn is None or "connect" not in turn.model_fields_set:
        return
    if turn.connect != conversation.connect:
        raise ValueError(
            "Timeouts.connect is a client setting and cannot change per turn; "
            "set it on the conversation: AsyncConversation(..., timeouts=Timeouts(connect=...))"
        )
