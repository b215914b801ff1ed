"""RequestOptions: the rest of the Converse request (thinking, caching, guardrails, tiers...).

``check_options()`` raises ``ValueError`` before any I/O for what Bedrock would reject;
``apply_options()`` is a pure function that adds the options to a request body dict.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from ._blocks import Frozen, JsonDict, cache_point

__all__ = [
    "MAX_CACHE_POINTS",
    "Cache",
    "Guardrail",
    "RequestOptions",
    "Thinking",
    "apply_options",
    "check_options",
    "model_family",
]

MAX_CACHE_POINTS = 4
"""Bedrock accepts at most this many cachePoint blocks in one request."""

Family = Literal["claude", "nova2", "gpt-oss"]
_METADATA = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]*")
_GUARDRAIL_ID = re.compile(
    r"[a-z0-9]+|arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+"
)
_GUARDRAIL_VERSION = re.compile(r"[1-9][0-9]{0,7}|DRAFT")


class Thinking(Frozen):
    """Turn on the model's reasoning: a token budget (Claude) or an effort (Nova 2, gpt-oss)."""

    budget_tokens: int | None = Field(default=None, gt=0)
    effort: Literal["low", "medium", "high"] | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.budget_tokens is None and self.effort is None:
            raise ValueError("Thinking needs budget_tokens or effort")
        return self


class Cache(Frozen):
    """Where to put prompt-cache points: after the system prompt, the tools, the history.

    A place the turn does not have (no system prompt, no tools, an empty history) gets none.
    """

    system: bool = False
    tools: bool = False
    history: bool = False
    ttl: Literal["5m", "1h"] | None = None


class Guardrail(Frozen):
    """A Bedrock guardrail applied to the turn (``guardrailConfig``)."""

    id: str
    version: str
    trace: Literal["enabled", "disabled", "enabled_full"] = "disabled"
    stream_mode: Literal["sync", "async"] = "sync"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not _GUARDRAIL_ID.fullmatch(self.id):
            raise ValueError(f"Guardrail id must be a guardrail id or ARN, not {self.id!r}")
        if not _GUARDRAIL_VERSION.fullmatch(self.version):
            raise ValueError(f'Guardrail version must be a number or "DRAFT", not {self.version!r}')
        return self

    def to_bedrock(self) -> dict[str, Any]:
        return {
            "guardrailIdentifier": self.id,
            "guardrailVersion": self.version,
            "trace": self.trace,
            "streamProcessingMode": self.stream_mode,
        }


