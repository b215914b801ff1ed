"""The OpenTelemetry turn observer: GenAI spans and metrics (imported only by ``instrument()``).

A turn is an INTERNAL ``invoke_agent`` span; each model call (round) of it is a CLIENT
``chat {model_id}`` span under it, so a tool loop's rounds are siblings. Both start in the
context of the task that starts the turn, so the caller's current span is their parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _otel_content as content

if TYPE_CHECKING:
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from ._models import Reply, ToolResultBlock, ToolUseBlock, Usage
    from ._observe import TurnInfo
    from ._request import Request

__all__ = ["Telemetry", "error_type"]

PROVIDER = "aws.bedrock"
SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"
# Bucket boundaries the conventions advise for these histograms.
_SECONDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
_TOKENS = [float(4**i) for i in range(14)]

Attributes = dict[str, "AttributeValue"]


def error_type(error: BaseException | None) -> str | None:
    """``error.type`` for an error: our class name, or the qualified name of anything else."""
    if error is None:
        return None
    cls = type(error)
    if cls.__module__ in ("aiostream_chat", "builtins") or cls.__module__.startswith(
        "aiostream_chat."
    ):
        return cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}"


def _server(endpoint_url: str | None) -> Attributes:
    if not endpoint_url:
        return {}
    parts = urlsplit(endpoint_url)
    if not parts.hostname:
        return {}
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {"server.address": parts.hostname, "server.port": port}


def _request_attributes(body: dict[str, Any]) -> Attributes:
    """``gen_ai.request.*`` from the Converse body's inference settings."""
    attrs: Attributes = {}
    config = body.get("inferenceConfig") or {}
    if "maxTokens" in config:
        attrs["gen_ai.request.max_tokens"] = config["maxTokens"]
    if "temperature" in config:
        attrs["gen_ai.request.temperature"] = float(config["temperature"])
    if "topP" in config:
        attrs["gen_ai.request.top_p"] = float(config["topP"])
    if config.get("stopSequences"):
        attrs["gen_ai.request.stop_sequences"] = list(config["stopSequences"])
    top_k = (body.get("additionalModelRequestFields") or {}).get("top_k")
    if isinstance(top_k, int | float) and not isinstance(top_k, bool):
        attrs["gen_ai.request.top_k"] = float(top_k)
    guardrail = (body.get("guardrailConfig") or {}).get("guardrailIdentifier")
    if guardrail:
        attrs["aws.bedrock.guardrail.id"] = guardrail
    return attrs


