"""instrument(): GenAI spans and metrics, pinned with the SDK's in-memory exporter and reader."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import aiostream_chat
from aiostream_chat import (
    AccessDeniedError,
    AsyncConversation,
    InferenceConfig,
    Message,
    Metrics,
    ModelStreamError,
    Reply,
    RetryPolicy,
    ThrottlingError,
    ToolCallStarted,
    ToolSpec,
    Usage,
    _fastpath,
    _observe,
    instrument,
    tool,
    uninstrument,
)
from aiostream_chat._observe import TurnInfo, TurnObserver
from aiostream_chat._request import Request
from aiostream_chat.testing import FakeBedrock, Fault, ToolUse, agent, reply

from .conftest import MODEL as MODEL_ID
from .conftest import MakeConv

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


def _observer(body: dict[str, Any] = BODY) -> tuple[TurnObserver, Request]:
    factory = _observe.observer_factory
    assert factory is not None
    return factory(TurnInfo(MODEL, ENDPOINT)), Request(MODEL, body)


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


def test_call_ended_without_reply_or_error_means_cancelled(instrumented: Instrument) -> None:
    """The stream reports a cancelled call as call_ended(None, None): the chat span ends with
    error.type="cancelled" before the turn span does."""
    otel = instrumented()
    obs, request = _observer()
    obs.call_started(0, request)
    obs.call_ended(None, None)
    assert [s.name for s in otel.spans()] == [f"chat {MODEL}"]
    obs.turn_ended(None, None, True)

    for span in otel.spans():
        assert (span.attributes or {})["error.type"] == "cancelled"


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (
            "https://bedrock-runtime.us-east-1.amazonaws.com",
            {"server.address": "bedrock-runtime.us-east-1.amazonaws.com", "server.port": 443},
        ),
        ("http://localhost:8000/", {"server.address": "localhost", "server.port": 8000}),
        (None, {}),
    ],
)
def test_server_address_and_port_come_from_the_endpoint(
    instrumented: Instrument, endpoint: str | None, expected: dict[str, Any]
) -> None:
    """server.address/server.port are the endpoint's host and port (443 for https by
    default); without a known endpoint neither is set."""
    otel = instrumented()
    factory = _observe.observer_factory
    assert factory is not None
    obs = factory(TurnInfo(MODEL, endpoint))
    obs.call_started(0, Request(MODEL, BODY))
    obs.call_ended(_reply(), None)
    obs.turn_ended(_reply(), None, False)
    for span in otel.spans():
        attrs = span.attributes or {}
        assert {k: v for k, v in attrs.items() if k.startswith("server.")} == expected


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


# -- through the real stack (FakeBedrock) -------------------------------------------------------


def _by_name(otel: Otel) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in otel.spans():
        out.setdefault(span.name, []).append(span)
    return out


def _port(fake: FakeBedrock) -> int:
    return int(fake.endpoint_url.rsplit(":", 1)[1])


async def test_a_completed_turn_through_the_emulator(
    instrumented: Instrument, fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """A completed turn: one turn span and one chat span with the request id, stop reason,
    usage and the emulator's address; one point per metric (two for token usage)."""
    otel = instrumented()
    usage = {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18}
    fake_bedrock.enqueue(reply("Hello back.", chunks=3, usage=usage))
    result = await conv.send("Hello", inference=InferenceConfig(max_tokens=50, temperature=0.2))

    spans = _by_name(otel)
    assert set(spans) == {"invoke_agent", f"chat {MODEL_ID}"}
    (turn,), (chat,) = spans["invoke_agent"], spans[f"chat {MODEL_ID}"]
    assert chat.parent is not None and chat.parent.span_id == turn.context.span_id
    attrs = chat.attributes or {}
    assert attrs["gen_ai.response.id"] == result.request_id
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attrs["gen_ai.usage.input_tokens"] == 11
    assert attrs["gen_ai.usage.output_tokens"] == 7
    assert attrs["gen_ai.request.max_tokens"] == 50
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["server.port"] == _port(fake_bedrock)
    first = attrs["gen_ai.response.time_to_first_chunk"]
    assert isinstance(first, float) and first == result.metrics.time_to_first_token
    assert "error.type" not in attrs and "error.type" not in (turn.attributes or {})
    tokens = {
        (p.attributes or {})["gen_ai.token.type"]: p.sum
        for p in otel.points("gen_ai.client.token.usage")
    }
    assert tokens == {"input": 11, "output": 7}
    assert [p.count for p in otel.points("gen_ai.client.operation.duration")] == [1]
    assert [p.count for p in otel.points("gen_ai.client.operation.time_to_first_chunk")] == [1]


