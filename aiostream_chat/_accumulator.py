"""The pure reducer: raw Bedrock events in, typed events out, and the reply they add up to.

No I/O here. ``Accumulator.handle(name, payload)`` takes one decoded ConverseStream event
(its ``:event-type`` and JSON payload) and returns the typed event to emit.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from typing import Any

from ._errors import ModelError
from ._events import (
    CitationDelta,
    ContentBlockStart,
    ContentBlockStop,
    MessageStart,
    MessageStop,
    Metadata,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolUseDelta,
    ToolUseStart,
    UnknownEvent,
    text_delta,
)
from ._models import (
    ContentBlock,
    Message,
    Metrics,
    RawBlock,
    ReasoningBlock,
    Reply,
    TextBlock,
    ToolUseBlock,
    Usage,
)

__all__ = ["Accumulator"]


@dataclass(slots=True)
class _Block:
    """What has arrived so far for one content block."""

    text: list[str] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)
    reasoning: bool = False
    signature: str | None = None
    redacted: bytes | None = None
    tool: ToolUseStart | None = None
    tool_input: list[str] = field(default_factory=list)
    tool_value: dict[str, Any] | None = None
    raw: dict[str, Any] | None = None
    """Set for a block kind this version does not know: its start and every delta, merged."""
    unknown: list[dict[str, Any]] = field(default_factory=list)
    """Deltas of kinds this version does not know, in arrival order."""

    def content(self) -> ContentBlock | None:
        if self.raw is not None:
            return RawBlock(data=self.raw)
        if self.unknown and not self.typed():
            return RawBlock(data=self._merged_unknown())
        if self.tool is not None:
            return ToolUseBlock(
                tool_use_id=self.tool.tool_use_id,
                name=self.tool.name,
                input=self.tool_value if self.tool_value is not None else self.parse_input(),
            )
        text = "".join(self.text)
        if self.reasoning:
            return ReasoningBlock(text=text, signature=self.signature, redacted=self.redacted)
        if not text and not self.citations:
            return None  # Bedrock rejects blank text blocks when the history is sent back
        return TextBlock(text=text, citations=tuple(self.citations))

    def typed(self) -> bool:
        """Whether a start or delta of a kind we know (text, reasoning, tool use) arrived."""
        return bool(self.tool or self.reasoning or self.text or self.tool_input or self.citations)

    def _merged_unknown(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for delta in self.unknown:
            _merge_raw(merged, delta)
        return merged

    def parse_input(self) -> dict[str, Any]:
        raw = "".join(self.tool_input)
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ModelError(
                f"tool call {self.tool.name if self.tool else '?'} has invalid input JSON: {raw!r}",
                code="InvalidToolInput",
            ) from exc
        if not isinstance(value, dict):
            raise ModelError(
                f"tool call input is not a JSON object: {raw!r}", code="InvalidToolInput"
            )
        return value


def _merge_raw(target: dict[str, Any], delta: dict[str, Any]) -> None:
    """Fold an unknown delta into its block: lists extend ``content``, strings concatenate."""
    for key, value in delta.items():
        current = target.get(key)
        if isinstance(current, dict):
            if isinstance(value, list):
                current.setdefault("content", []).extend(copy.deepcopy(value))
            elif isinstance(value, dict):
                _merge_raw(current, value)
            else:
                current.setdefault("deltas", []).append(value)
        elif isinstance(current, str) and isinstance(value, str):
            target[key] = current + value
        elif isinstance(current, list) and isinstance(value, list):
            current.extend(copy.deepcopy(value))
        else:
            target[key] = copy.deepcopy(value)


_USAGE_KEYS = frozenset(
    {"inputTokens", "outputTokens", "totalTokens", "cacheReadInputTokens", "cacheWriteInputTokens"}
)
_METADATA_KEYS = frozenset({"usage", "metrics", "trace", "serviceTier", "performanceConfig", "p"})
_LATENCY = frozenset({"latencyMs"})


def _metadata(payload: dict[str, Any]) -> Metadata:
    """The typed metadata event; fields this version does not model go to ``extra``."""
    usage = payload.get("usage") or {}
    metrics = payload.get("metrics") or {}
    tier = payload.get("serviceTier") or {}
    performance = payload.get("performanceConfig") or {}
    extra: dict[str, Any] = {}
    modelled = payload.keys() <= _METADATA_KEYS and usage.keys() <= _USAGE_KEYS
    if not (modelled and metrics.keys() <= _LATENCY):  # usually all of it is modelled
        extra.update((k, v) for k, v in usage.items() if k not in _USAGE_KEYS)
        extra.update((k, v) for k, v in payload.items() if k not in _METADATA_KEYS)
        extra.update((k, v) for k, v in metrics.items() if k != "latencyMs")
    return Metadata(
        usage=Usage.from_bedrock(usage),
        server_latency_ms=metrics.get("latencyMs"),
        trace=payload.get("trace"),
        service_tier=tier.get("type") if isinstance(tier, dict) else None,
        latency=performance.get("latency") if isinstance(performance, dict) else None,
        extra=extra,
    )


class Accumulator:
    """Holds the reply being built; one per attempt."""

    __slots__ = ("_blocks", "content_started", "metadata", "stop")

    def __init__(self) -> None:
        self._blocks: dict[int, _Block] = {}
        self.content_started = False
        self.stop: MessageStop | None = None
        self.metadata: Metadata | None = None

    def _block(self, index: int) -> _Block:
        block = self._blocks.get(index)
        if block is None:
            block = self._blocks[index] = _Block()
        return block

    def handle(self, name: str, payload: dict[str, Any]) -> StreamEvent:
        match name:
            case "contentBlockDelta":
                return self._delta(payload["contentBlockIndex"], payload["delta"], payload)
            case "messageStart":
                return MessageStart(role=payload.get("role", "assistant"))
            case "contentBlockStart":
                return self._start(payload["contentBlockIndex"], payload.get("start") or {})
            case "contentBlockStop":
                index = payload["contentBlockIndex"]
                block = self._block(index)
                if block.tool is not None and block.tool_value is None:
                    block.tool_value = block.parse_input()
                return ContentBlockStop(index=index)
            case "messageStop":
                self.stop = MessageStop(
                    stop_reason=payload.get("stopReason", ""),
                    additional_fields=payload.get("additionalModelResponseFields"),
                )
                return self.stop
            case "metadata":
                self.metadata = _metadata(payload)
                return self.metadata
            case _:
                return UnknownEvent(name=name, payload=payload)

    def _start(self, index: int, start: dict[str, Any]) -> StreamEvent:
        block = self._block(index)
        tool = start.get("toolUse")
        if tool is not None and {"toolUseId", "name"} <= tool.keys():
            block.tool = ToolUseStart(tool_use_id=tool["toolUseId"], name=tool["name"])
        elif start:
            block.raw = copy.deepcopy(start)
        return ContentBlockStart(index=index, tool_use=block.tool, raw=start)

    def _delta(self, index: int, delta: dict[str, Any], payload: dict[str, Any]) -> StreamEvent:
        block = self._blocks.get(index) or self._block(index)
        self.content_started = True
        text = delta.get("text")
        if type(text) is str and type(index) is int and block.raw is None:
            # The hot path (one per token): the same as the first case below, without `match`.
            block.text.append(text)
            return text_delta(index, text)
        if block.raw is not None:  # a block kind we do not know: keep all of it verbatim
            _merge_raw(block.raw, delta)
            return UnknownEvent(name="contentBlockDelta", payload=payload)
        match delta:
            case {"text": str(text)}:
                block.text.append(text)
                return TextDelta(index=index, text=text)
            case {"toolUse": {"input": str(fragment)}}:
                block.tool_input.append(fragment)
                return ToolUseDelta(index=index, input_fragment=fragment)
            case {"reasoningContent": dict(reasoning)}:
                block.reasoning = True
                return self._reasoning(index, block, reasoning)
            case {"citation": dict(citation)}:
                block.citations.append(citation)
                return CitationDelta(index=index, citation=citation)
            case _:
                # An unknown delta inside a known block is forwarded and set aside; the block's
                # own deltas before and after it still build a well-formed block.
                block.unknown.append(copy.deepcopy(delta))
                return UnknownEvent(name="contentBlockDelta", payload=payload)

    @staticmethod
    def _reasoning(index: int, block: _Block, reasoning: dict[str, Any]) -> ReasoningDelta:
        text = reasoning.get("text", "")
        signature = reasoning.get("signature")
        redacted = reasoning.get("redactedContent")
        if text:
            block.text.append(text)
        if signature is not None:
            block.signature = (block.signature or "") + signature
        if redacted is not None:
            redacted = base64.b64decode(redacted) if isinstance(redacted, str) else redacted
            block.redacted = (block.redacted or b"") + redacted
        return ReasoningDelta(index=index, text=text, signature=signature, redacted=redacted)

    def message(self) -> Message:
        """The assistant message so far, every block kept in index order."""
        blocks = (self._blocks[i].content() for i in sorted(self._blocks))
        return Message(role="assistant", content=tuple(b for b in blocks if b is not None))

    def reply(self, *, metrics: Metrics, request_id: str | None) -> Reply:
        message = self.message()
        meta = self.metadata or Metadata()
        reasoning = "".join(b.text for b in message.content if isinstance(b, ReasoningBlock))
        return Reply(
            message=message,
            text=message.text,
            stop_reason=self.stop.stop_reason if self.stop else "",
            usage=meta.usage,
            metrics=metrics
            if metrics.server_latency_ms == meta.server_latency_ms
            else metrics.model_copy(update={"server_latency_ms": meta.server_latency_ms}),
            tool_uses=tuple(b for b in message.content if isinstance(b, ToolUseBlock)),
            reasoning=reasoning,
            request_id=request_id,
            trace=meta.trace,
            service_tier=meta.service_tier,
            latency=meta.latency,
            metadata_extra=meta.extra,
        )
