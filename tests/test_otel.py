"""instrument(): GenAI spans and metrics, pinned with the SDK's in-memory exporter and reader."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import aiostream_chat
from aiostream_chat import (
    Message,
    Metrics,
    Reply,
    ThrottlingError,
    Usage,
    _observe,
    instrument,
    uninstrument,
)
from aiostream_chat._observe import TurnInfo, TurnObserver

MODEL = "us.amazon.nova-micro-v1:0"
ENDPOINT = "http://127.0.0.1:8123"


@dataclass
class Otel:
    """An SDK pipeline that keeps every finished span and metric point in memory."""

    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)

    def __post_init__(self) -> None:
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        (found,) = [s for s in self.spans() if s.name == name]
        return found

    def points(self, metric: str) -> list[HistogramDataPoint]:
        data = self.reader.get_metrics_data()
        out: list[HistogramDataPoint] = []
        if data is None:
            return out
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        out.extend(p for p in m.data.data_points)  # type: ignore[misc]
        return out


Instrument = Callable[..., Otel]


@pytest.fixture
def instrumented() -> Iterator[Instrument]:
    """Calls instrument() with an in-memory SDK pipeline; uninstruments after the test."""
    made: list[Otel] = []

    def make(**kwargs: Any) -> Otel:
        otel = Otel()
        instrument(
            tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, **kwargs
        )
        made.append(otel)
        return otel

    yield make
    uninstrument()
    for otel in made:
        otel.tracer_provider.shutdown()
        otel.meter_provider.shutdown()


@dataclass(frozen=True)
class FakeRequest:
    """Stands in for the stream's Request at the observer seam."""

    model_id: str
    body: dict[str, Any]


BODY: dict[str, Any] = {
    "messages": [{"role": "user", "content": [{"text": "Hello there"}]}],
    "system": [{"text": "Be brief."}],
    "inferenceConfig": {
        "maxTokens": 200,
        "temperature": 0.5,
        "topP": 0.9,
        "stopSequences": ["END"],
    },
    "toolConfig": {
        "tools": [
            {
                "toolSpec": {
                    "name": "weather",
                    "description": "Weather in a city",
                    "inputSchema": {"json": {"type": "object"}},
                }
            }
        ]
    },
}


def _reply(text: str = "Hi!", stop: str = "end_turn", request_id: str = "req-1") -> Reply:
    return Reply(
        message=Message.assistant(text),
        text=text,
        stop_reason=stop,
        usage=Usage(input_tokens=12, output_tokens=3, total_tokens=20, cache_read_input_tokens=5),
        metrics=Metrics(duration=0.1),
        request_id=request_id,
    )


def _observer(body: dict[str, Any] = BODY) -> tuple[TurnObserver, FakeRequest]:
    factory = _observe.observer_factory
    assert factory is not None
    request = FakeRequest(MODEL, body)
    return factory(TurnInfo(MODEL, request, ENDPOINT)), request


def test_one_call_is_a_client_chat_span_under_an_internal_turn_span(
    instrumented: Instrument,
) -> None:
    """A completed one-round turn: `invoke_agent` (INTERNAL) parents `chat {model}` (CLIENT),
    with the v1.41 request, response, usage and server attributes."""
    otel = instrumented()
    obs, request = _observer()
    obs.call_started(0, request)
    obs.first_chunk(0.25)
    obs.call_ended(_reply(), None)
    obs.turn_ended(_reply(), None, False)

    turn, chat = otel.span("invoke_agent"), otel.span(f"chat {MODEL}")
    assert turn.kind is SpanKind.INTERNAL and chat.kind is SpanKind.CLIENT
    assert chat.parent is not None and chat.parent.span_id == turn.context.span_id
    assert turn.parent is None
    assert dict(chat.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.system": "aws.bedrock",
        "gen_ai.request.model": MODEL,
        "server.address": "127.0.0.1",
        "server.port": 8123,
        "gen_ai.request.stream": True,
        "gen_ai.request.max_tokens": 200,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.stop_sequences": ("END",),
        "gen_ai.response.time_to_first_chunk": 0.25,
        "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.response.id": "req-1",
        "gen_ai.usage.input_tokens": 17,  # 12 + 5 read from the cache
        "gen_ai.usage.output_tokens": 3,
        "gen_ai.usage.cache_read.input_tokens": 5,
    }
    assert turn.attributes is not None
    assert turn.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert turn.attributes["gen_ai.usage.output_tokens"] == 3
    assert turn.status.status_code is StatusCode.UNSET
    assert chat.status.status_code is StatusCode.UNSET


