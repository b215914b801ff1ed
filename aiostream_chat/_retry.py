"""The retry policy and its backoff."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

from pydantic import Field

from ._models import Frozen

__all__ = ["RetryPolicy", "no_backoff"]

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


@contextlib.contextmanager
def no_backoff() -> Iterator[None]:
    """Within this block retries happen without sleeping (for tests)."""
    global _no_backoff
    previous, _no_backoff = _no_backoff, True
    try:
        yield
    finally:
        _no_backoff = previous
