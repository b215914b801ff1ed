"""Checks on what users pass in, run before any I/O (``TypeError`` / ``ValueError``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from ._models import (
    BLOCK_TYPES,
    ContentBlock,
    Message,
    ReasoningBlock,
    TextBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)

__all__ = [
    "Prompt",
    "check_client",
    "check_history",
    "check_json",
    "check_next",
    "check_tools",
    "check_type",
    "user_message",
]

_BLOCK_TYPES = BLOCK_TYPES
_JSON_LEAVES = (str, int, float, bool, bytes, bytearray, type(None))
Prompt = str | Message | Sequence[ContentBlock]


def _kind(value: Any) -> str:
    """How an error message names a value that was passed: by its type."""
    return type(value).__name__


def check_type(name: str, value: Any, cls: type | tuple[type, ...]) -> None:
    if value is not None and not isinstance(value, cls):
        expected = cls.__name__ if isinstance(cls, type) else " or ".join(c.__name__ for c in cls)
        raise TypeError(f"{name} must be {expected} or None, not {_kind(value)}")


def check_client(client: Any) -> None:
    """A client must look like an open aiobotocore bedrock-runtime client."""
    if client is None:
        return
    if not (hasattr(client, "converse_stream") and hasattr(client, "meta")):
        raise TypeError(
            "client must be an open aiobotocore bedrock-runtime client "
            f"(with converse_stream and meta), not {_kind(client)}"
        )


def check_json(value: Any, where: str) -> None:
    """Raise TypeError if ``value`` holds something that cannot be sent to Bedrock as JSON."""
    if isinstance(value, _JSON_LEAVES):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a {_kind(key)} key {key!r}; JSON keys are strings")
            check_json(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            check_json(item, where)
    else:
        raise TypeError(f"{where} holds a {_kind(value)}, which cannot be sent to Bedrock as JSON")


def _check_user_blocks(message: Message, where: str) -> None:
    for block in message.content:
        if isinstance(block, ToolUseBlock | ReasoningBlock):
            raise ValueError(f"{where} holds a {_kind(block)}; only the assistant sends those")
        if isinstance(block, TextBlock) and not block.text.strip():
            raise ValueError(f"{where} contains an empty text block")


def user_message(prompt: Any) -> Message:
    """Validate a prompt and turn it into the user message it stands for."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("prompt is empty")
        return Message.user(prompt)
    if isinstance(prompt, Message):
        if prompt.role != "user":
            raise ValueError(f"a prompt message must have role 'user', not {prompt.role!r}")
        message = prompt
    elif isinstance(prompt, Sequence) and not isinstance(prompt, bytes | bytearray):
        for block in prompt:
            if not isinstance(block, _BLOCK_TYPES):
                raise TypeError(
                    f"prompt blocks must be content blocks (TextBlock, ToolResultBlock, ...), "
                    f"not {_kind(block)}"
                )
        message = Message(role="user", content=tuple(prompt))
    else:
        raise TypeError(
            f"prompt must be a str, a Message or a sequence of content blocks, not {_kind(prompt)}"
        )
    if not message.content:
        raise ValueError("prompt has no content blocks")
    _check_user_blocks(message, "prompt")
    check_json(message.to_bedrock()["content"], "prompt")
    return message


def check_next(history: Sequence[Message], message: Message, where: str = "prompt") -> None:
    """Raise ValueError unless ``message`` can follow ``history`` in a Converse request."""
    previous = history[-1] if history else None
    if message.role == "assistant":
        if previous is None:
            raise ValueError("history must start with a user message, not an assistant message")
        if previous.role == "assistant":
            raise ValueError(f"{where}: history must alternate user and assistant messages")
        return
    if previous is not None and previous.role == "user":
        raise ValueError(
            f"{where}: history must alternate user and assistant messages, and the history "
            "before it ends with a user message"
        )
    tool_uses = (
        {b.tool_use_id for b in previous.content if isinstance(b, ToolUseBlock)}
        if previous is not None
        else set()
    )
    for block in message.content:
        if isinstance(block, ToolResultBlock) and block.tool_use_id not in tool_uses:
            raise ValueError(
                f"{where} has a tool result for {block.tool_use_id!r}, which matches no tool use "
                "of the previous assistant message"
            )


def check_history(history: Any) -> tuple[Message, ...]:
    """The history as a tuple of messages that Bedrock will accept, in order."""
    if isinstance(history, str | bytes | BaseModel) or not isinstance(history, Iterable):
        raise TypeError(f"history must be an iterable of Message, not {_kind(history)}")
    messages = tuple(history)
    checked: list[Message] = []
    for number, message in enumerate(messages):
        if not isinstance(message, Message):
            raise TypeError(f"history must hold Message objects, not {_kind(message)}")
        where = f"history message {number}"
        if message.role == "user":
            _check_user_blocks(message, where)
        check_json(message.to_bedrock()["content"], where)
        check_next(checked, message, where)
        checked.append(message)
    return messages


def check_tools(tools: Any) -> tuple[ToolSpec, ...]:
    if isinstance(tools, str | bytes | BaseModel) or not isinstance(tools, Iterable):
        raise TypeError(f"tools must be a sequence of ToolSpec, not {_kind(tools)}")
    checked: tuple[ToolSpec, ...] = tuple(tools)
    for tool in checked:
        if not isinstance(tool, ToolSpec):
            raise TypeError(f"tools must hold ToolSpec objects, not {_kind(tool)}")
        check_json(tool.input_schema, f"the input schema of tool {tool.name!r}")
    return checked
