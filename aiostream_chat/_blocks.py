"""The value base class and the media blocks: images, documents, videos, cache points, guards.

This is the bottom layer of the values: ``_models`` builds messages from these blocks.
Bytes survive a JSON round trip everywhere: typed ``bytes`` fields are base64 strings, and
bytes nested inside free-form dicts (``RawBlock.data``, tool-result entries) are written
as ``{"$bytes": "<base64>"}`` and read back as bytes.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

import anyio
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    ValidationError,
    model_validator,
)

__all__ = [
    "CachePoint",
    "DocumentBlock",
    "Frozen",
    "GuardContent",
    "ImageBlock",
    "JsonDict",
    "S3Location",
    "VideoBlock",
]

_BYTES_TAG = "$bytes"


class Frozen(BaseModel):
    """Base of every value: immutable, bytes as base64 in JSON, positional fields allowed.

    Construction errors are one plain ``ValueError``/``TypeError`` sentence (no pydantic URL).
    """

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


def tag_bytes(value: Any) -> Any:
    """A JSON-safe copy of ``value``: every bytes value becomes ``{"$bytes": base64}``."""
    if isinstance(value, bytes | bytearray):
        return {_BYTES_TAG: base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {k: tag_bytes(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [tag_bytes(v) for v in value]
    return value


def untag_bytes(value: Any) -> Any:
    """The inverse of ``tag_bytes``; values without tags come back unchanged (not copied)."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(_BYTES_TAG), str):
            return base64.b64decode(value[_BYTES_TAG], validate=True)
        if any(isinstance(v, dict | list) for v in value.values()):
            return {k: untag_bytes(v) for k, v in value.items()}
        return value
    if isinstance(value, list):
        return [untag_bytes(v) for v in value]
    return value


JsonDict = Annotated[
    dict[str, Any],
    BeforeValidator(untag_bytes),
    PlainSerializer(tag_bytes, when_used="json"),
]
"""A free-form dict whose nested bytes round-trip exactly through JSON."""

MiB = 1024 * 1024
_S3_URI = re.compile(r"s3://[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9](/.*)?")
_ACCOUNT = re.compile(r"[0-9]{12}")


