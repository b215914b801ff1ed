"""One HTTP attempt of a model call: open, read, decode, accumulate, close.

Each attempt starts from nothing (a new decoder, a new accumulator, its own first-token clock),
so a retry never inherits state from the attempt it replaces. The stream awaits ``open()`` and
``read()`` under its deadlines; everything else here is synchronous.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ._accumulator import Accumulator
from ._codec import EventStreamDecoder, Frame
from ._error_map import error_from_frame
from ._errors import ChatError, IncompleteStreamError, StreamDecodeError
from ._models import Metrics, Reply
from ._transport import open_stream

if TYPE_CHECKING:
    from ._events import StreamEvent
    from ._limiter import Outcome, Permit
    from ._request import Request
    from ._transport import RawBody

__all__ = ["Attempt", "Failure"]

_scan = json.JSONDecoder().raw_decode


def _loads(payload: bytes) -> Any:
    """``json.loads`` for an event payload, minus its encoding sniffing and whitespace passes
    in the common case (a UTF-8 JSON object with nothing around it)."""
    try:
        text = payload.decode()
        value, end = _scan(text)
    except ValueError:
        return json.loads(payload)  # the same error as before (or a UTF-16/32 payload)
    return value if end == len(text) else json.loads(payload)


class Failure:
    """An error the body reported, queued in order behind the events decoded before it."""

    __slots__ = ("error",)

    def __init__(self, error: ChatError) -> None:
        self.error = error


class Attempt:
    """One request and the body it streams back."""

    __slots__ = (
        "_acc",
        "_body",
        "_decoder",
        "_permit",
        "first_token",
        "number",
        "request_id",
        "started",
    )

    def __init__(self, number: int, permit: Permit | None = None) -> None:
        self.number = number
        """1 for the first attempt of a turn."""
        self.started = time.monotonic()
        self.first_token: float | None = None
        """Seconds from ``started`` to the first content of this attempt."""
        self.request_id: str | None = None
        self._body: RawBody | None = None
        self._decoder = EventStreamDecoder()
        self._acc = Accumulator()
        self._permit = permit  # a limiter's slot, given back with the outcome when this ends

    @property
    def content_started(self) -> bool:
        return self._acc.content_started

    @property
    def server_latency_ms(self) -> int | None:
        """The latency Bedrock reported in ``metadata``, once it came."""
        meta = self._acc.metadata
        return None if meta is None else meta.server_latency_ms

    @property
    def is_open(self) -> bool:
        return self._body is not None

    async def open(self, client: Any, request: Request) -> None:
        """Send the request; returns once Bedrock answered 200 (errors raise botocore's)."""
        self._body = body = await open_stream(client, request)
        self.request_id = body.request_id

    def read(self) -> Awaitable[bytes]:
        """The next bytes of the body; ``b""`` at its end."""
        assert self._body is not None
        return self._body.read()

    def decode(self, data: bytes) -> list[Frame | Failure]:
        """The frames ``data`` completes; a corrupt one ends the list with its failure.

        Frames that arrived intact before the bad one still count: the caller gets them (so
        ``partial_text`` is exact), then the error.
        """
        if self._permit is not None:
            self._permit.admitted()  # Bedrock answered: this attempt is streaming
        try:
            return self._decoder.feed(data)  # type: ignore[return-value]  # a list is invariant
        except StreamDecodeError as exc:
            items: list[Frame | Failure] = [*exc.frames, Failure(exc)]
            return items

    def event(self, frame: Frame) -> StreamEvent | Failure:
        """The event a frame stands for, or the failure it reports."""
        headers = frame.headers
        if headers.get(":message-type") != "event":
            return Failure(error_from_frame(frame, self.request_id))
        name = str(headers.get(":event-type"))
        try:
            payload = _loads(frame.payload)
        except ValueError as exc:
            return _malformed(f"an event's payload is not valid JSON: {exc}", exc)
        if not isinstance(payload, dict):
            return Failure(StreamDecodeError("an event's payload is not a JSON object"))
        payload.pop("p", None)
        acc = self._acc
        started = acc.content_started
        try:
            event = acc.handle(name, payload)
        except ChatError as exc:  # e.g. a finished tool call whose input is not JSON
            return Failure(exc)
        except (KeyError, TypeError, ValueError) as exc:
            return _malformed(f"a malformed {name} event: {exc!r}", exc)
        if not started and acc.content_started:
            self.first_token = time.monotonic() - self.started
        return event

    def finish(self, metrics: Metrics) -> Reply:
        """The reply, once the body ended cleanly; only a stream with messageStop completes."""
        pending = self._decoder.pending
        if pending or self._acc.stop is None:
            raise IncompleteStreamError(
                f"the stream ended without messageStop ({pending} bytes pending)"
            )
        reply = self._acc.reply(metrics=metrics, request_id=self.request_id)
        self._close("completed", reply.usage.total_tokens)
        return reply

    def close(self, outcome: Outcome = "failed") -> None:
        """Drop the connection now if the body is still open (never pooled half-read)."""
        self._close(outcome, 0)

    def _close(self, outcome: Outcome, tokens: int) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()
        permit, self._permit = self._permit, None
        if permit is not None:
            permit.release(outcome, tokens)


def _malformed(message: str, cause: Exception) -> Failure:
    error = StreamDecodeError(message)
    error.__cause__ = cause
    return Failure(error)