def test_metrics_of_a_completed_call(instrumented: Instrument) -> None:
    """Token usage (input and output), operation duration and time to first chunk are
    recorded once each with the conventions' attributes."""
    otel = instrumented()
    obs, request = _observer()
    obs.call_started(0, request)
    obs.first_chunk(0.25)
    obs.call_ended(_reply(), None)
    obs.turn_ended(_reply(), None, False)

    common = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.system": "aws.bedrock",
        "gen_ai.request.model": MODEL,
        "server.address": "127.0.0.1",
        "server.port": 8123,
    }
    tokens = {
        (p.attributes or {})["gen_ai.token.type"]: p
        for p in otel.points("gen_ai.client.token.usage")
    }
    assert set(tokens) == {"input", "output"}
    assert tokens["input"].sum == 17 and tokens["output"].sum == 3
    assert dict(tokens["input"].attributes or {}) == {**common, "gen_ai.token.type": "input"}
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert dict(duration.attributes or {}) == common and duration.count == 1
    (first,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert first.sum == 0.25 and dict(first.attributes or {}) == common


def test_two_rounds_are_sibling_chat_spans(instrumented: Instrument) -> None:
    """A tool loop's rounds are two `chat` spans under the same turn span, the second
    marked with its round index; the turn carries the usage of the whole turn."""
    otel = instrumented()
    obs, request = _observer()
    obs.call_started(0, request)
    obs.call_ended(_reply("", stop="tool_use", request_id="req-1"), None)
    obs.call_started(1, request)
    obs.call_ended(_reply("Sunny.", request_id="req-2"), None)
    total = _reply("Sunny.").model_copy(update={"usage": Usage(input_tokens=30, output_tokens=9)})
    obs.turn_ended(total, None, False)

    turn = otel.span("invoke_agent")
    chats = [s for s in otel.spans() if s.name == f"chat {MODEL}"]
    assert len(chats) == 2
    assert all(c.parent is not None and c.parent.span_id == turn.context.span_id for c in chats)
    first, second = sorted(chats, key=lambda s: s.start_time or 0)
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_use",)
    assert "aiostream_chat.round" not in first.attributes
    assert second.attributes["aiostream_chat.round"] == 1
    assert second.attributes["gen_ai.response.id"] == "req-2"
    assert turn.attributes is not None
    assert turn.attributes["gen_ai.usage.input_tokens"] == 30
    assert turn.attributes["gen_ai.usage.output_tokens"] == 9
    assert otel.points("gen_ai.client.operation.duration")[0].count == 2


def test_a_retry_is_a_span_event_with_error_type_and_delay(instrumented: Instrument) -> None:
    """`retrying` adds an `aiostream_chat.retry` event to the chat span."""
    otel = instrumented()
    obs, request = _observer()
    obs.call_started(0, request)
    obs.retrying(2, 0.75, ThrottlingError("slow down"))
    obs.call_ended(_reply(), None)
    obs.turn_ended(_reply(), None, False)

    (event,) = otel.span(f"chat {MODEL}").events
    assert event.name == "aiostream_chat.retry"
    assert dict(event.attributes or {}) == {
        "error.type": "ThrottlingError",
        "aiostream_chat.retry.attempt": 2,
        "aiostream_chat.retry.delay": 0.75,
    }


def test_a_failed_call_sets_error_type_and_status(instrumented: Instrument) -> None:
    """A failed call and its turn end with `error.type` = our class name and an ERROR
    status; the duration point carries `error.type`; no token points are recorded."""
    otel = instrumented()
    obs, request = _observer()
    obs.call_started(0, request)
    error = ThrottlingError("Too many requests")
    obs.call_ended(None, error)
    obs.turn_ended(None, error, False)

    for span in otel.spans():
        assert span.attributes is not None
        assert span.attributes["error.type"] == "ThrottlingError"
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "Too many requests"
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.attributes is not None
    assert duration.attributes["error.type"] == "ThrottlingError"
    assert otel.points("gen_ai.client.token.usage") == []


def test_a_turn_cancelled_mid_call_ends_both_spans_as_cancelled(instrumented: Instrument) -> None:
    """A turn cancelled while its call is open ends the call and the turn with
    `error.type="cancelled"`."""
    otel = instrumented()
    obs, request = _observer()
    obs.call_started(0, request)
    obs.first_chunk(0.1)
    obs.turn_ended(None, None, True)

    spans = otel.spans()
    assert {s.name for s in spans} == {"invoke_agent", f"chat {MODEL}"}
    for span in spans:
        assert span.attributes is not None and span.attributes["error.type"] == "cancelled"
        assert span.status.status_code is StatusCode.ERROR
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.attributes is not None and duration.attributes["error.type"] == "cancelled"


def test_no_content_without_capture_content(instrumented: Instrument) -> None:
    """By default no prompt, system prompt, tool definition or reply text reaches a span."""
    otel = instrumented()
    obs, request = _observer()
    obs.call_started(0, request)
    obs.call_ended(_reply("Secret answer"), None)
    obs.turn_ended(_reply("Secret answer"), None, False)

    for span in otel.spans():
        dumped = json.dumps(dict(span.attributes or {}))
        for text in ("Hello there", "Be brief", "weather", "Secret answer"):
            assert text not in dumped
        assert not any(
            k.startswith(("gen_ai.input", "gen_ai.output")) for k in span.attributes or {}
        )


def test_capture_content_records_messages_in_the_conventions_shape(
    instrumented: Instrument,
) -> None:
    """With capture_content=True the chat span carries input and output messages, system
    instructions and tool definitions as JSON in the v1.41 schemas."""
    otel = instrumented(capture_content=True)
    obs, request = _observer()
    obs.call_started(0, request)
    obs.call_ended(_reply("Hi!"), None)
    obs.turn_ended(_reply("Hi!"), None, False)

    attrs = otel.span(f"chat {MODEL}").attributes
    assert attrs is not None
    assert json.loads(str(attrs["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "Hello there"}]}
    ]
    assert json.loads(str(attrs["gen_ai.system_instructions"])) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert json.loads(str(attrs["gen_ai.tool.definitions"])) == [
        {
            "type": "function",
            "name": "weather",
            "description": "Weather in a city",
            "parameters": {"type": "object"},
        }
    ]
    assert json.loads(str(attrs["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hi!"}],
            "finish_reason": "stop",
        }
    ]


def test_captured_content_never_holds_raw_bytes(instrumented: Instrument) -> None:
    """An image in the history and a tool call/result become typed parts without their
    bytes: telemetry records the kind of a binary block, not its data."""
    otel = instrumented(capture_content=True)
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "What is this?"},
                    {"image": {"format": "png", "source": {"bytes": b"\x89PNG-secret"}}},
                ],
            },
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "t1", "name": "look", "input": {"x": 1}}}],
            },
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "a cat"}]}}],
            },
        ]
    }
    obs, request = _observer(body)
    obs.call_started(0, request)
    obs.call_ended(_reply(), None)
    obs.turn_ended(_reply(), None, False)

    attrs = otel.span(f"chat {MODEL}").attributes
    assert attrs is not None
    raw = str(attrs["gen_ai.input.messages"])
    assert "PNG-secret" not in raw
    assert json.loads(raw) == [
        {
            "role": "user",
            "parts": [{"type": "text", "content": "What is this?"}, {"type": "image"}],
        },
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "t1", "name": "look", "arguments": {"x": 1}}],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "t1", "response": ["a cat"]}],
        },
    ]