async def test_captured_content_through_the_emulator(
    instrumented: Instrument, fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """With capture_content=True a real turn records the system prompt, the tool list, the
    prompt, and the reply's text and tool call (arguments as JSON) in the v1.41 shapes."""
    otel = instrumented(capture_content=True)
    weather = ToolSpec(
        name="weather", description="Weather in a city", input_schema={"type": "object"}
    )
    conv = make_conv(system="Be brief.", tools=[weather])
    fake_bedrock.enqueue(
        reply("Checking.", tool_uses=[ToolUse("weather", {"city": "Oslo"}, tool_use_id="t1")])
    )
    await conv.send("Weather in Oslo?")

    (chat,) = _by_name(otel)[f"chat {MODEL_ID}"]
    attrs = chat.attributes or {}
    assert json.loads(str(attrs["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Oslo?"}]}
    ]
    assert json.loads(str(attrs["gen_ai.system_instructions"])) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert json.loads(str(attrs["gen_ai.tool.definitions"]))[0]["name"] == "weather"
    assert json.loads(str(attrs["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Checking."},
                {"type": "tool_call", "id": "t1", "name": "weather", "arguments": {"city": "Oslo"}},
            ],
            "finish_reason": "tool_call",
        }
    ]
    assert attrs["gen_ai.response.finish_reasons"] == ("tool_use",)


