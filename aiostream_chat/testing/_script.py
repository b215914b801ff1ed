"""Scripts: what FakeBedrock answers to one request, built by reply(), replay(), raw_events()."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import random
import re
import zlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._codec import split_frames
from ._recordings import load_recording
from ._wire import Event, error_frame, error_type, event_frame, event_name, exception_frame

__all__ = [
    "Chunk",
    "Fault",
    "Script",
    "ToolUse",
    "default_reply",
    "error_code",
    "play",
    "raw_events",
    "replay",
    "reply",
    "status_of",
]

FaultKind = Literal[
    "http", "exception", "error", "stall", "eof", "half_frame", "reset", "corrupt_crc"
]

DEFAULT_TEXT = "Hello from FakeBedrock."
EVENT_STREAM = "application/vnd.amazon.eventstream"

# status -> (modeled error code, the message Bedrock sends with it)
HTTP_ERRORS: dict[int, tuple[str, str]] = {
    400: ("ValidationException", "The provided request is not valid."),
    403: (
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    ),
    404: ("ResourceNotFoundException", "The requested resource could not be found."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    424: ("ModelErrorException", "The model returned an error while processing the request."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The system encountered an unexpected error."),
    503: (
        "ServiceUnavailableException",
        "The service is temporarily unable to handle the request.",
    ),
}
_STATUS_OF_CODE = {code.lower(): status for status, (code, _) in HTTP_ERRORS.items()}
_STATUS_OF_CODE["modelstreamerrorexception"] = 424
_STATUS_OF_CODE["modelnotreadyexception"] = 429
_STATUS_OF_CODE["servicequotaexceededexception"] = 400

_tool_ids = itertools.count(1)


def error_code(status: int) -> str:
    """The modeled Bedrock error code for an HTTP status (the status itself if unmodeled)."""
    return HTTP_ERRORS[status][0] if status in HTTP_ERRORS else str(status)


def status_of(code: str) -> int:
    """The HTTP status Bedrock uses for an error code, in either case style."""
    return _STATUS_OF_CODE.get(code.lower(), 500)


def _default_message(code: str) -> str:
    status = _STATUS_OF_CODE.get(code.lower())
    if status is not None and HTTP_ERRORS[status][0].lower() == code.lower():
        return HTTP_ERRORS[status][1]
    return f"{code} scripted by FakeBedrock."


@dataclass(frozen=True)
class ToolUse:
    """A tool call the scripted model makes; its input JSON streams in `chunks` pieces."""

    name: str
    input: dict[str, Any]
    tool_use_id: str | None = None
    chunks: int = 3


@dataclass(frozen=True)
class Fault:
    """A failure injected into a reply, after `after` contentBlockDelta frames."""

    kind: FaultKind
    after: int = 0
    status: int = 500
    code: str = ""
    message: str = ""
    seconds: float = 0.0

    @classmethod
    def http(cls, status: int, code: str | None = None, message: str = "") -> Fault:
        """Answer with an HTTP error status and Bedrock's error headers instead of a stream."""
        code = code or error_code(status)
        return cls("http", status=status, code=code, message=message or _default_message(code))

    @classmethod
    def exception(cls, name: str, message: str = "", after: int = 0) -> Fault:
        """Send an exception frame such as `throttlingException`, then end the body."""
        msg = message or _default_message(name)
        return cls("exception", after=after, status=status_of(name), code=name, message=msg)

    @classmethod
    def error(cls, code: str, message: str = "", after: int = 0) -> Fault:
        """Send a `:message-type: error` frame with :error-code/:error-message, then end."""
        msg = message or _default_message(code)
        return cls("error", after=after, status=status_of(code), code=code, message=msg)

    @classmethod
    def stall(cls, seconds: float, after: int = 0) -> Fault:
        """Pause for `seconds`, then carry on with the reply."""
        return cls("stall", after=after, seconds=seconds)

    @classmethod
    def eof(cls, after: int = 0) -> Fault:
        """End the body cleanly without messageStop."""
        return cls("eof", after=after)

    @classmethod
    def half_frame(cls, after: int = 0) -> Fault:
        """Send the first half of the next frame, then end the body cleanly."""
        return cls("half_frame", after=after)

    @classmethod
    def reset(cls, after: int = 0) -> Fault:
        """Abort the TCP connection (RST)."""
        return cls("reset", after=after)

    @classmethod
    def corrupt_crc(cls, after: int = 0) -> Fault:
        """Send the next frame with a wrong message checksum."""
        return cls("corrupt_crc", after=after)

    def due(self, name: str, deltas: int) -> bool:
        """Whether it fires before this frame: at delta number `after`, else at messageStop."""
        return name == "messageStop" or (name == "contentBlockDelta" and deltas >= self.after)

    def payload(self, frame: bytes, rng: random.Random) -> bytes:
        """What it writes in place of the next frame before ending the body."""
        match self.kind:
            case "exception":
                return exception_frame(self.code, self.message, rng)
            case "error":
                return error_frame(self.code, self.message)
            case "half_frame":
                return frame[: len(frame) // 2]
            case "corrupt_crc":
                bad_crc = (int.from_bytes(frame[-4:], "big") ^ 0xFFFFFFFF).to_bytes(4, "big")
                return frame[:-4] + bad_crc
        return b""


@dataclass(frozen=True)
class Script:
    """What FakeBedrock does for one request; build it with reply(), replay() or raw_events()."""

    events: tuple[Event, ...] = ()
    fault: Fault | None = None
    delay: float = 0.0
    header_delay: float = 0.0
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    # Pre-encoded body parts written as they are (replay); `events` is then unused.
    body: tuple[bytes, ...] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Chunk:
    """One write of a scripted body; a chunk carrying a fault is the body's last."""

    data: bytes
    fault: Fault | None = None


async def play(script: Script, rng: random.Random) -> AsyncGenerator[Chunk, None]:
    """The body of a streamed script, chunk by chunk, paced and with its fault applied.

    FakeBedrock and RespxBedrock both write what this yields; a fault chunk ends the body
    (for a reset its data is empty and the writer aborts the connection instead).
    """
    if script.body is not None:
        frames = [(event_name(part), part) for part in script.body]
    else:
        frames = [(name, event_frame(name, data, rng)) for name, data in script.events]
    fault, deltas = script.fault, 0
    for sent, (name, frame) in enumerate(frames):
        if script.delay and sent:
            await asyncio.sleep(script.delay)
        if fault is not None and fault.due(name, deltas):
            if fault.kind != "stall":
                yield Chunk(fault.payload(frame, rng), fault)
                return
            await asyncio.sleep(fault.seconds)
            fault = None
        yield Chunk(frame)
        deltas += name == "contentBlockDelta"


def split_words(text: str) -> list[str]:
    """Split text into chunks of one or two words, each keeping its leading whitespace."""
    words = re.findall(r"\s*\S+", text)
    tail = text[sum(map(len, words)) :]
    if not words:
        return [text] if text else []
    words[-1] += tail
    chunks: list[str] = []
    i = 0
    while i < len(words):
        take = 2 if len(words[i].strip()) <= 4 and i + 1 < len(words) else 1
        chunks.append("".join(words[i : i + take]))
        i += take
    return chunks


def split_even(text: str, n: int) -> list[str]:
    """Split text into `n` (fewer if text is shorter) roughly equal, non-empty pieces."""
    n = max(1, min(n, len(text)))
    cuts = [round(i * len(text) / n) for i in range(n + 1)]
    return [text[a:b] for a, b in itertools.pairwise(cuts)] if text else [""]


def _text_chunks(text: str, chunks: int | Sequence[str] | None) -> list[str]:
    if chunks is None:
        return split_words(text)
    if isinstance(chunks, int):
        return split_even(text, chunks)
    if isinstance(chunks, str):
        raise TypeError("chunks must be an int or a sequence of strings, not a str")
    pieces = list(chunks)
    if text not in (DEFAULT_TEXT, "".join(pieces)):
        raise ValueError("chunks must join to text")
    return pieces


def _signature(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).digest() * 3
    return base64.b64encode(digest).decode()


def reply(
    text: str = DEFAULT_TEXT,
    *,
    chunks: int | Sequence[str] | None = None,
    delay: float = 0.0,
    header_delay: float = 0.0,
    reasoning: str | None = None,
    signature: str | None = None,
    redacted: bytes | None = None,
    tool_uses: Sequence[ToolUse] = (),
    citations: Sequence[dict[str, Any]] = (),
    stop_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    latency_ms: int = 42,
    trace: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    fault: Fault | None = None,
    empty_deltas: bool = False,
) -> Script:
    """A reply streamed exactly as Bedrock sends it: the events of one assistant message."""
    pieces = _text_chunks(text, chunks)
    text = "".join(pieces)
    events: list[Event] = [("messageStart", {"role": "assistant"})]
    index = 0

    def delta(body: dict[str, Any]) -> None:
        events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": body}))

    def stop() -> None:
        nonlocal index
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
        index += 1

    if reasoning is not None:
        for piece in split_words(reasoning) or [""]:
            delta({"reasoningContent": {"text": piece}})
        delta({"reasoningContent": {"signature": signature or _signature(reasoning)}})
        stop()
    if redacted is not None:
        delta({"reasoningContent": {"redactedContent": base64.b64encode(redacted).decode()}})
        stop()
    if text or not tool_uses:
        if empty_deltas or not pieces:
            delta({"text": ""})
        for piece in pieces:
            delta({"text": piece})
        for citation in citations:
            delta({"citation": citation})
        stop()
    for tool in tool_uses:
        tool_id = tool.tool_use_id or f"tooluse_{next(_tool_ids)}"
        start = {"toolUse": {"toolUseId": tool_id, "name": tool.name}}
        events.append(("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        for piece in split_even(json.dumps(tool.input, separators=(",", ":")), tool.chunks):
            delta({"toolUse": {"input": piece}})
        stop()
    events.append(("messageStop", {"stopReason": stop_reason or _stop_reason(tool_uses)}))
    if usage is None:
        output = len(text) + len(reasoning or "") + sum(len(json.dumps(t.input)) for t in tool_uses)
        usage = {"inputTokens": 20, "outputTokens": max(1, output // 4)}
        usage["totalTokens"] = usage["inputTokens"] + usage["outputTokens"]
    event: dict[str, Any] = {"usage": usage, "metrics": {"latencyMs": latency_ms}}
    if trace is not None:
        event["trace"] = trace
    event.update(metadata or {})  # e.g. serviceTier, performanceConfig, by their wire names
    events.append(("metadata", event))
    return Script(tuple(events), fault=fault, delay=delay, header_delay=header_delay)


def _stop_reason(tool_uses: Sequence[ToolUse]) -> str:
    return "tool_use" if tool_uses else "end_turn"


def raw_events(events: Sequence[tuple[str, dict[str, Any]]], *, delay: float = 0.0) -> Script:
    """Frames with exactly these :event-type names and payloads, e.g. for unknown event kinds."""
    return Script(tuple((name, dict(payload)) for name, payload in events), delay=delay)


_SKIPPED_HEADERS = {"connection", "content-length", "transfer-encoding", "date", "content-type"}


def replay(recording: dict[str, Any] | str | Path, *, delay: float = 0.0) -> Script:
    """A recorded response: status, content type and body bytes exactly as recorded."""
    if not isinstance(recording, dict):
        recording = load_recording(recording)
    status = int(recording["status"])
    recorded = {k.lower(): str(v) for k, v in recording.get("response_headers", {}).items()}
    body = base64.b64decode(recording.get("body_base64", ""))
    headers = [("Content-Type", recorded.get("content-type", "application/json"))]
    headers += [(k, v) for k, v in recorded.items() if k not in _SKIPPED_HEADERS]
    if status >= 300 and "x-amzn-errortype" not in recorded:
        # Recordings drop x-amzn-ErrorType; botocore needs it to name the error.
        headers.append(("x-amzn-ErrorType", error_type(error_code(status))))
    parts = split_frames(body) if status == 200 else [body]
    return Script(status=status, headers=tuple(headers), body=tuple(parts), delay=delay)


def default_reply(prompt: str, *, delay: float = 0.0) -> Script:
    """The default responder's answer: a few sentences that depend only on the prompt."""
    prompt = " ".join(prompt.split())
    topic = prompt.rstrip(".?!") if len(prompt) <= 60 else prompt[:57].rstrip() + "..."
    pick = zlib.crc32(prompt.encode())
    openers = ("That is a good question.", "Here is a short answer.", "Let me think.")
    middles = (
        "The answer depends on a few details you did not mention.",
        "Most people start with the simplest explanation and refine it.",
        "There are several ways to look at it, each with trade-offs.",
    )
    text = " ".join(
        (
            f"You asked about {topic or 'nothing in particular'}.",
            openers[pick % 3],
            middles[pick // 3 % 3],
            "This reply comes from FakeBedrock, not from a real model.",
        )
    )
    inputs, outputs = 8 + len(prompt) // 4, len(text) // 4
    usage = {"inputTokens": inputs, "outputTokens": outputs, "totalTokens": inputs + outputs}
    return reply(text, delay=delay, usage=usage)
