"""Structured output: ask for a typed answer, stream it as partial JSON, validate and repair.

Two ways to ask (``OutputSpec.mode``):

- ``"native"``: Bedrock's ``outputConfig.textFormat`` (a JSON schema), where the model family
  supports it (Anthropic Claude 4.5 and later; the open-weight families Bedrock lists). The
  answer is the message text.
- ``"tool"``: a forced tool (``final_result``) whose input schema is the answer's schema;
  the answer is that tool call's input. Anthropic models refuse a forced tool while thinking
  is on, so that combination raises ``ValueError`` before any I/O.

An answer that fails validation is sent back with pydantic's errors for ``retries`` repair
rounds; then ``OutputValidationError`` carries the raw answer and the errors.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from ._errors import OutputValidationError
from ._models import Message, Reply, TextBlock, ToolResultBlock, ToolSpec, ToolUseBlock

__all__ = ["OUTPUT_TOOL", "OutputSpec", "native_output_supported"]

OUTPUT_TOOL = "final_result"
Mode = Literal["native", "tool"]

# Bedrock's structured-output page lists Claude Haiku/Sonnet/Opus 4.5 and later, and
# select open-weight families (Qwen, DeepSeek, Gemma, Nemotron, MiniMax, Kimi, gpt-oss).
_CLAUDE = re.compile(r"claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d)(?!\d))?")
_OPEN_WEIGHT = ("qwen.", "deepseek.", "google.gemma", "nvidia.nemotron", "minimax.", "moonshot")
_OPEN_WEIGHT_OPENAI = re.compile(r"(^|[.:/])openai\.gpt-oss")


def _family_id(model_id: str) -> str:
    """The model part of an id, ARN or inference profile (``us.``/``global.`` prefix dropped)."""
    tail = model_id.lower().rsplit("/", 1)[-1]
    return re.sub(r"^(?:us|eu|apac|ap|global|us-gov|jp|au|ca)\.", "", tail)


def is_anthropic(model_id: str) -> bool:
    family = _family_id(model_id)
    return family.startswith("anthropic.") or "claude" in family


def native_output_supported(model_id: str) -> bool:
    """Whether Bedrock offers ``outputConfig.textFormat`` for this model's family."""
    family = _family_id(model_id)
    match = _CLAUDE.search(family)
    if match:
        return (int(match.group(1)), int(match.group(2) or 0)) >= (4, 5)
    if is_anthropic(model_id):
        return False
    return family.startswith(_OPEN_WEIGHT) or bool(_OPEN_WEIGHT_OPENAI.search(family))


