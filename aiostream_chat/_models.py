"""Messages, content blocks and the values a turn produces (pydantic, frozen)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "ContentBlock",
    "InferenceConfig",
    "Message",
    "Metrics",
    "RawBlock",
    "ReasoningBlock",
    "Reply",
    "TextBlock",
    "ToolResultBlock",
    "ToolSpec",
    "ToolUseBlock",
    "Usage",
]


class Frozen(BaseModel):
    """Base of every value: immutable, bytes as base64 in JSON, positional fields allowed."""

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    def __init__(self, *args: Any, **data: Any) -> None:
        if args:
            names = [n for n in type(self).model_fields if n != "type"]
            if len(args) > len(names):
                raise TypeError(
                    f"{type(self).__name__} takes at most {len(names)} positional fields"
                )
            for name, value in zip(names, args, strict=False):
                if name in data:
                    raise TypeError(f"{type(self).__name__} got two values for {name!r}")
                data[name] = value
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise plain_error(type(self).__name__, exc) from None


# Pydantic error types that mean "a value of the right type, out of range".
_RANGE_ERRORS = ("greater_than", "less_than", "too_short", "too_long", "literal_error")
_SHOULD = re.compile(r"^\w+ should")  # "Input should be ..." -> "must be ..."


def plain_error(model: str, exc: ValidationError) -> ValueError | TypeError:
    """One plain sentence for the first problem pydantic found (no error URL)."""
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"])
    where = f"{model}.{field}" if field else model
    kind, message = error["type"], error["msg"]
    if kind == "missing":
        return TypeError(f"{where} is required")
    if kind == "value_error":
        return ValueError(f"{where}: {message.removeprefix('Value error, ')}")
    given = repr(error["input"])
    given = given if len(given) <= 40 else given[:37] + "..."
    sentence = f"{where} {_SHOULD.sub('must', message)}, not {given}"
    if any(part in kind for part in _RANGE_ERRORS):
        return ValueError(sentence)
    return TypeError(sentence)


class TextBlock(Frozen):
    """Plain text."""

    text: str
    citations: tuple[dict[str, Any], ...] = ()
    """Citations the model attached to this text, as Bedrock sent them."""
    type: Literal["text"] = "text"

    def to_bedrock(self) -> dict[str, Any]:
        return {"text": self.text}


class ToolUseBlock(Frozen):
    """A request by the model to call a tool."""

    tool_use_id: str
    name: str
    input: dict[str, Any]
    type: Literal["tool_use"] = "tool_use"

    def to_bedrock(self) -> dict[str, Any]:
        return {"toolUse": {"toolUseId": self.tool_use_id, "name": self.name, "input": self.input}}


class ToolResultBlock(Frozen):
    """The result of a tool call, sent back to the model in a user message."""

    tool_use_id: str
    content: tuple[dict[str, Any], ...]
    """Bedrock tool-result content entries; a plain str becomes ``{"text": ...}``."""
    status: Literal["success", "error"] | None = None
    type: Literal["tool_result"] = "tool_result"

    @field_validator("content", mode="before")
    @classmethod
    def _wrap_content(cls, value: Any) -> Any:
        if isinstance(value, str):
            return ({"text": value},)
        if isinstance(value, Sequence) and not isinstance(value, bytes):
            return tuple({"text": v} if isinstance(v, str) else v for v in value)
        return value

    def to_bedrock(self) -> dict[str, Any]:
        body: dict[str, Any] = {"toolUseId": self.tool_use_id, "content": list(self.content)}
        if self.status is not None:
            body["status"] = self.status
        return {"toolResult": body}


class ReasoningBlock(Frozen):
    """The model's reasoning: text with its signature, or redacted bytes."""

    text: str = ""
    signature: str | None = None
    redacted: bytes | None = None
    type: Literal["reasoning"] = "reasoning"

    def to_bedrock(self) -> dict[str, Any]:
        if self.redacted is not None:
            return {"reasoningContent": {"redactedContent": self.redacted}}
        body: dict[str, Any] = {"text": self.text}
        if self.signature is not None:
            body["signature"] = self.signature
        return {"reasoningContent": {"reasoningText": body}}


class RawBlock(Frozen):
    """Any other Converse content block (image, document, server tool result...), verbatim."""

    data: dict[str, Any]
    type: Literal["raw"] = "raw"

    def to_bedrock(self) -> dict[str, Any]:
        return dict(self.data)


