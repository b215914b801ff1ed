"""Responders that script a model using tools and giving structured answers.

``agent()`` asks for tools round by round and then answers with the results it received;
``structured()`` answers in the form the request asked for (native JSON text, or a call of the
forced output tool). Set one as ``FakeBedrock.responder``; both read the real request body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._script import Fault, Script, ToolUse, reply

if TYPE_CHECKING:
    from ._server import ReceivedRequest

__all__ = ["agent", "example_value", "schema_answer", "structured", "tool_results", "tool_rounds"]

Responder = Callable[["ReceivedRequest"], Script]


def _blocks(message: Any) -> list[dict[str, Any]]:
    content = message.get("content", []) if isinstance(message, dict) else []
    return [b for b in content if isinstance(b, dict)]


def tool_rounds(request: ReceivedRequest) -> int:
    """How many tool-result messages follow the request's last plain user prompt."""
    count = 0
    for message in reversed(request.body.get("messages", [])):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        if not any("toolResult" in b for b in _blocks(message)):
            break
        count += 1
    return count


def tool_results(request: ReceivedRequest) -> list[dict[str, Any]]:
    """The ``toolResult`` bodies of the request's last user message."""
    messages = request.body.get("messages", [])
    if not messages:
        return []
    return [b["toolResult"] for b in _blocks(messages[-1]) if "toolResult" in b]


def _result_text(result: Mapping[str, Any]) -> str:
    parts = []
    for item in result.get("content", []):
        if "text" in item:
            parts.append(str(item["text"]))
        elif "json" in item:
            parts.append(json.dumps(item["json"], sort_keys=True))
    return " ".join(parts)


def _default_answer(results: list[dict[str, Any]]) -> str:
    if not results:
        return "I have no tool results."
    return "Based on the tools: " + "; ".join(_result_text(r) for r in results) + "."


def agent(
    *rounds: Sequence[ToolUse],
    answer: str | Callable[[list[dict[str, Any]]], str] | None = None,
    faults: Mapping[int, Sequence[Fault]] | None = None,
    say: str = "",
    **reply_options: Any,
) -> Responder:
    """A model that calls ``rounds[0]``'s tools, then ``rounds[1]``'s..., then answers.

    ``answer`` is the final text, or a function of the last tool results (default: a
    sentence quoting them); ``say`` is text sent before each round's tool calls.
    ``faults[k]`` are injected, one per request, into the requests for round ``k``
    (0 = the first call) until used up, e.g. to fail the second round.
    """
    pending = {k: list(v) for k, v in (faults or {}).items()}

    def respond(request: ReceivedRequest) -> Script:
        k = tool_rounds(request)
        queue = pending.get(k)
        fault = queue.pop(0) if queue else None
        if k < len(rounds):
            return reply(say, tool_uses=list(rounds[k]), fault=fault, **reply_options)
        results = tool_results(request)
        text = answer(results) if callable(answer) else answer or _default_answer(results)
        return reply(text, fault=fault, **reply_options)

    return respond


def _wants(request: ReceivedRequest) -> str:
    body = request.body
    if "outputConfig" in body:
        return "native"
    config = body.get("toolConfig") or {}
    names = [t.get("toolSpec", {}).get("name") for t in config.get("tools", [])]
    return "tool" if "final_result" in names else "text"


def structured(
    *answers: Any, chunks: int = 4, fault: Fault | None = None, **reply_options: Any
) -> Responder:
    """A model that answers with ``answers[0]``, then ``answers[1]`` (repairs)... as asked.

    Each answer is a JSON value, or a ``str`` sent as it is (to script invalid JSON). It
    goes out as the message text when the request has ``outputConfig``, else as the input of
    the forced ``final_result`` tool. ``fault`` is injected into the first request only.
    """
    if not answers:
        raise ValueError("structured() needs at least one answer")
    served = [0]

    def respond(request: ReceivedRequest) -> Script:
        index = min(served[0], len(answers) - 1)
        once = fault if served[0] == 0 else None
        served[0] += 1
        value = answers[index]
        raw = value if isinstance(value, str) else json.dumps(value)
        if _wants(request) == "tool":
            data = value if isinstance(value, dict) else {"value": value}
            call = ToolUse("final_result", data, chunks=chunks)
            return reply("", tool_uses=[call], fault=once, **reply_options)
        return reply(raw, chunks=chunks, fault=once, **reply_options)

    return respond


def example_value(schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None) -> Any:
    """A value that satisfies a (pydantic-style) JSON schema: the emulator's default answer."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return example_value(defs[str(schema["$ref"]).rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [s for s in schema.get(key, []) if s.get("type") != "null"]
        if options:
            return example_value(options[0], defs)
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: example_value(sub, defs) for name, sub in props.items()}
    if kind == "array":
        return [example_value(schema.get("items", {}), defs)] * max(1, schema.get("minItems", 1))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return (int(low) + 1) if kind == "integer" else float(low) + 1.0
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "example"


def schema_answer(request: ReceivedRequest, *, delay: float = 0.0) -> Script | None:
    """The default answer to a request that asks for structured output, else None."""
    body = request.body
    if "outputConfig" in body:
        try:
            fmt = body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
            schema = json.loads(fmt["schema"])
        except (KeyError, TypeError, ValueError):
            return None
        return reply(json.dumps(example_value(schema)), chunks=4, delay=delay)
    for spec in (body.get("toolConfig") or {}).get("tools", []):
        tool = spec.get("toolSpec", {}) if isinstance(spec, dict) else {}
        if tool.get("name") == "final_result":
            value = example_value(tool.get("inputSchema", {}).get("json", {}))
            return reply("", tool_uses=[ToolUse("final_result", value)], delay=delay)
    return None