def _strict(schema: Any) -> Any:
    """A copy with ``additionalProperties: false`` on every object (native mode requires it)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if out.get("type") == "object" and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _describe(errors: list[dict[str, Any]]) -> str:
    lines = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ())) or "(answer)"
        lines.append(f"- {where}: {error.get('msg', error)}")
    return "\n".join(lines)


class OutputSpec:
    """How one turn asks for, streams and validates a structured answer of ``output_type``."""

    def __init__(
        self, output_type: Any, *, model_id: str, thinking: bool = False, retries: int = 1
    ) -> None:
        try:
            self.adapter: TypeAdapter[Any] = TypeAdapter(output_type)
            schema = self.adapter.json_schema()
        except Exception as exc:
            raise TypeError(
                f"output must be a pydantic model or a type pydantic can validate, "
                f"not {output_type!r} ({exc})"
            ) from None
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"output_retries must be an int of at least 0, not {retries!r}")
        self.retries = retries
        self.wrapped = schema.get("type") != "object"
        if self.wrapped:  # tool inputs must be objects: put the answer under "value"
            defs = schema.pop("$defs", None)
            schema = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
            if defs:
                schema["$defs"] = defs
        self.schema: dict[str, Any] = schema
        self.name = str(schema.get("title") or getattr(output_type, "__name__", "answer"))
        self.description = str(schema.get("description") or f"The answer as {self.name}.")
        if native_output_supported(model_id):
            self.mode: Mode = "native"
        elif thinking and is_anthropic(model_id):
            raise ValueError(
                f"{model_id} cannot give structured output while thinking is on: Anthropic "
                f"models refuse a forced tool with thinking, and this model has no native "
                f"structured output (Claude 4.5 or later has); turn thinking off"
            )
        else:
            self.mode = "tool"

    # -- the request -------------------------------------------------------------------------

    def tool_spec(self) -> ToolSpec:
        return ToolSpec(
            name=OUTPUT_TOOL,
            description=f"Give your final answer by calling this tool. {self.description}",
            input_schema=copy.deepcopy(self.schema),
        )

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """The Converse request body with the answer's schema added (``body`` is not changed)."""
        body = dict(body)
        if self.mode == "native":
            structure = {
                "jsonSchema": {
                    "schema": json.dumps(_strict(self.schema)),
                    "name": re.sub(r"[^a-zA-Z0-9_-]", "_", self.name)[:64] or "answer",
                    "description": self.description,
                }
            }
            body["outputConfig"] = {
                **body.get("outputConfig", {}),
                "textFormat": {"type": "json_schema", "structure": structure},
            }
            return body
        config = dict(body.get("toolConfig") or {})
        tools = [*config.get("tools", ()), self.tool_spec().to_bedrock()]
        only = len(tools) == 1
        config["tools"] = tools
        config["toolChoice"] = {"tool": {"name": OUTPUT_TOOL}} if only else {"any": {}}
        body["toolConfig"] = config
        return body

    # -- the answer --------------------------------------------------------------------------

    def answer_call(self, message: Message) -> ToolUseBlock | None:
        """The forced tool's call in ``message`` (tool mode)."""
        for block in message.content:
            if isinstance(block, ToolUseBlock) and block.name == OUTPUT_TOOL:
                return block
        return None

    def is_answer(self, reply: Reply) -> bool:
        """Whether this round holds the answer (rather than calls of other tools)."""
        if self.mode == "native":
            return reply.stop_reason != "tool_use"
        return self.answer_call(reply.message) is not None or not reply.tool_uses

    def as_text(self, message: Message) -> Message:
        """``message`` with the forced tool's call turned into its JSON as text.

        History keeps this form: a ``toolUse`` left in it would need a ``toolResult`` in the
        next user message, which Bedrock would otherwise reject.
        """
        blocks = tuple(
            TextBlock(text=json.dumps(b.input, separators=(",", ":")))
            if isinstance(b, ToolUseBlock) and b.name == OUTPUT_TOOL
            else b
            for b in message.content
        )
        return message.model_copy(update={"content": blocks})

    def raw(self, message: Message) -> str:
        """The answer's JSON text as the model sent it."""
        if self.mode == "native":
            return message.text
        call = self.answer_call(message)
        return json.dumps(call.input) if call is not None else message.text

    def partial(self, raw: str) -> dict[str, Any] | None:
        """What the incomplete JSON ``raw`` parses to so far (None if not an object yet)."""
        try:
            value = from_json(raw, allow_partial="trailing-strings")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def validate(self, message: Message) -> Any:
        """The validated answer; raises ``ValidationError`` (or ``ValueError`` if none came)."""
        if self.mode == "tool":
            call = self.answer_call(message)
            if call is None:
                raise ValueError(f"the model answered without calling {OUTPUT_TOOL}")
            data: Any = call.input
        else:
            data = from_json(message.text.strip() or "null")
        if self.wrapped:
            if not isinstance(data, dict) or "value" not in data:
                raise ValueError('the answer has no "value" field')
            data = data["value"]
        return self.adapter.validate_python(data)

    def parse(self, message: Message) -> tuple[Any, list[dict[str, Any]]]:
        """``(answer, [])`` when it validates, else ``(None, errors)``."""
        try:
            return self.validate(message), []
        except ValidationError as exc:
            return None, [dict(e) for e in exc.errors(include_url=False)]
        except ValueError as exc:  # not JSON at all, or no answer
            return None, [{"type": "invalid_answer", "loc": (), "msg": str(exc)}]

    def repair(self, message: Message, errors: list[dict[str, Any]]) -> Message:
        """The user message that sends the validation errors back to the model."""
        problems = _describe(errors)
        if self.mode == "native":
            text = (
                f"Your answer does not match the required JSON schema:\n{problems}\n"
                f"Answer again with only the corrected JSON."
            )
            return Message(role="user", content=(TextBlock(text=text),))
        results = []
        for use in message.content:
            if not isinstance(use, ToolUseBlock):
                continue
            if use.name == OUTPUT_TOOL:
                text = f"The answer is not valid:\n{problems}\nCall {OUTPUT_TOOL} again, fixed."
            else:
                text = f"Not run: {OUTPUT_TOOL} was called in the same message."
            results.append(
                ToolResultBlock(
                    tool_use_id=use.tool_use_id, content=({"text": text},), status="error"
                )
            )
        if not results:
            text = f"You must answer by calling {OUTPUT_TOOL}:\n{problems}"
            return Message(role="user", content=(TextBlock(text=text),))
        return Message(role="user", content=tuple(results))

    def failure(self, message: Message, errors: list[dict[str, Any]]) -> OutputValidationError:
        return OutputValidationError(
            f"the model's answer is not a valid {self.name}:\n{_describe(errors)}",
            raw_text=self.raw(message),
            errors=errors,
        )
