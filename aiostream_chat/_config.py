"""Timeouts for a turn."""

from __future__ import annotations

from pydantic import Field

from ._models import Frozen

__all__ = ["Timeouts"]


class Timeouts(Frozen):
    """Deadlines in seconds; ``None`` disables one.

    ``first_token`` runs from the start of an attempt to its first content delta, ``idle`` is
    the longest wait for the server between events after that, and ``total`` bounds the whole
    turn, every attempt and backoff sleep included.
    """

    connect: float | None = Field(default=10.0, gt=0)
    first_token: float | None = Field(default=60.0, gt=0)
    idle: float | None = Field(default=30.0, gt=0)
    total: float | None = Field(default=None, gt=0)
