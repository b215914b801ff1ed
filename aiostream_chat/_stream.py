"""ChatStream: one turn's I/O, deadlines, retries and closing.

The stream is a state machine driven by ``_next()``; it never yields inside a deadline or a
task group. Events decoded from the body wait in a queue and are handed out one by one, so
"has content reached the caller" (which decides whether a retry is allowed) is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal

from ._accumulator import Accumulator
from ._codec import EventStreamDecoder, Frame
from ._error_map import error_from_frame, map_exception
from ._errors import (
    ChatError,
    FirstTokenTimeoutError,
    IdleTimeoutError,
    IncompleteStreamError,
    StreamClosedError,
    StreamDecodeError,
    StreamTimeoutError,
    ThrottlingError,
    TotalTimeoutError,
)
from ._events import (
    CitationDelta,
    ReasoningDelta,
    Retrying,
    StreamEvent,
    TextDelta,
    ToolUseDelta,
    UnknownEvent,
)
from ._limiter import Limiter, Outcome, Permit
from ._models import Message, Metrics, Reply
from ._transport import open_converse_stream

if TYPE_CHECKING:
    from ._config import Timeouts
    from ._retry import RetryPolicy
    from ._transport import RawBody

__all__ = ["RAW_BODY", "ChatStream", "Turn"]

RAW_BODY = "__raw_body__"  # params key: a JSON body that replaces botocore's serialisation

log = logging.getLogger("aiostream_chat")

Status = Literal["pending", "streaming", "completed", "failed", "cancelled"]
_CONTENT = (TextDelta, ToolUseDelta, ReasoningDelta, CitationDelta)


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


class Turn:
    """What a stream needs from its conversation (kept abstract to keep layers pointing down)."""

    def begin(self, stream: ChatStream) -> dict[str, Any]:
        """Claim the conversation and return the request parameters."""
        raise NotImplementedError

    def end(self, stream: ChatStream, reply: Reply | None) -> None:
        """Release the conversation; commit the turn when ``reply`` is given."""
        raise NotImplementedError

    async def client(self) -> Any:
        raise NotImplementedError

    limiter: Limiter | None = None

    async def claim(self, stream: ChatStream) -> dict[str, Any] | None:
        """Before the first attempt: claim shared state; new request parameters, if any."""
        return None

    async def commit(self, stream: ChatStream, reply: Reply) -> None:
        """Before the turn completes: persist it (may raise; then the turn fails)."""


class _Failure:
    """An error frame, queued in order behind the events decoded before it."""

    __slots__ = ("error",)

    def __init__(self, error: ChatError) -> None:
        self.error = error


class _Iterator:
    """One pass over a stream. Dropping it unfinished (``break``) closes the stream at once."""

    __slots__ = ("_pick", "_stream")

    def __init__(self, stream: ChatStream, pick: Callable[[StreamEvent], Any]) -> None:
        self._stream = stream
        self._pick = pick

    def __aiter__(self) -> _Iterator:
        return self

    async def __anext__(self) -> Any:
        while True:
            event = await self._stream._next()
            if event is None:
                raise StopAsyncIteration
            value = self._pick(event)
            if value is not None:
                return value

    def __del__(self) -> None:
        # CPython drops the iterator the moment `async for` is left by break or an exception;
        # closing here is synchronous, so the connection goes at once, not at some later GC.
        self._stream._abandon()


def _text_of(event: StreamEvent) -> str | None:
    return event.text if type(event) is TextDelta and event.text else None


def _event_of(event: StreamEvent) -> StreamEvent:
    return event


class ChatStream:
    """A streamed turn: an async iterator of text, and an async context manager."""

    def __init__(
        self, turn: Turn, user_message: Message, retry: RetryPolicy, timeouts: Timeouts
    ) -> None:
        self._turn = turn
        self._user_message = user_message
        self._retry = retry
        self._timeouts = timeouts
        self._status: Status = "pending"
        self._error: ChatError | None = None
        self._reply: Reply | None = None
        self._queue: deque[StreamEvent | Frame | _Failure] = deque()
        self._text_parts: list[str] = []
        self._delivered_content = False
        self._params: dict[str, Any] = {}
        self._raw_body: bytes | None = None
        self._body: RawBody | None = None
        self._decoder = EventStreamDecoder()
        self._undecoded = b""  # the bytes the decoder holds, to salvage frames on a bad one
        self._acc = Accumulator()
        self._attempt = 0
        self._scope: asyncio.Timeout | None = None  # the deadline of the read in progress
        self._backoff: float | None = None
        self._turn_start = 0.0
        self._attempt_start = 0.0
        self._first_token: float | None = None
        self._request_id: str | None = None
        self._permit: Permit | None = None

    # -- public surface --------------------------------------------------------------------

    @property
    def status(self) -> Status:
        return self._status

    @property
    def error(self) -> ChatError | None:
        return self._error

    @property
    def text(self) -> str:
        """The text delivered to the caller so far."""
        return "".join(self._text_parts)

    @property
    def user_message(self) -> Message:
        return self._user_message

    def __aiter__(self) -> AsyncIterator[str]:
        return _Iterator(self, _text_of)

    def events(self) -> AsyncIterator[StreamEvent]:
        """Every typed event, text included."""
        return _Iterator(self, _event_of)

    async def __aenter__(self) -> ChatStream:
        if self._status == "pending":
            self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the stream; an unfinished turn becomes ``cancelled``. Idempotent."""
        self._abandon()

    async def get_reply(self) -> Reply:
        """Run the turn to its end and return the reply, or raise why it has none."""
        while await self._next() is not None:
            pass
        return self._result()

    # -- the state machine -----------------------------------------------------------------

    def _result(self) -> Reply:
        if self._reply is not None:
            return self._reply
        if self._error is not None:
            raise self._error
        raise StreamClosedError("the stream was closed before the turn completed")

    def _start(self) -> None:
        self._params = self._turn.begin(self)
        self._raw_body = self._params.pop(RAW_BODY, None)
        self._status = "streaming"
        self._turn_start = time.monotonic()
        log.debug("turn started: model=%s", self._params.get("modelId"))

    async def _next(self) -> StreamEvent | None:
        """The next event for the caller; None once the turn completed."""
        if self._status == "pending":
            self._start()
        while not self._queue:
            if self._status != "streaming":
                if self._status == "completed":
                    return None
                return self._result()  # type: ignore[return-value]  # always raises here
            try:
                await self._advance()
            except asyncio.CancelledError:
                self._abandon()
                raise
            except BaseException as exc:
                self._on_error(exc)
        item = self._queue.popleft()
        if isinstance(item, Frame):
            item = self._frame_event(item)
        if isinstance(item, _Failure):
            self._on_error(item.error)
            return await self._next()
        if isinstance(item, _CONTENT) or (
            type(item) is UnknownEvent and item.name == "contentBlockDelta"
        ):
            self._delivered_content = True
            if type(item) is TextDelta:
                self._text_parts.append(item.text)
        return item

    async def _advance(self) -> None:
        """One step: open an attempt, or read and decode the next chunk of the body."""
        if self._body is None:
            await self._open_attempt()
            return
        data = await self._with_deadline(self._body.read())
        self._check_open()  # closed by another task while the read was completing
        if self._permit is not None and data:
            self._permit.admitted()
        if not data:
            reply = self._complete()
            await self._turn.commit(self, reply)
            self._check_open()
            self._finish(reply)
            return
        try:
            frames = self._decode(data)
        except StreamDecodeError as exc:
            # Frames that arrived intact before the bad one in the same chunk still count:
            # the caller gets them (so partial_text is exact), then the error.
            frames = _salvage(self._undecoded + data)
            self._undecoded = b""
            self._queue.extend(frames)
            self._queue.append(_Failure(exc))  # dropped if an error frame before it fails first
            return
        # Frames become events one by one as the caller takes them: a burst of a thousand
        # frames is then a thousand untracked tuples, not a thousand live models that the
        # garbage collector promotes (and later scans) while they wait.
        self._queue.extend(frames)

    def _decode(self, data: bytes) -> list[Frame]:
        frames = self._decoder.feed(data)
        pending = self._decoder.pending
        if not pending:
            self._undecoded = b""
        elif pending <= len(data):
            self._undecoded = data[-pending:]
        else:
            self._undecoded += data
        return frames

    def _frame_event(self, frame: Frame) -> StreamEvent | _Failure:
        """The event a frame stands for, or the failure it reports."""
        headers = frame.headers
        if headers.get(":message-type") != "event":
            return _Failure(error_from_frame(frame, self._request_id))
        try:
            payload = _loads(frame.payload)
        except ValueError as exc:
            error = StreamDecodeError(f"an event's payload is not valid JSON: {exc}")
            error.__cause__ = exc
            return _Failure(error)
        if not isinstance(payload, dict):
            return _Failure(StreamDecodeError("an event's payload is not a JSON object"))
        payload.pop("p", None)
        started = self._acc.content_started
        try:
            event = self._acc.handle(str(headers.get(":event-type")), payload)
        except ChatError as exc:  # e.g. a finished tool call whose input is not JSON
            return _Failure(exc)
        except (KeyError, TypeError, ValueError) as exc:
            name = str(headers.get(":event-type"))
            error = StreamDecodeError(f"a malformed {name} event: {exc!r}")
            error.__cause__ = exc
            return _Failure(error)
        if not started and self._acc.content_started:
            self._first_token = time.monotonic() - self._attempt_start
        return event

    async def _open_attempt(self) -> None:
        if self._attempt == 0 and (params := await self._turn.claim(self)) is not None:
            self._params = params
            self._raw_body = self._params.pop(RAW_BODY, None)
        if self._backoff is not None:
            delay, self._backoff = self._backoff, None
            await self._with_deadline(asyncio.sleep(delay), backoff=True)
        self._attempt += 1
        self._decoder = EventStreamDecoder()
        self._undecoded = b""
        self._acc = Accumulator()
        self._first_token = None
        client = await self._turn.client()
        self._check_open()  # closed by another task while the client was being created
        limiter = self._turn.limiter
        if limiter is not None:
            self._permit = await limiter.acquire(retry=self._attempt > 1)
            self._check_open()
        # The attempt (and its first-token clock) starts with the request, not with creating
        # the client on first use, which is local setup and not time spent waiting on Bedrock.
        self._attempt_start = time.monotonic()
        body = await self._with_deadline(open_converse_stream(client, self._params, self._raw_body))
        if self._status != "streaming":  # closed by another task as the headers came in
            body.close()
            raise StreamClosedError("the stream was closed")
        self._body = body
        self._request_id = body.request_id

    def _check_open(self) -> None:
        if self._status != "streaming":
            raise StreamClosedError("the stream was closed")

    def _deadline(self, backoff: bool) -> tuple[float | None, type[StreamTimeoutError]]:
        t = self._timeouts
        best: tuple[float | None, type[StreamTimeoutError]] = (None, TotalTimeoutError)
        options: list[tuple[float, type[StreamTimeoutError]]] = []
        if t.total is not None:
            options.append((self._turn_start + t.total, TotalTimeoutError))
        if not backoff:
            if not self._acc.content_started:
                if t.first_token is not None:
                    options.append((self._attempt_start + t.first_token, FirstTokenTimeoutError))
            elif t.idle is not None:
                options.append((time.monotonic() + t.idle, IdleTimeoutError))
        for option in options:
            if best[0] is None or option[0] < best[0]:
                best = option
        return best

    async def _with_deadline(self, awaitable: Any, backoff: bool = False) -> Any:
        """Await one read (or the backoff sleep) under the nearest deadline.

        The scope is also how ``aclose()`` from another task interrupts the wait at once.
        """
        deadline, error = self._deadline(backoff)
        loop_deadline = None
        if deadline is not None:
            loop_deadline = asyncio.get_running_loop().time() + (deadline - time.monotonic())
        try:
            async with asyncio.timeout_at(loop_deadline) as scope:
                self._scope = scope
                try:
                    return await awaitable
                finally:
                    self._scope = None
        except TimeoutError as exc:
            if not scope.expired():
                raise
            self._check_open()
            what = {
                TotalTimeoutError: "the turn's total time budget ran out",
                FirstTokenTimeoutError: "no content arrived within the first-token timeout",
                IdleTimeoutError: "the stream was idle for longer than the idle timeout",
            }
            raise error(what.get(error, "timed out")) from exc

    def _complete(self) -> Reply:
        """The body ended cleanly: the turn completes only if messageStop came."""
        if self._decoder.pending or self._acc.stop is None:
            raise IncompleteStreamError(
                f"the stream ended without messageStop ({self._decoder.pending} bytes pending)"
            )
        self._close_body()
        now = time.monotonic()
        metrics = Metrics(
            time_to_first_token=self._first_token,
            duration=now - self._turn_start,
            attempts=self._attempt,
        )
        reply = self._acc.reply(metrics=metrics, request_id=self._request_id)
        self._release_permit("completed", reply.usage.total_tokens)
        return reply

    def _finish(self, reply: Reply) -> None:
        self._reply = reply
        metrics = reply.metrics
        self._status = "completed"
        self._turn.end(self, self._reply)
        log.debug("turn completed: attempts=%d duration=%.3fs", self._attempt, metrics.duration)

    def _on_error(self, exc: BaseException) -> None:
        """Retry when allowed; otherwise fail the turn and raise its error."""
        self._close_body()
        if self._status == "cancelled":
            raise StreamClosedError("the stream was closed") from exc
        error = map_exception(exc, content_started=self._acc.content_started)
        self._release_permit("throttled" if isinstance(error, ThrottlingError) else "failed")
        if error is None:  # not a failure we know: still never leave the turn open
            self._settle("failed")
            raise exc
        if error.request_id is None:
            error.request_id = self._request_id
        error.attempts = self._attempt
        error.partial_text = self.text
        if self._can_retry(error):
            return
        self._error = error
        self._settle("failed")
        log.debug("turn failed after %d attempt(s): %r", self._attempt, error)
        if error is exc:
            raise error
        raise error from exc

    def _can_retry(self, error: ChatError) -> bool:
        if not error.retryable or self._delivered_content:
            return False
        if self._attempt >= self._retry.max_attempts:
            return False
        delay = self._retry.delay(self._attempt)
        total = self._timeouts.total
        if total is not None and time.monotonic() + delay >= self._turn_start + total:
            return False
        self._queue.clear()
        self._backoff = delay
        self._queue.append(Retrying(attempt=self._attempt + 1, delay=delay, error=error))
        log.info(
            "retrying in %.2fs (attempt %d of %d) after %s",
            delay,
            self._attempt + 1,
            self._retry.max_attempts,
            type(error).__name__,
        )
        return True

    def _release_permit(self, outcome: Outcome, tokens: int = 0) -> None:
        permit, self._permit = self._permit, None
        if permit is not None:
            permit.release(outcome, tokens)

    def _close_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()

    def _interrupt(self) -> None:
        """Wake a read, request or backoff sleep another task is awaiting on this stream."""
        scope, self._scope = self._scope, None
        if scope is None or scope.expired():
            return
        # No running loop (garbage collection at exit): nothing can be waiting.
        with contextlib.suppress(RuntimeError):
            scope.reschedule(asyncio.get_running_loop().time())

    def _settle(self, status: Status) -> None:
        self._status = status
        self._queue.clear()
        self._turn.end(self, None)

    def _abandon(self) -> None:
        """Close now, synchronously: the connection is dropped and the turn is cancelled."""
        self._interrupt()
        self._close_body()
        self._release_permit("failed")
        if self._status in ("pending", "streaming"):
            was_started = self._status == "streaming"
            self._status = "cancelled"
            self._queue.clear()
            if was_started:
                self._turn.end(self, None)
                log.debug("turn cancelled after %d attempt(s)", self._attempt)


def _salvage(data: bytes) -> list[Frame]:
    """The intact frames at the start of ``data``, which the decoder rejected as a whole.

    Each frame starts with its total length (u32, big-endian); each is decoded on its own
    until the first that fails.
    """
    frames: list[Frame] = []
    pos = 0
    while len(data) - pos >= 4:
        end = pos + int.from_bytes(data[pos : pos + 4], "big")
        if end <= pos or end > len(data):
            break
        try:
            decoded = EventStreamDecoder().feed(data[pos:end])
        except StreamDecodeError:
            break
        if len(decoded) != 1:
            break
        frames.extend(decoded)
        pos = end
    return frames
