"""Shared helpers for the benchmarks: the server process, clients, the raw loop, statistics."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aioboto3
from aiobotocore.config import AioConfig

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"  # never look for credentials off this machine

MODEL = "us.amazon.nova-micro-v1:0"
HERE = Path(__file__).resolve().parent
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
T = TypeVar("T")


def session() -> aioboto3.Session:
    """A session with dummy credentials (loopback only)."""
    return aioboto3.Session(
        aws_access_key_id="AKIDBENCH", aws_secret_access_key="bench", region_name="us-east-1"
    )


def raw_config(pool: int = 10) -> AioConfig:
    """The raw side's client: botocore defaults except the pool and its own retries off."""
    return AioConfig(max_pool_connections=pool, retries={"total_max_attempts": 1})


class Server(str):
    """The emulator's URL, with its process id and the URL of its control app."""

    pid: int
    control: str

    def cpu(self) -> float:
        """CPU seconds the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server(tls: str | None = None) -> Iterator[Server]:
    """Start FakeBedrock in a separate process (on uvloop when installed); yield its URL.

    With ``tls`` (a directory) it serves HTTPS and writes its CA to ``tls/ca.pem``.
    """
    cmd = [sys.executable, str(HERE / "_fake_server.py"), "--port", "0"]
    if tls:
        cmd += ["--tls", tls]
    if HAVE_UVLOOP and os.environ.get("BENCH_SERVER_UVLOOP", "1") == "1":
        cmd.append("--uvloop")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        url = Server(line[0])
        url.pid, url.control = proc.pid, line[1]
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def raw_turn(client: Any, prompt: str) -> tuple[str, int]:
    """The raw aioboto3 loop: text from contentBlockDelta events; returns (text, deltas)."""
    resp = await client.converse_stream(
        modelId=MODEL, messages=[{"role": "user", "content": [{"text": prompt}]}]
    )
    text, deltas = "", 0
    async for event in resp["stream"]:
        if "contentBlockDelta" in event:
            text += event["contentBlockDelta"]["delta"].get("text", "")
            deltas += 1
    return text, deltas


async def bare_turn(http: Any, url: str, prompt: str) -> None:
    """The floor: one ConverseStream over a bare aiohttp session (no botocore, no signing, no
    event parsing), its body read to the end."""
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": prompt}]}]}).encode()
    target = f"{url}/model/{quote(MODEL, safe='')}/converse-stream"
    headers = {"Content-Type": "application/json"}
    async with http.post(target, data=body, headers=headers) as resp:
        assert resp.status == 200, resp.status
        while await resp.content.readany():
            pass


def cpu() -> float:
    return time.process_time()


async def timed(fn: Callable[[], Awaitable[T]]) -> tuple[float, float, T]:
    """(cpu seconds, wall seconds, result) of one awaited call."""
    c0, w0 = time.process_time(), time.perf_counter()
    result = await fn()
    return time.process_time() - c0, time.perf_counter() - w0, result


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    p.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds per side")
    p.add_argument(
        "--instrument",
        action="store_true",
        help="SDK side with aiostream_chat.instrument() (OpenTelemetry SDK, spans discarded)",
    )
    return p


def instrument_if(args: argparse.Namespace) -> None:
    """With --instrument: trace and meter every turn through the OpenTelemetry SDK.

    Spans go through a SimpleSpanProcessor to an exporter that drops them, so the cost
    measured is building and ending spans and recording metric points, not exporting.
    """
    if not args.instrument:
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    import aiostream_chat

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(Discard()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    aiostream_chat.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)


def run(main: Callable[[], Coroutine[Any, Any, None]], use_uvloop: bool) -> None:
    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def report(
    name: str, unit: str, sdk: list[float], raw: list[float], target: str, label: str = "sdk"
) -> float:
    """Print the medians and the ratio SDK / raw; return the ratio."""
    s, r = statistics.median(sdk), statistics.median(raw)
    ratio = s / r
    spread = f"{label} {min(sdk):.4g}..{max(sdk):.4g}, raw {min(raw):.4g}..{max(raw):.4g}"
    print(f"{name}: {label} {s:.4g} {unit}, raw {r:.4g} {unit}, ratio {ratio:.3f} ({target})")
    print(f"  n={len(sdk)}+{len(raw)}; range {spread}")
    return ratio
