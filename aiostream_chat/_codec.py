"""The `application/vnd.amazon.eventstream` wire format: an incremental decoder and an encoder.

A message is ``u32 total | u32 headers_len | u32 crc32(prelude) | headers | payload |
u32 crc32(everything before it)``, all big-endian. A header is ``u8 name_len, name, u8 type,
value``. This module knows nothing about Bedrock; it turns bytes into ``Frame`` objects.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import struct
import uuid
from dataclasses import dataclass
from typing import Any, Final, NamedTuple
from zlib import crc32

from ._errors import StreamDecodeError

__all__ = ["EventStreamDecoder", "Frame", "HeaderValue", "encode_frame", "split_frames"]

PRELUDE_LENGTH: Final = 12
MIN_MESSAGE_LENGTH: Final = PRELUDE_LENGTH + 4
MAX_HEADERS_LENGTH: Final = 128 * 1024
MAX_PAYLOAD_LENGTH: Final = 24 * 1024 * 1024
_MAX_KNOWN_HEADERS: Final = 256  # distinct header blocks remembered (timestamps would vary)
# Header blocks seen before, parsed: Bedrock repeats the same three headers in every event of a
# kind, so most frames skip header parsing (the hot path of a stream). Shared by all decoders.
_known_headers: dict[bytes, dict[str, Header]] = {}

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")

# Header value type codes.
TRUE, FALSE, BYTE, SHORT, INTEGER, LONG, BYTES, STRING, TIMESTAMP, UUID = range(10)
_FIXED = {BYTE: _I8, SHORT: _I16, INTEGER: _I32, LONG: _I64}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Header = bool | int | bytes | str | dt.datetime | uuid.UUID


@dataclass(frozen=True, slots=True)
class HeaderValue:
    """A header value with an explicit wire type, for the encoder (e.g. an int8 or int64)."""

    type: int
    value: Any


class Frame(NamedTuple):
    """One decoded event-stream message.

    A named tuple rather than a dataclass: the collector untracks a tuple of untracked values
    at its first pass, so a burst of decoded frames is never promoted to older generations.
    """

    headers: dict[str, Header]
    payload: bytes


def _parse_headers(data: bytes | memoryview) -> dict[str, Header]:
    headers: dict[str, Header] = {}
    pos, end = 0, len(data)
    try:
        while pos < end:
            name_len = data[pos]
            name = bytes(data[pos + 1 : pos + 1 + name_len]).decode("utf-8")
            pos += 1 + name_len
            kind = data[pos]
            pos += 1
            value: Header
            if kind in (STRING, BYTES):
                (length,) = _U16.unpack_from(data, pos)
                pos += 2
                raw = bytes(data[pos : pos + length])
                if len(raw) != length:
                    raise StreamDecodeError("header value runs past the header block")
                pos += length
                value = raw.decode("utf-8") if kind == STRING else raw
            elif kind in (TRUE, FALSE):
                value = kind == TRUE
            elif kind in _FIXED:
                fmt = _FIXED[kind]
                (value,) = fmt.unpack_from(data, pos)
                pos += fmt.size
            elif kind == TIMESTAMP:
                (millis,) = _I64.unpack_from(data, pos)
                pos += 8
                value = _EPOCH + dt.timedelta(milliseconds=millis)
            elif kind == UUID:
                raw = bytes(data[pos : pos + 16])
                if len(raw) != 16:
                    raise StreamDecodeError("header value runs past the header block")
                value = uuid.UUID(bytes=raw)
                pos += 16
            else:
                raise StreamDecodeError(f"unknown header value type {kind}")
            if name in headers:
                raise StreamDecodeError(f"duplicate header {name!r}")
            headers[name] = value
    except (struct.error, IndexError, UnicodeDecodeError, OverflowError) as exc:
        raise StreamDecodeError(f"malformed event-stream headers: {exc}") from exc
    if pos != end:
        raise StreamDecodeError("header value runs past the header block")
    return headers


class EventStreamDecoder:
    """Turns a byte stream, split at any boundary, into frames.

    ``feed()`` returns the frames completed by the new bytes. Anything malformed raises
    ``StreamDecodeError``, whose ``frames`` are those decoded intact before the bad one in
    that call, and leaves the decoder unusable.
    """

    __slots__ = ("_broken", "_buffer")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._broken = False

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        if self._broken:
            raise StreamDecodeError("the decoder already failed")
        if self._buffer:
            self._buffer += data
            source: bytes | bytearray | memoryview = self._buffer
        else:
            source = data  # fast path: whole frames straight from the network chunk
        try:
            frames, used = self._parse(source)
        except StreamDecodeError:
            self._broken = True
            raise
        if source is self._buffer:
            del self._buffer[:used]
        elif used < len(data):
            self._buffer += memoryview(data)[used:]
        return frames

    @staticmethod
    def _parse(
        data: bytes | bytearray | memoryview, ends: list[int] | None = None
    ) -> tuple[list[Frame], int]:
        """The whole frames at the start of ``data`` and the bytes they span.

        The one walk over frame lengths in the package; ``ends`` (when given) collects the
        offset where each frame ends.
        """
        frames: list[Frame] = []
        pos, size = 0, len(data)
        known = _known_headers
        unpack_prelude, unpack_u32 = _PRELUDE.unpack_from, _U32.unpack_from
        view = memoryview(data)
        try:
            while size - pos >= PRELUDE_LENGTH:
                total, headers_len, prelude_crc = unpack_prelude(data, pos)
                if crc32(view[pos : pos + 8]) != prelude_crc:
                    raise StreamDecodeError("event-stream prelude checksum mismatch")
                if headers_len > MAX_HEADERS_LENGTH:
                    raise StreamDecodeError(f"header block of {headers_len} bytes is too large")
                payload_len = total - headers_len - MIN_MESSAGE_LENGTH
                if payload_len < 0:
                    raise StreamDecodeError(f"message length {total} is too small")
                if payload_len > MAX_PAYLOAD_LENGTH:
                    raise StreamDecodeError(f"payload of {payload_len} bytes is too large")
                if size - pos < total:
                    break
                end = pos + total - 4
                # The message CRC covers the prelude too: continue from the prelude's CRC.
                if crc32(view[pos + 8 : end], prelude_crc) != unpack_u32(data, end)[0]:
                    raise StreamDecodeError("event-stream message checksum mismatch")
                headers_start = pos + PRELUDE_LENGTH
                headers_end = headers_start + headers_len
                block = bytes(view[headers_start:headers_end])
                headers = known.get(block)
                if headers is None:
                    headers = _parse_headers(block)
                    if len(known) >= _MAX_KNOWN_HEADERS:
                        known.clear()
                    known[block] = headers
                frames.append(Frame(headers.copy(), bytes(view[headers_end:end])))
                pos += total
                if ends is not None:
                    ends.append(pos)
        except StreamDecodeError as exc:
            exc.frames = frames
            raise
        finally:
            view.release()
        return frames, pos


def split_frames(body: bytes) -> list[bytes]:
    """Cut a body at frame boundaries; whatever does not decode stays one last part."""
    ends: list[int] = []
    # A bad frame ends the walk: the parts before it are cut, the rest stays whole.
    with contextlib.suppress(StreamDecodeError):
        EventStreamDecoder._parse(body, ends)
    parts, start = [], 0
    for end in ends:
        parts.append(body[start:end])
        start = end
    if start < len(body):
        parts.append(body[start:])
    return parts


def _encode_header(name: str, given: Header | HeaderValue) -> bytes:
    value: Any = given
    raw_name = name.encode("utf-8")
    if len(raw_name) > 255:
        raise ValueError(f"header name {name!r} is longer than 255 bytes")
    if isinstance(value, HeaderValue):
        kind, value = value.type, value.value
    elif isinstance(value, bool):
        kind = TRUE if value else FALSE
    elif isinstance(value, int):
        kind = INTEGER if -(2**31) <= value < 2**31 else LONG
    elif isinstance(value, bytes):
        kind = BYTES
    elif isinstance(value, str):
        kind = STRING
    elif isinstance(value, dt.datetime):
        kind = TIMESTAMP
    elif isinstance(value, uuid.UUID):
        kind = UUID
    else:
        raise TypeError(f"cannot encode header {name!r} of type {type(value).__name__}")
    out = bytes([len(raw_name)]) + raw_name + bytes([kind])
    if kind in (TRUE, FALSE):
        return out
    if kind in _FIXED:
        return out + _FIXED[kind].pack(value)
    if kind in (STRING, BYTES):
        raw = value.encode("utf-8") if kind == STRING else bytes(value)
        return out + _U16.pack(len(raw)) + raw
    if kind == TIMESTAMP:
        millis = value if isinstance(value, int) else round((value - _EPOCH).total_seconds() * 1000)
        return out + _I64.pack(millis)
    if kind == UUID:
        return out + (value.bytes if isinstance(value, uuid.UUID) else bytes(value))
    raise ValueError(f"unknown header value type {kind}")


def encode_frame(headers: dict[str, Header | HeaderValue], payload: bytes = b"") -> bytes:
    """Encode one event-stream message."""
    try:
        header_block = b"".join(_encode_header(name, value) for name, value in headers.items())
    except struct.error as exc:
        raise ValueError(f"header value out of range: {exc}") from exc
    if len(header_block) > MAX_HEADERS_LENGTH:
        raise ValueError(f"header block of {len(header_block)} bytes is too large")
    total = MIN_MESSAGE_LENGTH + len(header_block) + len(payload)
    prelude = _U32.pack(total) + _U32.pack(len(header_block))
    message = prelude + _U32.pack(crc32(prelude)) + header_block + payload
    return message + _U32.pack(crc32(message))
