"""Checks on what users pass in, run before any I/O (``TypeError`` / ``ValueError``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ._models import (
    BLOCK_TYPES,
    ContentBlock,
    Message,
    TextBlock,
    ToolSpec,
)

__all__ = ["Prompt", "check_tools", "check_type", "user_message"]

_BLOCK_TYPES = BLOCK_TYPES
Prompt = str | Message | Sequence[ContentBlock]


def check_type(name: str, value: Any, cls: type | tuple[type, ...]) -> None:
    if value is not None and not isinstance(value, cls):
        expected = cls.__name__ if isinstance(cls, type) else " or ".join(c.__name__ for c in cls)
        raise TypeError(f"{name} must be {expected} or None, not {type(value).__name__}")


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
                    f"not {type(block).__name__}"
                )
        message = Message(role="user", content=tuple(prompt))
    else:
        raise TypeError(
            f"prompt must be a str, a Message or a sequence of content blocks, "
            f"not {type(prompt).__name__}"
        )
    if not message.content:
        raise ValueError("prompt has no content blocks")
    for block in message.content:
        if isinstance(block, TextBlock) and not block.text.strip():
            raise ValueError("prompt contains an empty text block")
    return message


def check_tools(tools: Any) -> tuple[ToolSpec, ...]:
    if isinstance(tools, str | bytes) or not isinstance(tools, Iterable):
        raise TypeError(f"tools must be a sequence of ToolSpec, not {type(tools).__name__}")
    checked: tuple[ToolSpec, ...] = tuple(tools)
    for tool in checked:
        if not isinstance(tool, ToolSpec):
            raise TypeError(f"tools must hold ToolSpec objects, not {type(tool).__name__}")
    return checked
