"""The retry policy and its backoff."""

from __future__ import annotations

import random
from contextlib import AbstractContextManager

from pydantic import Field

from ._models import Frozen

__all__ = ["RetryPolicy", "no_backoff", "set_backoff"]

_no_backoff = False


class RetryPolicy(Frozen):
    """How often and how patiently a turn is retried.

    ``max_attempts`` counts the first attempt. Backoff is exponential from ``initial_delay``,
    capped at ``max_delay``, with full jitter (a uniform draw between zero and the cap).
    """

    # strict: "3" or True is not a count, "0.5" is not a delay.
    max_attempts: int = Field(default=4, ge=1, strict=True)
    initial_delay: float = Field(default=0.5, ge=0, strict=True)
    max_delay: float = Field(default=20.0, ge=0, strict=True)
    jitter: bool = Field(default=True, strict=True)

    @classmethod
    def none(cls) -> RetryPolicy:
        """One attempt, no retries."""
        return cls(max_attempts=1)

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        if _no_backoff:
            return 0.0
        # The exponent is clamped so that a long retry run saturates at max_delay instead of
        # overflowing a float.
        cap = min(self.max_delay, self.initial_delay * 2.0 ** min(max(retry - 1, 0), 1000))
        return random.uniform(0.0, cap) if self.jitter else cap


class _Restore:
    """Puts the previous backoff setting back when its ``with`` block ends."""

    __slots__ = ("_previous",)

    def __init__(self, previous: bool) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        global _no_backoff
        _no_backoff = self._previous


def set_backoff(enabled: bool) -> AbstractContextManager[None]:
    """Switch backoff sleeps on or off now (for tests); used in ``with``, restores on exit."""
    global _no_backoff
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, not {type(enabled).__name__}")
    previous, _no_backoff = _no_backoff, not enabled
    return _Restore(previous)


def no_backoff() -> AbstractContextManager[None]:
    """Within this block retries happen without sleeping (for tests): ``set_backoff(False)``."""
    return set_backoff(False)
