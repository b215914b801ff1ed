"""Typed stream events: a union discriminated by ``type``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from ._errors import ChatError
from ._models import Frozen, Reply, ToolResultBlock, Usage

__all__ = [
    "CitationDelta",
    "ContentBlockStart",
    "ContentBlockStop",
    "MessageStart",
    "MessageStop",
    "Metadata",
    "OutputDelta",
    "ReasoningDelta",
    "Retrying",
    "StreamEvent",
    "TextDelta",
    "ToolCallFinished",
    "ToolCallStarted",
    "ToolUseDelta",
    "ToolUseStart",
    "TurnCompleted",
    "TurnFailed",
    "UnknownEvent",
]


class MessageStart(Frozen):
    """The model started its message."""

    role: str = "assistant"
    type: Literal["message_start"] = "message_start"


class ToolUseStart(Frozen):
    """The identity of a tool call whose input follows in ``ToolUseDelta`` events."""

    tool_use_id: str
    name: str


class ContentBlockStart(Frozen):
    """A content block started (Bedrock sends this for tool use and newer kinds only)."""

    index: int
    tool_use: ToolUseStart | None = None
    raw: dict[str, Any] = Field(default_factory=dict)
    """The ``start`` object as Bedrock sent it."""
    type: Literal["content_block_start"] = "content_block_start"


class TextDelta(Frozen):
    """A piece of text."""

    index: int
    text: str
    type: Literal["text_delta"] = "text_delta"


_new = object.__new__
_set = object.__setattr__
# One fields-set for every trusted TextDelta: a new set per token is one more GC-tracked object
# per event (pydantic copies the set before changing it, as in model_copy(update=...)).
_TEXT_DELTA_FIELDS = {"index", "text"}


def _trusted_text_delta(index: int, text: str) -> TextDelta:
    # What TextDelta.model_construct() does, minus its generic field loop: ~2x faster than
    # validating, and this runs once per streamed token.
    event = _new(TextDelta)
    _set(event, "__dict__", {"index": index, "text": text, "type": "text_delta"})
    _set(event, "__pydantic_fields_set__", _TEXT_DELTA_FIELDS)
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def _validated_text_delta(index: int, text: str) -> TextDelta:
    return TextDelta(index=index, text=text)


def _pick_text_delta() -> Any:
    """The trusted constructor, unless this pydantic builds models differently."""
    probe = _trusted_text_delta(0, "probe")
    same = probe == TextDelta(index=0, text="probe") and probe.model_dump() == {
        "index": 0,
        "text": "probe",
        "type": "text_delta",
    }
    return _trusted_text_delta if same else _validated_text_delta


text_delta: Callable[[int, str], TextDelta] = _pick_text_delta()
"""Build a ``TextDelta`` from an ``int`` index and a ``str`` (the decoder's hot path)."""


class ToolUseDelta(Frozen):
    """A fragment of a tool call's input JSON (not valid JSON on its own)."""

    index: int
    input_fragment: str
    type: Literal["tool_use_delta"] = "tool_use_delta"


class ReasoningDelta(Frozen):
    """A piece of reasoning text, its signature, or redacted reasoning bytes."""

    index: int
    text: str = ""
    signature: str | None = None
    redacted: bytes | None = None
    type: Literal["reasoning_delta"] = "reasoning_delta"


class CitationDelta(Frozen):
    """A citation attached to the text block at ``index``."""

    index: int
    citation: dict[str, Any]
    type: Literal["citation_delta"] = "citation_delta"


class ContentBlockStop(Frozen):
    """The content block at ``index`` is complete."""

    index: int
    type: Literal["content_block_stop"] = "content_block_stop"


class MessageStop(Frozen):
    """The model finished its message."""

    stop_reason: str
    additional_fields: dict[str, Any] | None = None
    type: Literal["message_stop"] = "message_stop"


class Metadata(Frozen):
    """Usage, latency, tier and the rest of Bedrock's ``metadata`` event, after ``MessageStop``."""

    usage: Usage = Usage()
    server_latency_ms: int | None = None
    trace: dict[str, Any] | None = None
    service_tier: str | None = None
    """The tier that served the request (``serviceTier.type``), when Bedrock says."""
    latency: str | None = None
    """The latency profile that served it (``performanceConfig.latency``), when Bedrock says."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Everything else Bedrock sent in ``metadata``, by its wire name (e.g. ``cacheDetails``)."""
    type: Literal["metadata"] = "metadata"


class UnknownEvent(Frozen):
    """An event or delta kind this version does not know, forwarded as received."""

    name: str
    payload: dict[str, Any]
    type: Literal["unknown"] = "unknown"


class ToolCallStarted(Frozen):
    """The stream started running a tool the model asked for."""

    tool_use_id: str
    name: str
    input: dict[str, Any]
    type: Literal["tool_call_started"] = "tool_call_started"


class ToolCallFinished(Frozen):
    """A tool call ended; ``result`` is what goes back to the model (status "error" on failure)."""

    tool_use_id: str
    name: str
    result: ToolResultBlock
    duration: float
    """Seconds from the start of the call to its result."""
    type: Literal["tool_call_finished"] = "tool_call_finished"


class OutputDelta(Frozen):
    """The structured answer parsed so far from its incomplete JSON (grows as it streams)."""

    partial: dict[str, Any]
    type: Literal["output_delta"] = "output_delta"


class _WithError(Frozen):
    model_config = ConfigDict(arbitrary_types_allowed=True)


class Retrying(_WithError):
    """The attempt failed before any content reached the caller; another follows after ``delay``."""

    attempt: int
    """The number of the attempt that is about to start (2 for the first retry)."""
    delay: float
    error: ChatError
    type: Literal["retrying"] = "retrying"


class TurnCompleted(Frozen):
    """A fan-out turn completed (``fan_out_stream`` only)."""

    reply: Reply
    type: Literal["turn_completed"] = "turn_completed"


class TurnFailed(_WithError):
    """A fan-out turn failed (``fan_out_stream`` only)."""

    error: BaseException
    type: Literal["turn_failed"] = "turn_failed"


StreamEvent = Annotated[
    MessageStart
    | ContentBlockStart
    | TextDelta
    | ToolUseDelta
    | ReasoningDelta
    | CitationDelta
    | ContentBlockStop
    | MessageStop
    | Metadata
    | UnknownEvent
    | ToolCallStarted
    | ToolCallFinished
    | OutputDelta
    | Retrying
    | TurnCompleted
    | TurnFailed,
    Field(discriminator="type"),
]