ContentBlock = Annotated[
    TextBlock | ToolUseBlock | ToolResultBlock | ReasoningBlock | RawBlock,
    Field(discriminator="type"),
]


def block_from_bedrock(data: dict[str, Any]) -> ContentBlock:
    """Build a content block from its Bedrock dict; unknown kinds become a RawBlock."""
    if len(data) == 1:
        ((kind, body),) = data.items()
        if kind == "text" and isinstance(body, str):
            return TextBlock(text=body)
        if kind == "toolUse" and {"toolUseId", "name"} <= body.keys():
            return ToolUseBlock(
                tool_use_id=body["toolUseId"], name=body["name"], input=body.get("input") or {}
            )
        if kind == "toolResult" and body.keys() <= {"toolUseId", "content", "status"}:
            return ToolResultBlock(
                tool_use_id=body["toolUseId"],
                content=tuple(body.get("content", ())),
                status=body.get("status"),
            )
        if kind == "reasoningContent":
            if "redactedContent" in body:
                return ReasoningBlock(redacted=body["redactedContent"])
            text = body.get("reasoningText", {})
            return ReasoningBlock(text=text.get("text", ""), signature=text.get("signature"))
    return RawBlock(data=data)


class Message(Frozen):
    """One message of a conversation."""

    role: Literal["user", "assistant"]
    content: tuple[ContentBlock, ...]

    @classmethod
    def user(cls, text: str) -> Message:
        return cls(role="user", content=(TextBlock(text=text),))

    @classmethod
    def assistant(cls, text: str) -> Message:
        return cls(role="assistant", content=(TextBlock(text=text),))

    @property
    def text(self) -> str:
        """The text of every text block, concatenated."""
        return "".join(b.text for b in self.content if isinstance(b, TextBlock))

    def to_bedrock(self) -> dict[str, Any]:
        return {"role": self.role, "content": [b.to_bedrock() for b in self.content]}

    @classmethod
    def from_bedrock(cls, data: dict[str, Any]) -> Message:
        return cls(role=data["role"], content=tuple(block_from_bedrock(b) for b in data["content"]))


class Usage(Frozen):
    """Token counts Bedrock reported for a turn."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0

    @classmethod
    def from_bedrock(cls, data: dict[str, Any]) -> Usage:
        return cls(
            input_tokens=data.get("inputTokens", 0),
            output_tokens=data.get("outputTokens", 0),
            total_tokens=data.get("totalTokens", 0),
            cache_read_input_tokens=data.get("cacheReadInputTokens", 0),
            cache_write_input_tokens=data.get("cacheWriteInputTokens", 0),
        )


class Metrics(Frozen):
    """Timings of a turn."""

    server_latency_ms: int | None = None
    time_to_first_token: float | None = None
    """Seconds from the start of the successful attempt to its first content delta."""
    duration: float = 0.0
    """Seconds for the whole turn, every attempt and backoff included."""
    attempts: int = 1


class Reply(Frozen):
    """The outcome of a completed turn."""

    message: Message
    text: str
    stop_reason: str
    usage: Usage = Usage()
    metrics: Metrics = Metrics()
    tool_uses: tuple[ToolUseBlock, ...] = ()
    reasoning: str = ""
    request_id: str | None = None
    trace: dict[str, Any] | None = None
    messages: tuple[Message, ...] = ()
    """Every message the turn added to the history, the prompt first (tool rounds included)."""
    output: Any = None
    """The structured answer, parsed and validated, when the turn asked for ``output=``."""


class InferenceConfig(Frozen):
    """Sampling settings sent as Bedrock's ``inferenceConfig``."""

    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop_sequences: tuple[str, ...] = ()

    def to_bedrock(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.max_tokens is not None:
            out["maxTokens"] = self.max_tokens
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.top_p is not None:
            out["topP"] = self.top_p
        if self.stop_sequences:
            out["stopSequences"] = list(self.stop_sequences)
        return out


class ToolSpec(Frozen):
    """A tool the model may call."""

    name: str = Field(min_length=1)
    description: str
    input_schema: dict[str, Any]

    def to_bedrock(self) -> dict[str, Any]:
        return {
            "toolSpec": {
                "name": self.name,
                "description": self.description,
                "inputSchema": {"json": self.input_schema},
            }
        }