def test_latest_experimental_opt_in_drops_the_old_names(
    instrumented: Instrument, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With OTEL_SEMCONV_STABILITY_OPT_IN listing gen_ai_latest_experimental, spans and
    metrics carry only the newest names: no deprecated `gen_ai.system` duplicate."""
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http, gen_ai_latest_experimental")
    otel = instrumented()
    obs, request = _observer()
    obs.call_started(0, request)
    obs.call_ended(_reply(), None)
    obs.turn_ended(_reply(), None, False)

    for span in otel.spans():
        assert span.attributes is not None
        assert "gen_ai.system" not in span.attributes
        assert span.attributes["gen_ai.provider.name"] == "aws.bedrock"
    for point in otel.points("gen_ai.client.token.usage"):
        assert point.attributes is not None and "gen_ai.system" not in point.attributes


def test_uninstrument_removes_the_observer(instrumented: Instrument) -> None:
    """instrument() installs the observer factory; uninstrument() removes it (idempotent)."""
    instrumented()
    assert _observe.observer_factory is not None
    uninstrument()
    uninstrument()
    assert _observe.observer_factory is None


def test_instrument_rejects_bad_arguments() -> None:
    """Wrong types raise TypeError and leave nothing installed."""
    with pytest.raises(TypeError, match="capture_content"):
        instrument(capture_content="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tracer_provider"):
        instrument(tracer_provider=object())
    with pytest.raises(TypeError, match="meter_provider"):
        instrument(meter_provider=object())
    assert _observe.observer_factory is None


def test_importing_the_package_does_not_import_opentelemetry() -> None:
    """`import aiostream_chat` loads no opentelemetry module (the extra is optional)."""
    code = (
        "import sys, aiostream_chat; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_instrument_without_the_extra_names_the_install_command() -> None:
    """Without opentelemetry installed, instrument() raises ImportError naming the extra."""
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import aiostream_chat\n"
        "try:\n    aiostream_chat.instrument()\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'aiostream-chat[otel]'" in out.stdout
    assert aiostream_chat.instrument is instrument