def _usage_attributes(usage: Usage) -> Attributes:
    # The conventions count cached tokens in the input; Bedrock reports them apart.
    attrs: Attributes = {
        "gen_ai.usage.input_tokens": _input_tokens(usage),
        "gen_ai.usage.output_tokens": usage.output_tokens,
    }
    if usage.cache_read_input_tokens:
        attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_input_tokens
    if usage.cache_write_input_tokens:
        attrs["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_input_tokens
    return attrs


def _input_tokens(usage: Usage) -> int:
    return usage.input_tokens + usage.cache_read_input_tokens + usage.cache_write_input_tokens


class Telemetry:
    """The tracer, the three histograms and the settings every observed turn shares."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        capture_content: bool,
        latest: bool,
    ) -> None:
        from . import __version__

        self.tracer = trace.get_tracer(
            "aiostream_chat", __version__, tracer_provider, schema_url=SCHEMA_URL
        )
        meter = metrics.get_meter("aiostream_chat", __version__, meter_provider, SCHEMA_URL)
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKENS,
        )
        self.first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.capture_content = capture_content
        self.latest = latest

    def observe(self, info: TurnInfo) -> TurnSpans:
        """The observer of one turn (``_observe.observer_factory``)."""
        return TurnSpans(self, info)


class _Call:
    """The span and clock of one model call."""

    __slots__ = ("span", "start")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.start = time.perf_counter()


class TurnSpans:
    """One turn's spans and metric points."""

    def __init__(self, telemetry: Telemetry, info: TurnInfo) -> None:
        self._t = telemetry
        self._model_id = info.model_id
        base: Attributes = {
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": info.model_id,
            **_server(info.endpoint_url),
        }
        if not telemetry.latest:
            base["gen_ai.system"] = PROVIDER  # the pre-1.37 name, for older dashboards
        self._base = base
        self._metric_attrs: Attributes = {"gen_ai.operation.name": "chat", **base}
        self._turn = telemetry.tracer.start_span(
            "invoke_agent",
            kind=SpanKind.INTERNAL,
            attributes={"gen_ai.operation.name": "invoke_agent", **base},
        )
        self._context = trace.set_span_in_context(self._turn)
        self._call: _Call | None = None

    def call_started(self, round_index: int, request: Request) -> None:
        if self._call is not None:  # never expected: close it rather than leak it
            self._end_call(None, "_OTHER", "a new model call started")
        body = request.body
        attrs: Attributes = {
            "gen_ai.operation.name": "chat",
            **self._base,
            "gen_ai.request.stream": True,
            **_request_attributes(body),
        }
        if round_index:
            attrs["aiostream_chat.round"] = round_index
        if self._t.capture_content:
            attrs["gen_ai.input.messages"] = content.input_messages(body)
            for key, value in (
                ("gen_ai.system_instructions", content.system_instructions(body)),
                ("gen_ai.tool.definitions", content.tools(body)),
            ):
                if value is not None:
                    attrs[key] = value
        span = self._t.tracer.start_span(
            f"chat {self._model_id}", context=self._context, kind=SpanKind.CLIENT, attributes=attrs
        )
        self._call = _Call(span)

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        call = self._call
        if call is None:
            yield
            return
        token = otel_context.attach(trace.set_span_in_context(call.span, self._context))
        try:
            yield
        finally:
            otel_context.detach(token)

    @contextlib.contextmanager
    def tool_call(
        self, use: ToolUseBlock, description: str | None
    ) -> Iterator[Callable[[ToolResultBlock, str | None], None]]:
        attrs: Attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": use.name,
            "gen_ai.tool.call.id": use.tool_use_id,
            "gen_ai.tool.type": "function",
        }
        if description:
            attrs["gen_ai.tool.description"] = description
        if self._t.capture_content:
            attrs["gen_ai.tool.call.arguments"] = content.tool_arguments(use.input)
        span = self._t.tracer.start_span(
            f"execute_tool {use.name}",
            context=self._context,
            kind=SpanKind.INTERNAL,
            attributes=attrs,
        )

        def record(result: ToolResultBlock, failure: str | None) -> None:
            if self._t.capture_content:
                span.set_attribute("gen_ai.tool.call.result", content.tool_result(result))
            if failure is not None:
                entries = [c for c in result.content if isinstance(c, dict) and "text" in c]
                _fail(span, failure, str(entries[0]["text"]) if entries else failure)

        token = otel_context.attach(trace.set_span_in_context(span, self._context))
        try:
            yield record
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            _fail(span, "cancelled" if cancelled else type(exc).__name__, str(exc) or None)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    def retrying(self, attempt: int, delay: float, error: BaseException) -> None:
        span = self._call.span if self._call is not None else self._turn
        span.add_event(
            "aiostream_chat.retry",
            {
                "error.type": error_type(error) or "_OTHER",
                "aiostream_chat.retry.attempt": attempt,
                "aiostream_chat.retry.delay": delay,
            },
        )

    def first_chunk(self, seconds: float) -> None:
        if self._call is not None:
            self._call.span.set_attribute("gen_ai.response.time_to_first_chunk", seconds)
        self._t.first_chunk.record(seconds, self._metric_attrs)

    def call_ended(self, reply: Reply | None, error: BaseException | None) -> None:
        if reply is None and error is None:  # the stream's way of saying "cancelled"
            self._end_call(None, "cancelled", "the turn was cancelled")
        else:
            self._end_call(reply, error_type(error), str(error) if error is not None else None)

    def turn_ended(self, reply: Reply | None, error: BaseException | None, cancelled: bool) -> None:
        kind = "cancelled" if cancelled else error_type(error)
        why = "the turn was cancelled" if cancelled else (str(error) if error else None)
        if self._call is not None:
            self._end_call(None, kind or "_OTHER", why or "the turn ended during a model call")
        if reply is not None:
            self._turn.set_attributes(_usage_attributes(reply.usage))
        _fail(self._turn, kind, why)
        self._turn.end()

    def _end_call(self, reply: Reply | None, kind: str | None, why: str | None) -> None:
        call, self._call = self._call, None
        if call is None:
            return
        span = call.span
        if reply is not None:
            span.set_attribute("gen_ai.response.finish_reasons", [reply.stop_reason])
            if reply.request_id:
                span.set_attribute("gen_ai.response.id", reply.request_id)
            span.set_attributes(_usage_attributes(reply.usage))
            if self._t.capture_content:
                span.set_attribute("gen_ai.output.messages", content.output_messages(reply))
            tokens = self._t.tokens
            tokens.record(
                _input_tokens(reply.usage), {**self._metric_attrs, "gen_ai.token.type": "input"}
            )
            tokens.record(
                reply.usage.output_tokens, {**self._metric_attrs, "gen_ai.token.type": "output"}
            )
        _fail(span, kind, why)
        attrs = self._metric_attrs if kind is None else {**self._metric_attrs, "error.type": kind}
        self._t.duration.record(time.perf_counter() - call.start, attrs)
        span.end()


def _fail(span: Span, kind: str | None, why: str | None) -> None:
    if kind is not None:
        span.set_attribute("error.type", kind)
        span.set_status(Status(StatusCode.ERROR, why or kind))
