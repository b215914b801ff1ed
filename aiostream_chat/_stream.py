"""ChatStream: one turn's rounds, attempts, deadlines, retries and closing.

The stream holds the turn (the queue of events for the caller, the retry gate, the rounds and
one outcome); each HTTP attempt is an ``Attempt`` built afresh from the round's request. Every
await of the stream goes through ``_guarded()``, under the nearest deadline (``_deadline``), so
``aclose()`` from any task interrupts whatever the stream is waiting on. Events wait in a queue
and are handed out one by one, so "has content reached the caller" (which decides whether a
retry is allowed) is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from . import _observe
from ._attempt import Attempt, Failure
from ._codec import Frame
from ._deadline import Watchdog, nearest
from ._error_map import map_exception
from ._errors import (
    ChatError,
    FirstTokenTimeoutError,
    IdleTimeoutError,
    StreamClosedError,
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
from ._iterator import StreamIterator, event_of, text_of
from ._models import Message, Metrics, Reply
from ._observe import TurnInfo, TurnObserver
from ._outcome import CANCELLED, PENDING, STREAMING, Outcome, Status, completed, failed
from ._tool_loop import Loop
from ._turn import Turn

if TYPE_CHECKING:
    from ._config import Timeouts
    from ._request import Request
    from ._retry import RetryPolicy

__all__ = ["ChatStream"]

log = logging.getLogger("aiostream_chat")
T = TypeVar("T")

_CONTENT = (TextDelta, ToolUseDelta, ReasoningDelta, CitationDelta)
_NOT_OBSERVED = contextlib.nullcontext()  # reusable: it holds no state
_WHY = {
    TotalTimeoutError: "the turn's total time budget ran out",
    FirstTokenTimeoutError: "no content arrived within the first-token timeout",
    IdleTimeoutError: "the stream was idle for longer than the idle timeout",
}


class ChatStream:
    """A streamed turn: an async iterator of text, and an async context manager."""

    def __init__(
        self, turn: Turn, retry: RetryPolicy, timeouts: Timeouts, loop: Loop | None = None
    ) -> None:
        self._turn = turn
        self._retry = retry
        self._timeouts = timeouts
        self._outcome: Outcome = PENDING
        self._queue: deque[StreamEvent | Frame | Failure] = deque()
        self._text_parts: list[str] = []
        # The rounds: tool calls between them, the structured answer, the messages added.
        self._loop = loop if loop is not None else Loop(turn.user_message, ())
        self._added: list[Message] = self._loop.messages
        self._request: Request | None = None
        self._round = 0
        self._attempt: Attempt | None = None
        self._attempts = 0  # over the whole turn
        self._round_attempts = 0  # of the current round: the retry budget is per round
        self._delivered = False  # content of the current round reached the caller
        self._backoff: float | None = None
        self._watchdog = Watchdog()  # the deadline of the await in progress
        self._reader: asyncio.Task[Any] | None = None
        self._turn_start = 0.0
        self._observer: TurnObserver | None = None
        self._observed_round = -1  # the last round whose call_started the observer got

    # -- public surface --------------------------------------------------------------------

    @property
    def status(self) -> Status:
        return self._outcome.status

    @property
    def error(self) -> ChatError | None:
        return self._outcome.error

    @property
    def text(self) -> str:
        """The text delivered to the caller so far."""
        return "".join(self._text_parts)

    @property
    def user_message(self) -> Message:
        return self._turn.user_message

    def __aiter__(self) -> AsyncIterator[str]:
        return StreamIterator(self, text_of)

    async def __anext__(self) -> str:
        """The next text chunk (``await anext(stream)``); closes nothing if left unused."""
        text: str = await self._take(text_of)
        return text

    def events(self) -> AsyncIterator[StreamEvent]:
        """Every typed event, text included."""
        return StreamIterator(self, event_of)

    async def __aenter__(self) -> ChatStream:
        if self._outcome is PENDING:
            await self._start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the stream; an unfinished turn becomes ``cancelled``. Idempotent.

        Tool calls still running are cancelled; this waits for them at most ``CANCEL_GRACE``
        (1 s) and leaves any that ignore cancellation running detached.
        """
        tools = self._loop.tools
        self._abandon()
        if tools is not None:
            await tools.aclose()

    async def get_reply(self) -> Reply:
        """Run the turn to its end and return the reply, or raise why it has none."""
        self._claim_reader()
        try:
            while await self._next() is not None:
                pass
        finally:
            self._reader = None
        return self._result()

    # -- the turn --------------------------------------------------------------------------

    def _result(self) -> Reply:
        outcome = self._outcome
        if outcome.reply is not None:
            return outcome.reply
        if outcome.error is not None:
            raise outcome.error
        raise StreamClosedError("the stream was closed before the turn completed")

    async def _start(self) -> None:
        await self._turn.begin()
        try:
            self._request = self._turn.request(self._added)
        except BaseException:
            self._turn.release()
            raise
        self._outcome = STREAMING
        self._turn_start = time.monotonic()
        factory = _observe.observer_factory
        if factory is not None:
            self._observer = factory(TurnInfo(self._turn.model_id, self._turn.endpoint_url()))
        if log.isEnabledFor(logging.DEBUG):  # every turn: skip building the extras
            log.debug("turn started: model=%s", self._turn.model_id, extra=self._log_fields())

    async def _take(self, pick: Callable[[StreamEvent], T | None]) -> T:
        """The next event ``pick`` accepts (as it maps it); StopAsyncIteration at the end."""
        self._claim_reader()
        try:
            while True:
                event = await self._next()
                if event is None:
                    raise StopAsyncIteration
                value = pick(event)
                if value is not None:
                    return value
        finally:
            self._reader = None

    def _claim_reader(self) -> None:
        reader = asyncio.current_task()
        if self._reader is not None and self._reader is not reader:
            raise RuntimeError("another task is already reading this stream (one consumer)")
        self._reader = reader

    async def _next(self) -> StreamEvent | None:
        """The next event for the caller; None once the turn completed."""
        if self._outcome is PENDING:
            await self._start()
        queue = self._queue
        while True:
            while not queue:
                if self._outcome is not STREAMING:
                    if self._outcome.reply is not None:
                        return None
                    return self._result()  # type: ignore[return-value]  # always raises here
                try:
                    await self._advance()
                except asyncio.CancelledError:
                    self._abandon()
                    raise
                except BaseException as exc:
                    self._on_error(exc)
            item = queue.popleft()
            if type(item) is Frame:
                item = self._attempt.event(item)  # type: ignore[union-attr]  # set with frames
            if type(item) is Failure:
                self._on_error(item.error)
                continue
            if isinstance(item, _CONTENT) or (
                type(item) is UnknownEvent and item.name == "contentBlockDelta"
            ):
                if not self._delivered:  # the round's first chunk reached the caller
                    self._delivered = True
                    self._first_chunk()
                if type(item) is TextDelta:
                    self._text_parts.append(item.text)
            if self._loop.output is not None:
                delta = self._loop.observe(item)  # type: ignore[arg-type]  # an event by now
                if delta is not None:
                    queue.appendleft(delta)
            return item  # type: ignore[return-value]  # frames and failures handled above

    async def _advance(self) -> None:
        """One step: open an attempt, read the next chunk of the body, or await a tool call."""
        if self._loop.tools is not None:
            finished = await self._guarded(self._loop.next_tool_result(), None)
            if finished is None:  # every call ended: the next round sends their results
                self._request = self._turn.request(self._added)
                self._round += 1
            else:
                self._queue.append(finished)
            return
        attempt = self._attempt
        if attempt is None or not attempt.is_open:
            await self._open_attempt()
            return
        data = await self._guarded(attempt.read(), attempt)
        if not data:
            await self._end_of_body(attempt)
            return
        # Frames become events one by one as the caller takes them: a burst of a thousand
        # frames is then a thousand untracked tuples, not a thousand live models that the
        # garbage collector promotes (and later scans) while they wait.
        self._queue.extend(attempt.decode(data))

    async def _open_attempt(self) -> None:
        if self._backoff is not None:
            delay, self._backoff = self._backoff, None
            await self._guarded(asyncio.sleep(delay), None)
        client = self._turn.ready_client()
        if client is None:
            client = await self._guarded(self._turn.client(), None)
        limiter = self._turn.limiter
        permit = None  # the limiter's slot for this attempt, given back when it ends
        if limiter is not None:
            permit = await self._guarded(limiter.acquire(retry=self._attempts > 0), None)
        # The attempt (and its first-token clock) starts with the request, not with creating
        # the client on first use, which is local setup and not time spent waiting on Bedrock.
        self._attempts += 1
        self._round_attempts += 1
        self._loop.start_round()
        self._attempt = attempt = Attempt(self._attempts, permit)
        assert self._request is not None
        if self._observer is not None and self._observed_round != self._round:
            self._observed_round = self._round
            self._observer.call_started(self._round, self._request)
        sending = _NOT_OBSERVED if self._observer is None else self._observer.sending()
        with sending:
            await self._guarded(attempt.open(client, self._request), attempt)

    async def _end_of_body(self, attempt: Attempt) -> None:
        """The body ended cleanly: the round completes only if messageStop came.

        Then the turn completes, or the next round starts (after the tools it asked for).
        """
        metrics = Metrics(
            server_latency_ms=attempt.server_latency_ms,
            time_to_first_token=attempt.first_token,
            duration=time.monotonic() - self._turn_start,
            attempts=self._round_attempts,
        )
        reply = attempt.finish(metrics)
        self._end_call(reply, None)
        try:
            final = self._loop.after_round(reply)  # ToolLoopError, OutputValidationError
            if final is not None:
                await self._turn.commit(tuple(self._added), final)
        except ChatError as error:  # also: a store that lost the compare-and-set
            error.request_id = error.request_id or attempt.request_id
            error.attempts, error.partial_text = self._attempts, self.text
            self._finish(failed(error))
            raise
        if final is None:  # another round, after the tool calls (if any) it asked for
            self._round_attempts = 0
            self._delivered = False  # a retry is allowed again until this round's content
            observe = self._observer.tool_call if self._observer is not None else None
            self._queue.extend(self._loop.start_tools(observe))
            if self._loop.tools is None:
                self._request = self._turn.request(self._added)
                self._round += 1
            return
        self._finish(completed(final))
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "turn completed: attempts=%d duration=%.3fs",
                self._attempts,
                metrics.duration,
                extra=self._log_fields(final.request_id),
            )

    # -- deadlines and cancellation --------------------------------------------------------

    async def _guarded(self, awaitable: Awaitable[T], attempt: Attempt | None) -> T:
        """Await under the nearest deadline; ``aclose()`` from any task interrupts it."""
        if attempt is None:
            deadline, error = nearest(self._timeouts, self._turn_start, None, False)
        else:
            deadline, error = nearest(
                self._timeouts, self._turn_start, attempt.started, attempt.content_started
            )
        watchdog = self._watchdog
        watchdog.enter(deadline)
        try:
            result = await awaitable
        except BaseException as exc:
            why = watchdog.leave()
            if why is None:
                raise
            self._interrupted(why, error, exc)
        why = watchdog.leave()
        if why is not None:  # the awaitable swallowed the cancellation
            self._interrupted(why, error, None)
        if self._outcome is not STREAMING:  # closed by another task as the await completed
            raise StreamClosedError("the stream was closed")
        return result

    @staticmethod
    def _interrupted(
        why: str, error: type[StreamTimeoutError], exc: BaseException | None
    ) -> NoReturn:
        if why == "closed":
            raise StreamClosedError("the stream was closed") from exc
        timeout = TimeoutError(_WHY[error])
        timeout.__cause__ = exc
        raise error(_WHY[error]) from timeout

    # -- endings ---------------------------------------------------------------------------

    def _on_error(self, exc: BaseException) -> None:
        """Retry when allowed; otherwise fail the turn and raise its error."""
        attempt = self._attempt
        started = attempt is not None and attempt.content_started
        error = map_exception(exc, content_started=started)
        if attempt is not None:
            attempt.close("throttled" if isinstance(error, ThrottlingError) else "failed")
        if self._outcome is CANCELLED:
            raise StreamClosedError("the stream was closed") from exc
        if self._outcome.finished:  # the turn already settled on this error
            raise exc
        if error is None:  # not a failure we know: still never leave the turn open
            wrapped = ChatError(f"unexpected error: {exc!r}")
            wrapped.__cause__ = exc
            self._fail(wrapped)
            raise exc
        if error.request_id is None and attempt is not None:
            error.request_id = attempt.request_id
        error.attempts = self._attempts
        error.partial_text = self.text
        if self._can_retry(error):
            return
        self._fail(error)
        log.debug(
            "turn failed after %d attempt(s): %r",
            self._attempts,
            error,
            extra=self._log_fields(error.request_id),
        )
        if error is exc:
            raise error
        raise error from exc

    def _can_retry(self, error: ChatError) -> bool:
        if not error.retryable or self._delivered:
            return False
        if self._round_attempts >= self._retry.max_attempts:
            return False
        delay = self._retry.delay(self._round_attempts)
        total = self._timeouts.total
        if total is not None and time.monotonic() + delay >= self._turn_start + total:
            return False
        self._queue.clear()
        self._backoff = delay
        self._queue.append(Retrying(attempt=self._round_attempts + 1, delay=delay, error=error))
        if self._observer is not None:
            self._observer.retrying(self._round_attempts + 1, delay, error)
        log.info(
            "retrying in %.2fs (attempt %d of %d) after %s",
            delay,
            self._round_attempts + 1,
            self._retry.max_attempts,
            type(error).__name__,
            extra=self._log_fields(error.request_id),
        )
        return True

    def _log_fields(self, request_id: str | None = None) -> dict[str, Any]:
        """The ``extra`` of every log record: the request id and the model id, never content."""
        if request_id is None and self._attempt is not None:
            request_id = self._attempt.request_id
        return {"request_id": request_id, "model_id": self._turn.model_id}

    def _first_chunk(self) -> None:
        """Tell the observer the call's time to first chunk (whether it then completes or not)."""
        attempt = self._attempt
        if self._observer is not None and attempt is not None and attempt.first_token is not None:
            self._observer.first_chunk(attempt.first_token)

    def _end_call(self, reply: Reply | None, error: ChatError | None) -> None:
        if self._observer is not None:
            self._observer.call_ended(reply, error)

    def _fail(self, error: ChatError) -> None:
        self._end_call(None, error)
        self._finish(failed(error))

    def _finish(self, outcome: Outcome) -> None:
        """Settle the turn: the one place a begun turn ends and frees its conversation."""
        self._outcome = outcome
        self._queue.clear()
        self._watchdog.close()
        if self._attempt is not None:
            self._attempt.close()
        self._loop.cancel_tools()
        self._turn.release()
        observer, self._observer = self._observer, None
        if observer is not None:
            cancelled = outcome is CANCELLED
            observer.turn_ended(outcome.reply, outcome.error, cancelled)

    def _abandon(self) -> None:
        """Close now, synchronously: the connection is dropped and the turn is cancelled."""
        self._watchdog.interrupt()
        if self._attempt is not None:
            self._attempt.close()
        self._loop.cancel_tools()
        if self._outcome is PENDING:
            self._outcome = CANCELLED
        elif self._outcome is STREAMING:
            self._end_call(None, None)
            self._finish(CANCELLED)
            log.debug(
                "turn cancelled after %d attempt(s)", self._attempts, extra=self._log_fields()
            )