async def test_a_retried_turn_through_the_emulator(
    instrumented: Instrument, fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """A throttled first attempt is one retry event on the one chat span, which still ends
    successfully; the duration point has no error.type."""
    otel = instrumented()
    fake_bedrock.enqueue(reply(fault=Fault.http(429)), reply("Fine.", chunks=2))
    await conv.send("Hello")

    (chat,) = _by_name(otel)[f"chat {MODEL_ID}"]
    (event,) = chat.events
    assert event.name == "aiostream_chat.retry"
    assert (event.attributes or {})["error.type"] == "ThrottlingError"
    assert (event.attributes or {})["aiostream_chat.retry.attempt"] == 2
    assert chat.status.status_code is StatusCode.UNSET
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert "error.type" not in (duration.attributes or {})


async def test_a_failed_turn_through_the_emulator(
    instrumented: Instrument, fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A turn that fails (access denied, not retryable) ends both spans with ERROR and
    error.type=AccessDeniedError; retries exhausted on throttling end with ThrottlingError."""
    otel = instrumented()
    conv = make_conv(retry=RetryPolicy(max_attempts=2))
    fake_bedrock.enqueue(reply(fault=Fault.http(403)))
    with pytest.raises(AccessDeniedError):
        await conv.send("Hello")
    fake_bedrock.enqueue(reply(fault=Fault.http(429)), times=2)
    with pytest.raises(ThrottlingError):
        await conv.send("Hello")

    turns = sorted(_by_name(otel)["invoke_agent"], key=lambda s: s.start_time or 0)
    assert [(t.attributes or {})["error.type"] for t in turns] == [
        "AccessDeniedError",
        "ThrottlingError",
    ]
    for span in otel.spans():
        assert span.status.status_code is StatusCode.ERROR
    chats = sorted(_by_name(otel)[f"chat {MODEL_ID}"], key=lambda s: s.start_time or 0)
    assert [len(c.events) for c in chats] == [0, 1]
    kinds = sorted(
        str((p.attributes or {})["error.type"])
        for p in otel.points("gen_ai.client.operation.duration")
    )
    assert kinds == ["AccessDeniedError", "ThrottlingError"]


async def test_a_cancelled_turn_through_the_emulator(
    instrumented: Instrument, fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """Leaving `async for` after the first chunk ends the chat and turn spans with
    error.type="cancelled"."""
    otel = instrumented()
    fake_bedrock.enqueue(reply("one two three four five six", chunks=6, delay=0.01))
    async for _ in conv.stream("Hello"):
        break

    spans = otel.spans()
    assert {s.name for s in spans} == {"invoke_agent", f"chat {MODEL_ID}"}
    for span in spans:
        assert (span.attributes or {})["error.type"] == "cancelled"
        assert span.status.status_code is StatusCode.ERROR
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert (duration.attributes or {})["error.type"] == "cancelled"
    assert otel.points("gen_ai.client.token.usage") == []


async def test_time_to_first_chunk_is_recorded_for_calls_that_fail_or_are_cancelled(
    instrumented: Instrument, fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A call whose content started and then failed (a stream error after two deltas: not
    retried, content was delivered), and one left after its first chunk, both record their
    time to first chunk: on the chat span and once each in the histogram."""
    otel = instrumented()
    conv = make_conv(retry=RetryPolicy(max_attempts=3))
    fault = Fault.exception("modelStreamErrorException", "boom", after=2)
    fake_bedrock.enqueue(reply("a b c d", chunks=["a ", "b ", "c ", "d"], fault=fault))
    stream = conv.stream("Hello")
    with pytest.raises(ModelStreamError) as caught:
        async for _ in stream:
            pass
    assert caught.value.partial_text == "a b " and caught.value.attempts == 1
    fake_bedrock.enqueue(reply("one two three four", chunks=4, delay=0.01))
    async for _ in conv.stream("Hello"):
        break

    chats = sorted(_by_name(otel)[f"chat {MODEL_ID}"], key=lambda s: s.start_time or 0)
    kinds = [(c.attributes or {})["error.type"] for c in chats]
    assert kinds == ["ModelStreamError", "cancelled"]
    firsts = [(c.attributes or {})["gen_ai.response.time_to_first_chunk"] for c in chats]
    assert all(isinstance(f, float) and 0 < f < 5 for f in firsts)
    (point,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert point.count == 2


@pytest.mark.parametrize("path", ["fast", "botocore"])
async def test_the_chat_span_is_current_while_the_request_is_sent(
    instrumented: Instrument,
    fake_bedrock: FakeBedrock,
    make_conv: MakeConv,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    """HTTP-level instrumentation (aiohttp's, botocore's) nests under the model call: while
    each attempt's request is sent, the current span is that round's chat span, on both
    request paths and for a retried attempt; once the request is sent, the caller's context
    is back as it was."""
    otel = instrumented()
    monkeypatch.setattr(_fastpath, "enabled", path == "fast")
    current: list[Any] = []
    real_request = aiohttp.ClientSession._request

    async def recording_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        current.append(trace.get_current_span().get_span_context().span_id)
        return await real_request(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "_request", recording_request)
    conv = make_conv(retry=RetryPolicy(max_attempts=2))
    fake_bedrock.enqueue(reply(fault=Fault.http(503)), reply("Fine.", chunks=2))
    before = trace.get_current_span()
    assert (await conv.send("Hello")).text == "Fine."
    assert trace.get_current_span() is before

    (chat,) = _by_name(otel)[f"chat {MODEL_ID}"]
    assert chat.context is not None
    assert current == [chat.context.span_id] * 2  # the attempt that got a 503, and its retry


async def test_a_tool_loop_is_sibling_chat_spans_under_one_turn(
    instrumented: Instrument, fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """A turn with two tool rounds and an answer is one turn span over three sibling chat
    spans (rounds 0, 1, 2), each with its own stop reason and request id; a retry in round 1
    is an event on that round's span only; the turn span carries the summed usage; with
    content capture the round after a tool call sends its result as a tool message."""
    otel = instrumented(capture_content=True)

    @tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    fake_bedrock.responder = agent(
        [ToolUse("weather", {"city": "Paris"})],
        [ToolUse("weather", {"city": "Oslo"})],
        faults={1: [Fault.http(429)]},
    )
    result = await make_conv(tools=[weather]).send("Paris or Oslo?")

    (turn,) = _by_name(otel)["invoke_agent"]
    chats = sorted(_by_name(otel)[f"chat {MODEL_ID}"], key=lambda s: s.start_time or 0)
    assert len(chats) == 3
    for chat in chats:
        assert chat.parent is not None and chat.parent.span_id == turn.context.span_id
    attrs = [c.attributes or {} for c in chats]
    assert [a.get("aiostream_chat.round") for a in attrs] == [None, 1, 2]
    assert [a["gen_ai.response.finish_reasons"] for a in attrs] == [
        ("tool_use",),
        ("tool_use",),
        ("end_turn",),
    ]
    assert len({a["gen_ai.response.id"] for a in attrs}) == 3
    assert attrs[2]["gen_ai.response.id"] == result.request_id
    assert [len(c.events) for c in chats] == [0, 1, 0]
    assert (turn.attributes or {})["gen_ai.usage.input_tokens"] == result.usage.input_tokens
    per_round = [a["gen_ai.usage.input_tokens"] for a in attrs]
    assert result.usage.input_tokens == sum(n for n in per_round if isinstance(n, int))
    sent = json.loads(str(attrs[1]["gen_ai.input.messages"]))
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[2]["parts"][0]["type"] == "tool_call_response"
    assert [p.count for p in otel.points("gen_ai.client.operation.duration")] == [3]


async def test_each_tool_call_is_an_execute_tool_span_under_the_turn(
    instrumented: Instrument, fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Every tool call the stream runs is an INTERNAL `execute_tool {name}` span under the
    turn span, with the call's id, name, type and description; with content capture its
    arguments and result. Spans the tool itself makes nest under it (also from a sync tool's
    worker thread). A tool that raises, times out or does not exist ends its span with
    error.type (the exception's class, "timeout", "unknown_tool"); the turn goes on."""
    otel = instrumented(capture_content=True)
    tracer = otel.tracer_provider.get_tracer("tool-code")

    @tool
    def weather(city: str) -> str:
        """The weather in a city."""
        with tracer.start_as_current_span("lookup"):
            return f"sunny in {city}"

    @tool
    async def broken(city: str) -> str:
        """Always fails."""
        raise LookupError(f"no data for {city}")

    @tool
    async def slow(city: str) -> str:
        """Never answers in time."""
        await asyncio.sleep(10)
        return city

    fake_bedrock.responder = agent(
        [
            ToolUse("weather", {"city": "Paris"}),
            ToolUse("broken", {"city": "Oslo"}),
            ToolUse("slow", {"city": "Rome"}),
            ToolUse("missing", {"city": "Bern"}),
        ]
    )
    conv = make_conv(tools=[weather, broken, slow])
    result = await conv.send("Weather?", tool_timeout=0.2)
    assert result.stop_reason == "end_turn"

    (turn,) = _by_name(otel)["invoke_agent"]
    tools = {
        (s.attributes or {})["gen_ai.tool.name"]: s
        for s in otel.spans()
        if s.name.startswith("execute_tool ")
    }
    assert sorted(tools) == ["broken", "missing", "slow", "weather"]
    for name, span in tools.items():
        attrs = span.attributes or {}
        assert span.name == f"execute_tool {name}" and span.kind is SpanKind.INTERNAL
        assert span.parent is not None and span.parent.span_id == turn.context.span_id
        assert attrs["gen_ai.operation.name"] == "execute_tool"
        assert attrs["gen_ai.tool.type"] == "function"
        assert str(attrs["gen_ai.tool.call.id"]).startswith("tooluse_")
        assert json.loads(str(attrs["gen_ai.tool.call.arguments"]))["city"]
    ok = tools["weather"].attributes or {}
    assert ok["gen_ai.tool.description"] == "The weather in a city."
    assert json.loads(str(ok["gen_ai.tool.call.result"])) == ["sunny in Paris"]
    assert "error.type" not in ok and tools["weather"].status.status_code is not StatusCode.ERROR
    kinds = {n: (s.attributes or {}).get("error.type") for n, s in tools.items()}
    assert kinds == {
        "weather": None,
        "broken": "LookupError",
        "slow": "timeout",
        "missing": "unknown_tool",
    }
    assert tools["broken"].status.status_code is StatusCode.ERROR
    (lookup,) = [s for s in otel.spans() if s.name == "lookup"]
    weather_context = tools["weather"].context
    assert weather_context is not None
    assert lookup.parent is not None and lookup.parent.span_id == weather_context.span_id


async def test_a_tool_call_cut_short_by_cancel_ends_its_span_cancelled(
    instrumented: Instrument, fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """Closing the stream while a tool runs cancels the call: its execute_tool span ends
    with error.type="cancelled", like the turn's."""
    otel = instrumented()
    started = asyncio.Event()

    @tool
    async def wait(city: str) -> str:
        """Waits."""
        started.set()
        await asyncio.sleep(10)
        return city

    fake_bedrock.responder = agent([ToolUse("wait", {"city": "Paris"})])
    stream = make_conv(tools=[wait]).stream("Wait?")
    events = stream.events()  # held: leaving `async for` must not close the stream yet
    async for event in events:
        if isinstance(event, ToolCallStarted):
            break
    await asyncio.wait_for(started.wait(), 5)
    await stream.aclose()

    (span,) = [s for s in otel.spans() if s.name == "execute_tool wait"]
    assert (span.attributes or {})["error.type"] == "cancelled"
    (turn,) = _by_name(otel)["invoke_agent"]
    assert (turn.attributes or {})["error.type"] == "cancelled"


async def test_the_callers_span_is_the_parent(
    instrumented: Instrument, fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """A turn started inside a service's span (here a SERVER span standing in for an HTTP
    request) is its child, in the same trace, also when consumed by a task created there."""
    otel = instrumented()
    tracer = otel.tracer_provider.get_tracer("service")
    fake_bedrock.enqueue(reply("A."), reply("B."))
    with tracer.start_as_current_span("POST /chat", kind=SpanKind.SERVER) as request:
        await conv.send("first")
        await asyncio.create_task(conv.send("second"))

    parent = request.get_span_context()
    turns = _by_name(otel)["invoke_agent"]
    assert len(turns) == 2
    for turn in turns:
        assert turn.parent is not None and turn.parent.span_id == parent.span_id
        assert turn.context.trace_id == parent.trace_id


async def test_fan_out_turns_keep_the_callers_parent(
    instrumented: Instrument, fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """Each fan-out turn runs in its own task; every one of them is a child of the span that
    was current when fan_out() was called, and the turns are siblings (no turn parents
    another)."""
    otel = instrumented()
    tracer = otel.tracer_provider.get_tracer("service")
    fake_bedrock.enqueue(reply("x", chunks=2, delay=0.01), times=4)
    with tracer.start_as_current_span("batch") as batch:
        await conv.fan_out(["a", "b", "c", "d"], concurrency=4)

    turns = _by_name(otel)["invoke_agent"]
    assert len(turns) == 4
    for turn in turns:
        assert turn.parent is not None
        assert turn.parent.span_id == batch.get_span_context().span_id
    chats = _by_name(otel)[f"chat {MODEL_ID}"]
    turn_ids = {t.context.span_id for t in turns}
    assert {c.parent.span_id for c in chats if c.parent is not None} == turn_ids


async def test_nothing_is_recorded_after_uninstrument(
    instrumented: Instrument, fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """After uninstrument() a turn produces no span and no metric point."""
    otel = instrumented()
    uninstrument()
    fake_bedrock.enqueue(reply("Quiet."))
    await conv.send("Hello")
    assert otel.spans() == []
    assert otel.points("gen_ai.client.operation.duration") == []


# -- conv.usage -----------------------------------------------------------------------------------


def _usage(inp: int, out: int, read: int = 0) -> dict[str, int]:
    return {
        "inputTokens": inp,
        "outputTokens": out,
        "totalTokens": inp + out + read,
        "cacheReadInputTokens": read,
    }


async def test_usage_sums_completed_turns_only(
    fake_bedrock: FakeBedrock, make_conv: MakeConv
) -> None:
    """conv.usage adds each completed turn's usage field by field; a failed turn and a
    cancelled turn add nothing."""
    conv = make_conv(retry=RetryPolicy.none())
    assert conv.usage == Usage()
    fake_bedrock.enqueue(
        reply("one", usage=_usage(10, 2, read=4)),
        reply(fault=Fault.http(403)),
        reply("a b c d e f", chunks=6, delay=0.01, usage=_usage(99, 99)),
        reply("two", usage=_usage(5, 3)),
    )
    await conv.send("first")
    with pytest.raises(AccessDeniedError):
        await conv.send("fails")
    async for _ in conv.stream("cancelled"):
        break
    await conv.send("second")
    assert conv.usage == Usage(
        input_tokens=15,
        output_tokens=5,
        total_tokens=24,
        cache_read_input_tokens=4,
        cache_write_input_tokens=0,
    )


async def test_forks_and_fan_outs_count_their_own_usage(
    fake_bedrock: FakeBedrock, conv: AsyncConversation
) -> None:
    """A fork starts from zero and counts its own turns; fan_out() leaves the parent's total
    alone, and each of its replies carries its own usage."""
    fake_bedrock.enqueue(reply("p", usage=_usage(1, 1)))
    await conv.send("parent")
    fork = conv.fork()
    assert fork.usage == Usage()
    fake_bedrock.enqueue(reply("f", usage=_usage(7, 7)))
    await fork.send("fork")
    assert fork.usage.input_tokens == 7 and conv.usage.input_tokens == 1
    fake_bedrock.enqueue(reply("x", usage=_usage(3, 2)), times=2)
    replies = await conv.fan_out(["a", "b"])
    assert [r.usage.input_tokens for r in replies if isinstance(r, Reply)] == [3, 3]
    assert conv.usage.input_tokens == 1 and conv.usage.output_tokens == 1


# -- examples -------------------------------------------------------------------------------------


def test_observability_example_prints_spans_and_metrics() -> None:
    """examples/observability.py prints both chat spans (the first with its retry event),
    their turn spans, the application span, and the three histograms."""
    from .test_examples import run_example

    out = run_example("observability.py").stdout
    assert out.count(f"span 'chat {MODEL}' [CLIENT") == 2
    assert out.count("span 'invoke_agent' [INTERNAL") == 2
    assert "event aiostream_chat.retry: error.type=ThrottlingError" in out
    assert "span 'handle_request'" in out
    assert "usage: 40 in, 16 out" in out
    for metric in (
        "gen_ai.client.token.usage input: count=2",
        "gen_ai.client.token.usage output: count=2",
        "gen_ai.client.operation.duration : count=2",
        "gen_ai.client.operation.time_to_first_chunk : count=2",
    ):
        assert f"metric {metric}" in out


def test_sse_chat_with_tracing_prints_the_turns_spans() -> None:
    """examples/sse_chat/app.py --tracing prints the spans of each turn it relays on stderr
    and still shuts down cleanly on Ctrl-C."""
    import httpx

    from .test_examples import ENV, PYTHON, SERVERS, assert_clean

    cmd = [*PYTHON, str(SERVERS["sse_chat"]), "--port", "0", "--tracing"]
    proc = subprocess.Popen(
        cmd, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:"), url
        with httpx.Client(base_url=url, timeout=10) as client:
            client.get("/")
            with client.stream("POST", "/chat", json={"prompt": "Hi"}) as response:
                body = "".join(response.iter_text())
        assert "event: done" in body
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert_clean(stderr)
    assert f"span chat {MODEL} [CLIENT] tokens=" in stderr
    assert "span invoke_agent [INTERNAL]" in stderr
