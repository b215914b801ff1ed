"""The bytes and JSON FakeBedrock sends: padded event frames, error frames, Converse answers."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from .._codec import EventStreamDecoder, encode_frame
from .._errors import StreamDecodeError

__all__ = [
    "Event",
    "converse_output",
    "decode_events",
    "error_frame",
    "error_type",
    "event_frame",
    "event_name",
    "exception_frame",
]

Event = tuple[str, dict[str, Any]]

_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def error_type(code: str) -> str:
    """The x-amzn-ErrorType header value botocore reads the error code from."""
    return f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"


def _padded_frame(headers: dict[str, str], payload: dict[str, Any], rng: random.Random) -> bytes:
    padded = {**payload, "p": _PADDING[: rng.randint(1, 60)]}
    body = json.dumps(padded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return encode_frame(dict(headers), body.encode())


def event_frame(name: str, payload: dict[str, Any], rng: random.Random) -> bytes:
    """An event frame as Bedrock sends it, its JSON payload padded with a random "p"."""
    headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
    return _padded_frame(headers, payload, rng)


def exception_frame(name: str, message: str, rng: random.Random) -> bytes:
    """A `:message-type: exception` frame such as throttlingException."""
    payload: dict[str, Any] = {"message": message}
    if name == "modelStreamErrorException":
        payload |= {"originalStatusCode": 500, "originalMessage": message}
    headers = {":message-type": "exception", ":exception-type": name}
    return _padded_frame({**headers, ":content-type": "application/json"}, payload, rng)


def error_frame(code: str, message: str) -> bytes:
    """A `:message-type: error` frame: the code and message travel in headers."""
    headers = {":message-type": "error", ":error-code": code, ":error-message": message}
    return encode_frame(dict(headers))


def event_name(part: bytes) -> str:
    """The :event-type of an encoded frame ("" if it has none or is cut short)."""
    try:
        frames = EventStreamDecoder().feed(part)
    except StreamDecodeError:
        return ""
    return str(frames[0].headers.get(":event-type", "")) if frames else ""


def decode_events(parts: tuple[bytes, ...]) -> list[Event]:
    """The (event type, payload) pairs of an encoded event-stream body."""
    frames = EventStreamDecoder().feed(b"".join(parts))
    return [(str(f.headers.get(":event-type", "")), json.loads(f.payload or b"{}")) for f in frames]


def converse_output(events: Sequence[Event]) -> dict[str, Any]:
    """The non-streaming Converse answer carrying the same message as these stream events."""
    blocks: dict[int, dict[str, Any]] = {}
    answer: dict[str, Any] = {"stopReason": "end_turn", "usage": {}, "metrics": {}}
    for name, payload in events:
        index = payload.get("contentBlockIndex", 0)
        match name, payload:
            case "contentBlockStart", {"start": {"toolUse": tool}}:
                start = {"toolUseId": tool.get("toolUseId"), "name": tool.get("name")}
                blocks[index] = {"toolUse": {**start, "input": ""}}
            case "contentBlockDelta", {"delta": {"text": str(text)}}:
                block = blocks.setdefault(index, {"text": ""})
                block["text"] = block.get("text", "") + text
            case "contentBlockDelta", {"delta": {"toolUse": {"input": str(part)}}}:
                if "toolUse" in blocks.get(index, {}):
                    blocks[index]["toolUse"]["input"] += part
            case "contentBlockDelta", {"delta": {"reasoningContent": dict(delta)}}:
                reasoning = blocks.setdefault(index, {"reasoningContent": {}})
                _add_reasoning(reasoning.setdefault("reasoningContent", {}), delta)
            case "messageStop", _:
                answer["stopReason"] = payload.get("stopReason", "end_turn")
            case "metadata", _:
                answer |= {k: v for k, v in payload.items() if k in ("usage", "metrics", "trace")}
    for block in blocks.values():
        if "toolUse" in block:
            block["toolUse"]["input"] = _parse_json(block["toolUse"]["input"])
    content = [blocks[i] for i in sorted(blocks)]
    answer["output"] = {"message": {"role": "assistant", "content": content}}
    return answer


def _add_reasoning(block: dict[str, Any], delta: dict[str, Any]) -> None:
    if "redactedContent" in delta:
        block["redactedContent"] = delta["redactedContent"]
        return
    text = block.setdefault("reasoningText", {"text": ""})
    text["text"] += delta.get("text", "")
    if "signature" in delta:
        text["signature"] = delta["signature"]


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}
