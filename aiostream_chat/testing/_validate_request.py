"""What FakeBedrock checks in a request body, the way Bedrock documents it, and CountTokens.

A wrong shape gets the 400 ``ValidationException`` Bedrock would answer, so a request our
library builds wrongly fails in tests as it would in production. The rules come from the
Bedrock Runtime API reference (ConverseStream, CountTokens and their shapes); messages
imitate Bedrock's "1 validation error detected: ..." form.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._wire import error_type

if TYPE_CHECKING:
    from ._server import ReceivedRequest

__all__ = ["check_request", "count_tokens", "problem"]

MiB = 1024 * 1024
_IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")
_DOC_FORMATS = ("pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md")
_VIDEO_FORMATS = ("mkv", "mov", "mp4", "webm", "flv", "mpeg", "mpg", "wmv", "three_gp")
_MEDIA = {
    "image": (_IMAGE_FORMATS, int(3.75 * MiB)),
    "document": (_DOC_FORMATS, int(4.5 * MiB)),
    "video": (_VIDEO_FORMATS, 25 * MiB),
}
_QUALIFIERS = ("grounding_source", "query", "guard_content")
_S3_URI = re.compile(r"s3://[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9](/.*)?")
_DOC_NAME = re.compile(r"[A-Za-z0-9\-()\[\]]+(\s[A-Za-z0-9\-()\[\]]+)*")
_GUARDRAIL_ID = re.compile(
    r"[a-z0-9]+|arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+"
)
_GUARDRAIL_VERSION = re.compile(r"[1-9][0-9]{0,7}|DRAFT")
_METADATA = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]*")
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_CACHE_POINTS = 4


class _Invalid(Exception):
    """One validation problem, worded as Bedrock words it."""


def _fail(value: Any, where: str, constraint: str) -> _Invalid:
    shown = value if isinstance(value, str | int | float | bool) else type(value).__name__
    return _Invalid(
        f"1 validation error detected: Value '{shown}' at '{where}' failed to satisfy "
        f"constraint: {constraint}"
    )


def _enum(value: Any, where: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise _fail(value, where, f"Member must satisfy enum value set: [{', '.join(allowed)}]")


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(value, where, "Member must be a structure")
    return value


def _union(value: Any, where: str, members: Sequence[str]) -> tuple[str, Any]:
    """The one member set in a Bedrock union value."""
    body = _obj(value, where)
    if len(body) != 1 or next(iter(body)) not in members:
        raise _fail(
            ",".join(body) or "{}", where, f"Member must have exactly one of: {', '.join(members)}"
        )
    ((kind, inner),) = body.items()
    return kind, inner


def _source(value: Any, where: str, limit: int) -> None:
    kind, inner = _union(value, where, ("bytes", "s3Location"))
    if kind == "s3Location":
        uri = _obj(inner, f"{where}.s3Location").get("uri")
        if not isinstance(uri, str) or not _S3_URI.fullmatch(uri):
            raise _fail(uri, f"{where}.s3Location.uri", "Member must be an s3:// object URI")
        return
    try:
        size = len(base64.b64decode(inner, validate=True)) if isinstance(inner, str) else -1
    except (binascii.Error, ValueError):
        size = -1
    if size < 1:
        raise _fail("<blob>", f"{where}.bytes", "Member must be non-empty base64 data")
    if size > limit:
        raise _fail(size, f"{where}.bytes", f"Member must be at most {limit} bytes")


def _media(kind: str, value: Any, where: str) -> None:
    formats, limit = _MEDIA[kind]
    body = _obj(value, where)
    if kind != "document" or "format" in body:
        _enum(body.get("format"), f"{where}.format", formats)
    if kind == "document":
        name = body.get("name")
        if not isinstance(name, str) or len(name) > 200 or not _DOC_NAME.fullmatch(name):
            raise _fail(name, f"{where}.name", "Member must be a valid document name")
    _source(body.get("source"), f"{where}.source", limit)


def _cache_point(value: Any, where: str) -> None:
    body = _obj(value, where)
    _enum(body.get("type"), f"{where}.type", ("default",))
    if "ttl" in body:
        _enum(body["ttl"], f"{where}.ttl", ("5m", "1h"))
    if not body.keys() <= {"type", "ttl"}:
        raise _fail(",".join(body), where, "Member must hold only type and ttl")


def _guard(value: Any, where: str) -> None:
    kind, inner = _union(value, where, ("text", "image"))
    if kind == "text":
        text = _obj(inner, f"{where}.text")
        if not isinstance(text.get("text"), str):
            raise _fail(text.get("text"), f"{where}.text.text", "Member must not be null")
        for i, qualifier in enumerate(text.get("qualifiers", [])):
            _enum(qualifier, f"{where}.text.qualifiers.{i + 1}.member", _QUALIFIERS)


def _tool_result(value: Any, where: str) -> None:
    for i, entry in enumerate(_obj(value, where).get("content", [])):
        if isinstance(entry, dict) and len(entry) == 1:
            ((kind, inner),) = entry.items()
            if kind in _MEDIA:
                _media(kind, inner, f"{where}.content.{i + 1}.member.{kind}")


def _block(block: Any, where: str, role: str, counts: dict[str, int]) -> None:
    if not isinstance(block, dict) or len(block) != 1:
        return  # other shapes are not this module's business (RawBlock tests send them)
    ((kind, inner),) = block.items()
    counts[kind] = counts.get(kind, 0) + 1
    if kind in _MEDIA:
        if kind != "video" and role != "user":
            raise _fail(role, f"{where}.{kind}", "images and documents need role user")
        _media(kind, inner, f"{where}.{kind}")
    elif kind == "cachePoint":
        _cache_point(inner, f"{where}.cachePoint")
    elif kind == "guardContent":
        _guard(inner, f"{where}.guardContent")
    elif kind == "toolResult":
        _tool_result(inner, f"{where}.toolResult")


def _messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _fail(messages, "messages", "Member must be a list")
    for m, message in enumerate(messages):
        where = f"messages.{m + 1}.member"
        role = str(_obj(message, where).get("role"))
        _enum(role, f"{where}.role", ("user", "assistant"))
        counts: dict[str, int] = {}
        for b, block in enumerate(message.get("content") or []):
            _block(block, f"{where}.content.{b + 1}.member", role, counts)
        if counts.get("image", 0) > 20 or counts.get("document", 0) > 5:
            raise _fail(role, f"{where}.content", "at most 20 images and 5 documents")
        if counts.get("document") and not counts.get("text"):
            raise _Invalid("A conversation must include a text block with the document.")


def _system(system: Any) -> None:
    if not isinstance(system, list):
        raise _fail(system, "system", "Member must be a list")
    for i, block in enumerate(system):
        where = f"system.{i + 1}.member"
        kind, inner = _union(block, where, ("text", "guardContent", "cachePoint"))
        if kind == "text" and not (isinstance(inner, str) and inner):
            raise _fail(
                inner, f"{where}.text", "Member must have length greater than or equal to 1"
            )
        if kind == "guardContent":
            _guard(inner, f"{where}.guardContent")
        if kind == "cachePoint":
            _cache_point(inner, f"{where}.cachePoint")


def _tool_config(config: Any) -> None:
    tools = _obj(config, "toolConfig").get("tools")
    if not isinstance(tools, list) or not tools:
        raise _fail(tools, "toolConfig.tools", "Member must have length greater than or equal to 1")
    names = []
    for i, tool in enumerate(tools):
        where = f"toolConfig.tools.{i + 1}.member"
        kind, inner = _union(tool, where, ("toolSpec", "cachePoint", "systemTool"))
        if kind == "cachePoint":
            _cache_point(inner, f"{where}.cachePoint")
        elif kind == "toolSpec":
            names.append(_obj(inner, f"{where}.toolSpec").get("name"))
    if "toolChoice" in config:
        kind, inner = _union(config["toolChoice"], "toolConfig.toolChoice", ("auto", "any", "tool"))
        name = _obj(inner, f"toolConfig.toolChoice.{kind}").get("name")
        if kind == "tool" and (not isinstance(name, str) or not _TOOL_NAME.fullmatch(name)):
            raise _fail(name, "toolConfig.toolChoice.tool.name", "Member must be a tool name")
        if kind == "tool" and name not in names:
            raise _Invalid(f"The tool {name} in toolChoice is not in toolConfig.tools.")


def _guardrail(config: Any, operation: str) -> None:
    body = _obj(config, "guardrailConfig")
    identifier, version = body.get("guardrailIdentifier"), body.get("guardrailVersion")
    if not isinstance(identifier, str) or not _GUARDRAIL_ID.fullmatch(identifier):
        raise _fail(identifier, "guardrailConfig.guardrailIdentifier", "Member must be an id")
    if not isinstance(version, str) or not _GUARDRAIL_VERSION.fullmatch(version):
        raise _fail(version, "guardrailConfig.guardrailVersion", "Member must be a version")
    if "trace" in body:
        _enum(body["trace"], "guardrailConfig.trace", ("enabled", "disabled", "enabled_full"))
    if "streamProcessingMode" in body:
        if operation != "converse-stream":
            raise _fail("streamProcessingMode", "guardrailConfig", "Converse has no stream mode")
        _enum(
            body["streamProcessingMode"], "guardrailConfig.streamProcessingMode", ("sync", "async")
        )


def _request_metadata(value: Any) -> None:
    body = _obj(value, "requestMetadata")
    if not 1 <= len(body) <= 16:
        raise _fail(len(body), "requestMetadata", "Member must have between 1 and 16 entries")
    for key, item in body.items():
        ok = isinstance(item, str) and 0 < len(key) <= 256 and len(item) <= 256
        if not ok or not _METADATA.fullmatch(key + item):
            raise _fail(key, "requestMetadata", "Member keys and values must match the pattern")


def _field_paths(value: Any) -> None:
    if not isinstance(value, list) or len(value) > 10:
        raise _fail(value, "additionalModelResponseFieldPaths", "Member must hold at most 10")
    for path in value:
        if not isinstance(path, str) or not path.startswith("/") or len(path) > 256:
            raise _Invalid(f"The JSON pointer {path!r} is not valid.")


def _prompt_variables(value: Any) -> None:
    for key, item in _obj(value, "promptVariables").items():
        _union(item, f"promptVariables.{key}", ("text",))


def _thinking(fields: Any, body: dict[str, Any], model_id: str) -> None:
    fields = _obj(fields, "additionalModelRequestFields")
    thinking = fields.get("thinking")
    if thinking is None or "anthropic.claude" not in model_id:
        return
    budget = _obj(thinking, "thinking").get("budget_tokens")
    max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
    if not isinstance(budget, int) or budget < 1024:
        raise _Invalid("thinking.budget_tokens: Input should be greater than or equal to 1024")
    if max_tokens is not None and budget >= max_tokens:
        raise _Invalid("`max_tokens` must be greater than `thinking.budget_tokens`.")


def _top_level(body: dict[str, Any], model_id: str, operation: str) -> None:
    checks: dict[str, Callable[[Any], None]] = {
        "messages": _messages,
        "system": _system,
        "toolConfig": _tool_config,
        "guardrailConfig": lambda v: _guardrail(v, operation),
        "performanceConfig": lambda v: _enum(
            _obj(v, "performanceConfig").get("latency"),
            "performanceConfig.latency",
            ("standard", "optimized"),
        ),
        "serviceTier": lambda v: _enum(
            _obj(v, "serviceTier").get("type"),
            "serviceTier.type",
            ("priority", "default", "flex", "reserved"),
        ),
        "requestMetadata": _request_metadata,
        "promptVariables": _prompt_variables,
        "additionalModelRequestFields": lambda v: _thinking(v, body, model_id),
        "additionalModelResponseFieldPaths": _field_paths,
    }
    for key, check in checks.items():
        if key in body:
            check(body[key])
    points = sum(_count_points(body.get(key)) for key in ("system", "messages", "toolConfig"))
    if points > MAX_CACHE_POINTS:
        raise _Invalid(f"The request has {points} cache points; the maximum is {MAX_CACHE_POINTS}.")


def _count_points(value: Any) -> int:
    if isinstance(value, dict):
        return ("cachePoint" in value) + sum(_count_points(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_points(v) for v in value)
    return 0


def problem(body: dict[str, Any], model_id: str, operation: str) -> str | None:
    """What Bedrock would reject in this request body, or None when it would accept it."""
    try:
        if operation == "count-tokens":
            _, inner = _union(body.get("input"), "input", ("converse", "invokeModel"))
            body = _obj(inner, "input.converse")
        _top_level(body, model_id, operation)
    except _Invalid as exc:
        return str(exc)
    return None


def _answer(status: int, code: str, message: str) -> web.Response:
    headers = {"x-amzn-ErrorType": error_type(code), "x-amzn-RequestId": str(uuid.uuid4())}
    return web.json_response({"message": message}, status=status, headers=headers)


def count_tokens(body: dict[str, Any]) -> int:
    """FakeBedrock's token count: about a token per four characters of text and tool JSON."""
    converse = (body.get("input") or {}).get("converse") or {}
    texts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "text" and isinstance(item, str):
                    texts.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(converse.get("system"))
    walk(converse.get("messages"))
    tools = len(json.dumps(converse["toolConfig"])) // 4 if "toolConfig" in converse else 0
    return max(1, sum(len(t) for t in texts) // 4 + 4 * len(converse.get("messages") or []) + tools)


def check_request(request: ReceivedRequest) -> web.Response | None:
    """The response to send instead of the scripted one: a 400 for an invalid body, or the
    CountTokens answer; None lets the request go on to its script."""
    message = problem(request.body, request.model_id, request.operation)
    if message is not None:
        return _answer(400, "ValidationException", message)
    if request.operation == "count-tokens":
        headers = {"x-amzn-RequestId": str(uuid.uuid4())}
        return web.json_response({"inputTokens": count_tokens(request.body)}, headers=headers)
    return None
