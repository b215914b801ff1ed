"""Observability: the OpenTelemetry spans and metrics of a short conversation, on the console.

Run with:
    pip install 'aiostream-chat[otel]' opentelemetry-sdk
    python examples/observability.py                # the bundled emulator: no AWS account needed
    python examples/observability.py --full         # the SDK's complete JSON for each span
    python examples/observability.py --model us.amazon.nova-micro-v1:0 --region us-east-1

``aiostream_chat.instrument()`` makes every turn an ``invoke_agent`` span with one
``chat {model_id}`` span per model call under it, following the OpenTelemetry GenAI semantic
conventions, and records the ``gen_ai.client.*`` histograms. Here the two turns run inside
an application span (``handle_request``), as they would inside a web framework's request span,
so that span is their parent. On the emulator the first request is throttled once, so the
first chat span carries a retry event.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from _emulator import add_bedrock_arguments, bedrock
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

import aiostream_chat
from aiostream_chat import AsyncConversation, InferenceConfig
from aiostream_chat.testing import Fault, reply

SHOWN = (
    "gen_ai.request.model",
    "gen_ai.response.finish_reasons",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.response.time_to_first_chunk",
    "error.type",
)


def _short(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def one_line(span: ReadableSpan) -> str:
    """A span as one readable line: name, kind, duration, key attributes and events."""
    attrs = span.attributes or {}
    shown = ", ".join(f"{k}={_short(attrs[k])}" for k in SHOWN if k in attrs)
    ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    events = "".join(
        f"\n    event {e.name}: "
        + ", ".join(f"{k}={_short(v)}" for k, v in (e.attributes or {}).items())
        for e in span.events
    )
    return f"span {span.name!r} [{span.kind.name}, {ms:.0f} ms] {shown}{events}\n"


def metric_lines(data: Any) -> str:
    """Each histogram point as one line: metric name, count, sum and attributes."""
    lines: list[str] = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attrs = dict(point.attributes or {})
                    label = attrs.get("gen_ai.token.type", attrs.get("error.type", ""))
                    lines.append(
                        f"metric {metric.name} {label}: count={point.count} "
                        f"sum={point.sum:.3f} {metric.unit}\n"
                    )
    return "".join(lines)


async def main(args: argparse.Namespace) -> None:
    spans = ConsoleSpanExporter() if args.full else ConsoleSpanExporter(formatter=one_line)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    # Exported once, at shutdown (a service would export every minute or so).
    exporter = (
        ConsoleMetricExporter() if args.full else ConsoleMetricExporter(formatter=metric_lines)
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    meter_provider = MeterProvider(metric_readers=[reader])
    aiostream_chat.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    tracer = tracer_provider.get_tracer("example-service")
    try:
        async with bedrock(args) as target:
            target.script(
                reply(fault=Fault.http(429)),
                reply("Spans, metrics and logs.", chunks=4),
                reply("Latency to first token and tokens per turn.", chunks=5),
            )
            async with AsyncConversation(
                target.model_id, inference=InferenceConfig(max_tokens=100), **target.connection
            ) as conv:
                with tracer.start_as_current_span("handle_request"):
                    for prompt in prompts():
                        reply_ = await conv.send(prompt)
                        print(f"> {prompt}\n{reply_.text}")
                print(f"usage: {conv.usage.input_tokens} in, {conv.usage.output_tokens} out")
    finally:
        aiostream_chat.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()  # exports the metrics


def prompts() -> Sequence[str]:
    return ("What makes a service observable?", "What should a chat service measure?")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="print the SDK's full JSON")
    add_bedrock_arguments(parser)
    asyncio.run(main(parser.parse_args()))