class S3Location(Frozen):
    """An object in Amazon S3 that Bedrock reads a medium from."""

    uri: str
    bucket_owner: str | None = None
    """The account id owning the bucket, when it is not the caller's."""
    type: Literal["s3_location"] = "s3_location"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(self.uri) > 1024 or not _S3_URI.fullmatch(self.uri):
            raise ValueError(f"S3Location uri must look like s3://bucket/key, not {self.uri!r}")
        if self.bucket_owner is not None and not _ACCOUNT.fullmatch(self.bucket_owner):
            raise ValueError("S3Location bucket_owner must be a 12-digit AWS account id")
        return self

    def to_bedrock(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uri": self.uri}
        if self.bucket_owner is not None:
            out["bucketOwner"] = self.bucket_owner
        return out


Source = bytes | S3Location


def _source_to_bedrock(source: Source) -> dict[str, Any]:
    if isinstance(source, S3Location):
        return {"s3Location": source.to_bedrock()}
    return {"bytes": source}


def _source_from_bedrock(data: dict[str, Any]) -> Source | None:
    """The source of a Bedrock media dict, or None when it is of a kind we do not model."""
    if data.keys() == {"bytes"} and isinstance(data["bytes"], bytes | str):
        raw = data["bytes"]
        return base64.b64decode(raw) if isinstance(raw, str) else raw
    if data.keys() == {"s3Location"} and isinstance(data["s3Location"], dict):
        s3 = data["s3Location"]
        return S3Location(uri=s3.get("uri", ""), bucket_owner=s3.get("bucketOwner"))
    return None


class _Media(Frozen):
    """Shared checks of the media blocks: a size Bedrock accepts, and formats from suffixes."""

    formats: ClassVar[tuple[str, ...]] = ()
    suffixes: ClassVar[dict[str, str]] = {}
    max_bytes: ClassVar[int] = 0
    kind: ClassVar[str] = ""

    @model_validator(mode="after")
    def _check_media(self) -> Self:
        name = type(self).__name__
        source = getattr(self, "source", None)
        if isinstance(source, bytes):
            if not source:
                raise ValueError(f"{name} has no bytes")
            if len(source) > self.max_bytes:
                raise ValueError(
                    f"{name} is {len(source)} bytes; Bedrock accepts at most "
                    f"{self.max_bytes} bytes inline (use an S3Location for larger files)"
                )
        return self

    @classmethod
    def format_for(cls, path: str | Path) -> Any:
        """The Bedrock format for a file name, from its suffix."""
        suffix = Path(path).suffix.lower().lstrip(".")
        fmt = cls.suffixes.get(suffix, suffix)
        if fmt not in cls.formats:
            raise ValueError(
                f"cannot tell the {cls.kind} format of {str(path)!r}; "
                f"known suffixes are {', '.join(sorted({*cls.formats, *cls.suffixes}))}"
            )
        return fmt


async def _read(path: str | Path, limit: int) -> bytes:
    """Read a file in a worker thread, refusing one larger than ``limit`` before reading it."""
    file = anyio.Path(path)
    size = (await file.stat()).st_size
    if size > limit:
        raise ValueError(f"{str(path)!r} is {size} bytes; Bedrock accepts at most {limit} inline")
    return await file.read_bytes()


ImageFormat = Literal["png", "jpeg", "gif", "webp"]
DocumentFormat = Literal["pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md"]
VideoFormat = Literal["mkv", "mov", "mp4", "webm", "flv", "mpeg", "mpg", "wmv", "three_gp"]


class ImageBlock(_Media):
    """An image (at most 3.75 MB inline, as Bedrock documents)."""

    formats: ClassVar[tuple[str, ...]] = get_args(ImageFormat)
    suffixes: ClassVar[dict[str, str]] = {"jpg": "jpeg"}
    max_bytes: ClassVar[int] = int(3.75 * MiB)
    kind: ClassVar[str] = "image"

    format: ImageFormat
    source: Source
    type: Literal["image"] = "image"

    @classmethod
    async def from_path(cls, path: str | Path, **kw: Any) -> ImageBlock:
        """``await ImageBlock.from_path("cat.png")``: the format from the suffix, read off-loop."""
        fmt = kw.pop("format", None) or cls.format_for(path)
        return cls(format=fmt, source=await _read(path, cls.max_bytes), **kw)

    def to_bedrock(self) -> dict[str, Any]:
        return {"image": {"format": self.format, "source": _source_to_bedrock(self.source)}}


_NAME_BAD = re.compile(r"[^A-Za-z0-9\s\-()\[\]]")
_NAME_OK = re.compile(r"[A-Za-z0-9\-()\[\]]+(\s[A-Za-z0-9\-()\[\]]+)*")


def document_name(text: str) -> str:
    """A document name Bedrock accepts, made from ``text`` (e.g. a file's stem)."""
    cleaned = " ".join(_NAME_BAD.sub("-", text).split())[:200].strip()
    return cleaned or "document"


class DocumentBlock(_Media):
    """A document (at most 4.5 MB inline); ``citations=True`` asks the model to cite it."""

    formats: ClassVar[tuple[str, ...]] = get_args(DocumentFormat)
    suffixes: ClassVar[dict[str, str]] = {"htm": "html", "markdown": "md", "text": "txt"}
    max_bytes: ClassVar[int] = int(4.5 * MiB)
    kind: ClassVar[str] = "document"

    format: DocumentFormat
    name: str
    """Letters, digits, single spaces, hyphens, parentheses and square brackets only."""
    source: Source
    citations: bool = False
    type: Literal["document"] = "document"

    @model_validator(mode="after")
    def _check_name(self) -> Self:
        if len(self.name) > 200 or not _NAME_OK.fullmatch(self.name):
            raise ValueError(
                f"DocumentBlock name {self.name!r} may hold only letters, digits, single spaces, "
                "hyphens, parentheses and square brackets (at most 200)"
            )
        return self

    @classmethod
    async def from_path(cls, path: str | Path, **kw: Any) -> DocumentBlock:
        """``await DocumentBlock.from_path("a.pdf")``: format and name from the file name."""
        fmt = kw.pop("format", None) or cls.format_for(path)
        name = kw.pop("name", None) or document_name(Path(path).stem)
        return cls(format=fmt, name=name, source=await _read(path, cls.max_bytes), **kw)

    def to_bedrock(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "format": self.format,
            "name": self.name,
            "source": _source_to_bedrock(self.source),
        }
        if self.citations:
            body["citations"] = {"enabled": True}
        return {"document": body}


class VideoBlock(_Media):
    """A video (inline bytes up to what fits 25 MB of base64; larger ones from S3)."""

    formats: ClassVar[tuple[str, ...]] = get_args(VideoFormat)
    suffixes: ClassVar[dict[str, str]] = {"3gp": "three_gp", "mpe": "mpeg"}
    max_bytes: ClassVar[int] = 25 * MiB // 4 * 3
    kind: ClassVar[str] = "video"

    format: VideoFormat
    source: Source
    type: Literal["video"] = "video"

    @classmethod
    async def from_path(cls, path: str | Path, **kw: Any) -> VideoBlock:
        """``await VideoBlock.from_path("clip.mp4")``: the format from the suffix, read off-loop."""
        fmt = kw.pop("format", None) or cls.format_for(path)
        return cls(format=fmt, source=await _read(path, cls.max_bytes), **kw)

    def to_bedrock(self) -> dict[str, Any]:
        return {"video": {"format": self.format, "source": _source_to_bedrock(self.source)}}


class CachePoint(Frozen):
    """A prompt-cache checkpoint: everything before it may be cached (``ttl`` "5m" or "1h")."""

    ttl: Literal["5m", "1h"] | None = None
    type: Literal["cache_point"] = "cache_point"

    def to_bedrock(self) -> dict[str, Any]:
        return {"cachePoint": cache_point(self.ttl)}


def cache_point(ttl: str | None) -> dict[str, Any]:
    """Bedrock's ``CachePointBlock`` body."""
    return {"type": "default"} if ttl is None else {"type": "default", "ttl": ttl}


class GuardContent(Frozen):
    """Text a guardrail evaluates (only this text, when a message holds any)."""

    text: str
    qualifiers: tuple[Literal["grounding_source", "query", "guard_content"], ...] = ()
    type: Literal["guard_content"] = "guard_content"

    def to_bedrock(self) -> dict[str, Any]:
        body: dict[str, Any] = {"text": self.text}
        if self.qualifiers:
            body["qualifiers"] = list(self.qualifiers)
        return {"guardContent": {"text": body}}


def media_from_bedrock(kind: str, body: Any) -> Frozen | None:
    """The typed block for a Bedrock image/document/video/cachePoint/guardContent, or None."""
    if not isinstance(body, dict):
        return None
    try:
        if kind in ("image", "video") and body.keys() == {"format", "source"}:
            source = _source_from_bedrock(body["source"])
            cls = ImageBlock if kind == "image" else VideoBlock
            return None if source is None else cls(format=body["format"], source=source)
        if kind == "document" and body.keys() <= {"format", "name", "source", "citations"}:
            source = _source_from_bedrock(body.get("source") or {})
            if source is None:
                return None
            cited = bool((body.get("citations") or {}).get("enabled"))
            return DocumentBlock(
                format=body["format"], name=body["name"], source=source, citations=cited
            )
        if kind == "cachePoint" and body.keys() <= {"type", "ttl"}:
            return CachePoint(ttl=body.get("ttl"))
        if kind == "guardContent" and body.keys() == {"text"}:
            text = body["text"]
            return GuardContent(text=text["text"], qualifiers=tuple(text.get("qualifiers", ())))
    except (ValueError, TypeError, KeyError):
        return None  # a shape we cannot type is kept verbatim by the caller
    return None