class RequestOptions(Frozen):
    """Everything else a Converse request can carry; every field is optional."""

    thinking: Thinking | None = None
    tool_choice: str | None = None
    """``"auto"``, ``"any"``, or the name of one of the turn's tools that must be called."""
    cache: Cache | None = None
    guardrail: Guardrail | None = None
    latency: Literal["standard", "optimized"] | None = None
    service_tier: Literal["priority", "default", "flex", "reserved"] | None = None
    request_metadata: dict[str, str] = Field(default_factory=dict)
    prompt_variables: dict[str, str] = Field(default_factory=dict)
    additional_request_fields: JsonDict = Field(default_factory=dict)
    additional_response_field_paths: tuple[str, ...] = ()
    extra_body: JsonDict = Field(default_factory=dict)
    """Merged last into the JSON body (dicts merge key by key), for fields newer than us."""

    @field_validator("additional_response_field_paths", mode="before")
    @classmethod
    def _no_str(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise TypeError("additional_response_field_paths must be a sequence of str, not a str")
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.tool_choice is not None and not self.tool_choice:
            raise ValueError("tool_choice is empty")
        if len(self.request_metadata) > 16:
            raise ValueError("request_metadata holds at most 16 pairs")
        for key, value in self.request_metadata.items():
            if not 0 < len(key) <= 256 or len(value) > 256 or not _METADATA.fullmatch(key + value):
                raise ValueError(
                    f"request_metadata {key!r}: keys and values are up to 256 letters, digits, "
                    "spaces and :_@$#=/+,-. characters"
                )
        paths = self.additional_response_field_paths
        if len(paths) > 10:
            raise ValueError("additional_response_field_paths holds at most 10 paths")
        for path in paths:
            if not path.startswith("/") or len(path) > 256:
                raise ValueError(f"additional_response_field_paths: {path!r} is not a JSON pointer")
        return self


def model_family(model_id: str) -> Family | None:
    """The reasoning family of a model id, inference-profile id or ARN (None when unknown)."""
    name = model_id.rsplit("/", 1)[-1].lower()
    parts = name.split(".")
    for start in range(min(2, len(parts))):  # a region prefix such as us./eu./global.
        rest = ".".join(parts[start:])
        if rest.startswith("anthropic.claude"):
            return "claude"
        if rest.startswith("amazon.nova-2"):
            return "nova2"
        if rest.startswith("openai.gpt-oss"):
            return "gpt-oss"
    return None


def _thinking_fields(thinking: Thinking, family: Family | None, model_id: str) -> dict[str, Any]:
    if family is None:
        raise ValueError(
            f"cannot tell how {model_id!r} turns on reasoning; pass the model's own fields "
            "in RequestOptions(additional_request_fields=...) instead of thinking"
        )
    if family == "claude":
        if thinking.budget_tokens is None:
            raise ValueError("Claude's thinking needs Thinking(budget_tokens=...)")
        return {"thinking": {"type": "enabled", "budget_tokens": thinking.budget_tokens}}
    if thinking.effort is None:
        raise ValueError(f"{model_id!r} reasons by effort: use Thinking(effort=...)")
    if family == "nova2":
        return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": thinking.effort}}
    return {"reasoning_effort": thinking.effort}


def _check_claude_thinking(
    options: RequestOptions, max_tokens: int | None, temperature: float | None
) -> None:
    budget = options.thinking.budget_tokens if options.thinking else None
    if budget is None:
        return
    if budget < 1024:
        raise ValueError(f"Claude's thinking budget must be at least 1024 tokens, not {budget}")
    if max_tokens is not None and budget >= max_tokens:
        raise ValueError(
            f"Claude's thinking budget ({budget}) must be below max_tokens ({max_tokens})"
        )
    if temperature is not None and temperature != 1:
        raise ValueError("Claude's thinking works only with temperature 1 (or unset)")
    if "top_k" in options.additional_request_fields:
        raise ValueError("Claude's thinking does not work with top_k")
    if options.tool_choice not in (None, "auto"):
        raise ValueError("Claude's thinking does not work with a forced tool_choice (use 'auto')")


def check_options(
    options: RequestOptions,
    *,
    model_id: str,
    tool_names: Sequence[str],
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> None:
    """Raise ``ValueError`` for what Bedrock would reject, before any I/O."""
    choice = options.tool_choice
    if choice is not None:
        if not tool_names:
            raise ValueError("tool_choice needs tools: the turn has none")
        if choice not in ("auto", "any") and choice not in tool_names:
            raise ValueError(
                f"tool_choice {choice!r} names no tool of this turn "
                f"(tools: {', '.join(tool_names)})"
            )
    if options.thinking is not None:
        family = model_family(model_id)
        _thinking_fields(options.thinking, family, model_id)
        if family == "claude":
            _check_claude_thinking(options, max_tokens, temperature)


def _merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Merge ``extra`` into ``target``: dicts key by key (copied, never changed in place),
    everything else replaced."""
    for key, value in extra.items():
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            target[key] = merged = dict(current)
            _merge(merged, value)
        else:
            target[key] = copy.deepcopy(value)


def _add_cache_points(body: dict[str, Any], cache: Cache, history_len: int) -> None:
    point = {"cachePoint": cache_point(cache.ttl)}
    if cache.system and body.get("system"):
        body["system"] = [*body["system"], point]
    tool_config = body.get("toolConfig")
    if cache.tools and tool_config and tool_config.get("tools"):
        body["toolConfig"] = {**tool_config, "tools": [*tool_config["tools"], point]}
    messages = body.get("messages") or []
    if cache.history and 0 < history_len <= len(messages):
        last = messages[history_len - 1]
        messages = list(messages)
        messages[history_len - 1] = {**last, "content": [*last["content"], point]}
        body["messages"] = messages


def count_cache_points(body: Mapping[str, Any]) -> int:
    """How many cachePoint blocks a request body holds (system, tools and messages)."""
    blocks = [*body.get("system", ()), *(body.get("toolConfig") or {}).get("tools", ())]
    for message in body.get("messages", ()):
        blocks.extend(message.get("content", ()))
    return sum(1 for b in blocks if isinstance(b, dict) and "cachePoint" in b)


def _tool_choice(choice: str) -> dict[str, Any]:
    if choice in ("auto", "any"):
        return {choice: {}}
    return {"tool": {"name": choice}}


def apply_options(
    body: Mapping[str, Any], options: RequestOptions, *, model_id: str, history_len: int
) -> dict[str, Any]:
    """A copy of the request ``body`` with ``options`` added (``history_len``: messages
    before this turn's prompt, the place of the history cache point)."""
    out = dict(body)
    if options.cache is not None:
        _add_cache_points(out, options.cache, history_len)
        points = count_cache_points(out)
        if points > MAX_CACHE_POINTS:
            raise ValueError(
                f"the request would hold {points} cache points; Bedrock allows at most "
                f"{MAX_CACHE_POINTS}"
            )
    if options.tool_choice is not None and out.get("toolConfig"):
        out["toolConfig"] = {**out["toolConfig"], "toolChoice": _tool_choice(options.tool_choice)}
    fields: dict[str, Any] = {}
    if options.thinking is not None:
        fields = _thinking_fields(options.thinking, model_family(model_id), model_id)
    _merge(fields, options.additional_request_fields)
    if fields:
        out["additionalModelRequestFields"] = fields
    if options.guardrail is not None:
        out["guardrailConfig"] = options.guardrail.to_bedrock()
    if options.latency is not None:
        out["performanceConfig"] = {"latency": options.latency}
    if options.service_tier is not None:
        out["serviceTier"] = {"type": options.service_tier}
    if options.request_metadata:
        out["requestMetadata"] = dict(options.request_metadata)
    if options.prompt_variables:
        out["promptVariables"] = {k: {"text": v} for k, v in options.prompt_variables.items()}
    if options.additional_response_field_paths:
        out["additionalModelResponseFieldPaths"] = list(options.additional_response_field_paths)
    _merge(out, options.extra_body)
    return out
