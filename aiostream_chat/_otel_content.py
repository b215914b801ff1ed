"""Converse request and reply content in the GenAI conventions' JSON message shapes.

Used only when content capture is on. Raw bytes (images, documents, video) never go into
telemetry: a part records the kind of block, not its data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import Reply, ToolResultBlock

__all__ = [
    "finish_reason",
    "input_messages",
    "output_messages",
    "system_instructions",
    "tool_arguments",
    "tool_result",
    "tools",
]

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "tool_use": "tool_call",
}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_opaque)


def _opaque(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return f"<{type(value).__name__}>"


def tool_arguments(arguments: dict[str, Any]) -> str:
    """``gen_ai.tool.call.arguments``: the call's input as JSON."""
    return _dumps(arguments)


def tool_result(result: ToolResultBlock) -> str:
    """``gen_ai.tool.call.result``: what goes back to the model, as JSON (media as its kind)."""
    return _dumps(_result(result.to_bedrock()["toolResult"]["content"]))


def finish_reason(stop_reason: str) -> str:
    """The conventions' finish reason for a Bedrock stop reason (unknown ones pass through)."""
    return _FINISH.get(stop_reason, stop_reason)


def _result(content: Iterable[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for item in content:
        if "text" in item:
            out.append(item["text"])
        elif "json" in item:
            out.append(item["json"])
        else:
            out.append({"type": next(iter(item), "unknown")})
    return out


def _part(block: dict[str, Any]) -> dict[str, Any]:
    if "text" in block:
        return {"type": "text", "content": block["text"]}
    if "toolUse" in block:
        use = block["toolUse"]
        return {
            "type": "tool_call",
            "id": use.get("toolUseId"),
            "name": use.get("name"),
            "arguments": use.get("input"),
        }
    if "toolResult" in block:
        result = block["toolResult"]
        return {
            "type": "tool_call_response",
            "id": result.get("toolUseId"),
            "response": _result(result.get("content", ())),
        }
    if "reasoningContent" in block:
        text = block["reasoningContent"].get("reasoningText", {}).get("text", "")
        return {"type": "reasoning", "content": text}
    return {"type": next(iter(block), "unknown")}


def _message(message: dict[str, Any]) -> dict[str, Any]:
    blocks = message.get("content", ())
    parts = [_part(b) for b in blocks]
    role = message.get("role", "user")
    if parts and all(p["type"] == "tool_call_response" for p in parts):
        role = "tool"
    return {"role": role, "parts": parts}


def input_messages(body: dict[str, Any]) -> str:
    """``gen_ai.input.messages``: the chat history sent to the model, in order."""
    return _dumps([_message(m) for m in body.get("messages", ())])


def system_instructions(body: dict[str, Any]) -> str | None:
    """``gen_ai.system_instructions``: the system prompt's text blocks, if any."""
    parts = [{"type": "text", "content": b["text"]} for b in body.get("system", ()) if "text" in b]
    return _dumps(parts) if parts else None


def tools(body: dict[str, Any]) -> str | None:
    """``gen_ai.tool.definitions``: the request's tools as function definitions, if any."""
    specs = [t["toolSpec"] for t in body.get("toolConfig", {}).get("tools", ()) if "toolSpec" in t]
    if not specs:
        return None
    return _dumps(
        [
            {
                "type": "function",
                "name": spec.get("name"),
                "description": spec.get("description"),
                "parameters": spec.get("inputSchema", {}).get("json"),
            }
            for spec in specs
        ]
    )


def output_messages(reply: Reply) -> str:
    """``gen_ai.output.messages``: the assistant message of one model call."""
    message = _message(reply.message.to_bedrock())
    message["finish_reason"] = finish_reason(reply.stop_reason)
    return _dumps([message])
