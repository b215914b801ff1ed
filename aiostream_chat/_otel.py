"""``instrument()`` / ``uninstrument()``: OpenTelemetry for every turn of every conversation.

OpenTelemetry is imported only when ``instrument()`` is called (the ``otel`` extra).
"""

from __future__ import annotations

import os
from typing import Any

from . import _observe

__all__ = ["instrument", "uninstrument"]

_INSTALL = "instrument() needs OpenTelemetry: pip install 'aiostream-chat[otel]'"


def _latest() -> bool:
    """True when ``OTEL_SEMCONV_STABILITY_OPT_IN`` lists ``gen_ai_latest_experimental``."""
    values = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    return "gen_ai_latest_experimental" in (v.strip() for v in values.split(","))


def instrument(
    *, tracer_provider: Any = None, meter_provider: Any = None, capture_content: bool = False
) -> None:
    """Record each turn as GenAI spans and metrics; replaces an earlier ``instrument()``.

    ``tracer_provider`` / ``meter_provider`` default to the global ones; message content
    (prompts, replies, tool definitions) is recorded only with ``capture_content=True``.
    """
    if not isinstance(capture_content, bool):
        raise TypeError(f"capture_content must be a bool, not {type(capture_content).__name__}")
    try:
        from opentelemetry import metrics, trace
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
        raise TypeError("tracer_provider must be an opentelemetry TracerProvider")
    if meter_provider is not None and not isinstance(meter_provider, metrics.MeterProvider):
        raise TypeError("meter_provider must be an opentelemetry MeterProvider")
    from ._otel_observer import Telemetry

    telemetry = Telemetry(tracer_provider, meter_provider, capture_content, _latest())
    _observe.observer_factory = telemetry.observe


def uninstrument() -> None:
    """Stop recording; turns already in flight finish their spans. Idempotent."""
    _observe.observer_factory = None
