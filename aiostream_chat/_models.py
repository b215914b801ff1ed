"""Messages, content blocks and the values a turn produces (pydantic, frozen)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from ._blocks import (
    CachePoint,
    DocumentBlock,
    Frozen,
    GuardContent,
    ImageBlock,
    JsonDict,
    S3Location,
    VideoBlock,
    media_from_bedrock,
    untag_bytes,
)

__all__ = [
    "BLOCK_TYPES",
    "CachePoint",
    "ContentBlock",
    "DocumentBlock",
    "Frozen",
    "GuardContent",
    "ImageBlock",
    "InferenceConfig",
    "Message",
    "Metrics",
    "RawBlock",
    "ReasoningBlock",
    "Reply",
    "S3Location",
    "TextBlock",
    "ToolResultBlock",
    "ToolSpec",
    "ToolUseBlock",
    "Usage",
    "VideoBlock",
]


class TextBlock(Frozen):
    """Plain text."""

    text: str
    citations: tuple[JsonDict, ...] = ()
    """Citations the model attached to this text, as Bedrock sent them."""
    type: Literal["text"] = "text"

    def to_bedrock(self) -> dict[str, Any]:
        if self.citations:
            # Bedrock takes cited text back only as a citationsContent block.
            return {
                "citationsContent": {
                    "content": [{"text": self.text}],
                    "citations": [dict(c) for c in self.citations],
                }
            }
        return {"text": self.text}


class ToolUseBlock(Frozen):
    """A request by the model to call a tool."""

    tool_use_id: str
    name: str
    input: dict[str, Any]
    type: Literal["tool_use"] = "tool_use"

    def to_bedrock(self) -> dict[str, Any]:
        return {"toolUse": {"toolUseId": self.tool_use_id, "name": self.name, "input": self.input}}


_TypedEntry = Annotated[
    TextBlock | ImageBlock | DocumentBlock | VideoBlock, Field(discriminator="type")
]
# Typed blocks first: a dict without a block's ``type`` tag is a Bedrock entry, kept verbatim.
ToolResultContent = Annotated[_TypedEntry | JsonDict, Field(union_mode="left_to_right")]
_ENTRY_KINDS = frozenset({"text", "json", "image", "document", "video", "searchResult"})


def _tool_result_entry(value: Any) -> Any:
    """Normalise one tool-result entry: str -> text entry, known media -> typed block,
    a Bedrock entry dict kept as it is, any other dict -> a ``json`` entry."""
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, dict):
        if "type" in value and value.get("type") in ("text", "image", "document", "video"):
            return value  # a typed block as pydantic dumped it
        value = untag_bytes(value)
        if len(value) == 1 and next(iter(value)) in _ENTRY_KINDS:
            ((kind, body),) = value.items()
            typed = media_from_bedrock(kind, body)
            return typed if typed is not None else value
        return {"json": value}
    return value


class ToolResultBlock(Frozen):
    """The result of a tool call, sent back to the model in a user message."""

    tool_use_id: str
    content: tuple[ToolResultContent, ...]
    """Entries: a str (sent as text), TextBlock, ImageBlock, DocumentBlock, VideoBlock, a JSON
    object (sent as a ``json`` entry), or a Bedrock entry dict such as ``{"text": ...}``."""
    status: Literal["success", "error"] | None = None
    type: Literal["tool_result"] = "tool_result"

    @field_validator("content", mode="before")
    @classmethod
    def _wrap_content(cls, value: Any) -> Any:
        if isinstance(value, str | dict | Frozen):
            value = (value,)
        if isinstance(value, Sequence) and not isinstance(value, bytes):
            return tuple(_tool_result_entry(v) for v in value)
        return value

    def to_bedrock(self) -> dict[str, Any]:
        entries = [dict(c) if isinstance(c, dict) else c.to_bedrock() for c in self.content]
        body: dict[str, Any] = {"toolUseId": self.tool_use_id, "content": entries}
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

    data: JsonDict
    type: Literal["raw"] = "raw"

    def to_bedrock(self) -> dict[str, Any]:
        return dict(self.data)


ContentBlock = Annotated[
    TextBlock
    | ToolUseBlock
    | ToolResultBlock
    | ReasoningBlock
    | ImageBlock
    | DocumentBlock
    | VideoBlock
    | CachePoint
    | GuardContent
    | RawBlock,
    Field(discriminator="type"),
]


BLOCK_TYPES = (
    TextBlock,
    ToolUseBlock,
    ToolResultBlock,
    ReasoningBlock,
    ImageBlock,
    DocumentBlock,
    VideoBlock,
    CachePoint,
    GuardContent,
    RawBlock,
)
"""Every content block class (for isinstance checks)."""


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
        if kind == "citationsContent":
            cited = _cited_text(body)
            if cited is not None:
                return cited
        typed = media_from_bedrock(kind, body)
        if typed is not None:
            return typed  # type: ignore[return-value]  # always one of the ContentBlock kinds
    return RawBlock(data=data)


def _cited_text(body: Any) -> TextBlock | None:
    """A citationsContent block whose content is text only, as a TextBlock with citations."""
    if not isinstance(body, dict) or body.keys() != {"content", "citations"}:
        return None
    parts = body["content"]
    if not all(isinstance(p, dict) and p.keys() == {"text"} for p in parts):
        return None
    return TextBlock(text="".join(p["text"] for p in parts), citations=tuple(body["citations"]))


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

    def __add__(self, other: Usage) -> Usage:
        """The field-by-field sum (a turn's rounds, a conversation's turns)."""
        fields = type(self).model_fields
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in fields})


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
    service_tier: str | None = None
    """The service tier Bedrock reported in ``metadata`` (see ``Metadata.service_tier``)."""
    latency: str | None = None
    """The latency profile Bedrock reported in ``metadata`` (see ``Metadata.latency``)."""
    metadata_extra: dict[str, Any] = Field(default_factory=dict)
    """The rest of Bedrock's ``metadata`` (see ``Metadata.extra``), e.g. ``cacheDetails``."""


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
