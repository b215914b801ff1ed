"""The exceptions a turn can raise.

ChatError                      every failure of a turn; carries request_id, attempts, partial_text
├── BedrockError               Bedrock answered with an error, before the stream or inside it
│   ├── ThrottlingError          too many requests or tokens for the account's quota (retryable)
│   ├── ServiceUnavailableError  the service is temporarily unavailable (retryable)
│   ├── InternalServerError      Bedrock failed internally (retryable)
│   ├── ModelStreamError         the model failed while streaming (retryable)
│   ├── ModelNotReadyError       the model is not ready to serve yet (retryable)
│   ├── ModelTimeoutError        the model took too long to answer (retryable)
│   ├── ModelError               the model returned an error it will return again
│   ├── InvalidRequestError      the request is invalid (ValidationException, quota exceeded)
│   ├── AccessDeniedError        the credentials may not call this model
│   └── ResourceNotFoundError    the model or resource does not exist
├── TransportError             the HTTP exchange broke (retryable)
│   ├── ConnectionLostError      could not connect, or the connection was reset or aborted
│   ├── IncompleteStreamError    the stream ended without messageStop
│   └── StreamDecodeError        a frame was malformed or failed its checksum
├── StreamTimeoutError         a deadline passed; also a builtin TimeoutError
│   ├── FirstTokenTimeoutError   no content arrived in time after an attempt started (retryable)
│   ├── IdleTimeoutError         the stream stalled between events
│   └── TotalTimeoutError        the turn's whole budget ran out (never retried)
├── ToolLoopError              the model kept calling tools for more than max_tool_rounds rounds
└── OutputValidationError      the model's structured answer failed validation, repair included

ConversationBusyError and StreamClosedError are RuntimeErrors: they report misuse, not failure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._codec import Frame

__all__ = [
    "AccessDeniedError",
    "BedrockError",
    "ChatError",
    "ConnectionLostError",
    "ConversationBusyError",
    "FirstTokenTimeoutError",
    "IdleTimeoutError",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidRequestError",
    "ModelError",
    "ModelNotReadyError",
    "ModelStreamError",
    "ModelTimeoutError",
    "OutputValidationError",
    "ResourceNotFoundError",
    "ServiceUnavailableError",
    "StreamClosedError",
    "StreamDecodeError",
    "StreamTimeoutError",
    "ThrottlingError",
    "ToolLoopError",
    "TotalTimeoutError",
    "TransportError",
]


class ChatError(Exception):
    """Base class of every error a turn can raise."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        attempts: int = 1,
        partial_text: str = "",
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.attempts = attempts
        self.partial_text = partial_text

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class BedrockError(ChatError):
    """Bedrock reported an error, as an HTTP status or as an exception event in the stream."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status_code: int | None = None,
        request_id: str | None = None,
        attempts: int = 1,
        partial_text: str = "",
    ) -> None:
        super().__init__(
            message, request_id=request_id, attempts=attempts, partial_text=partial_text
        )
        self.code = code
        self.status_code = status_code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


class ThrottlingError(BedrockError):
    """Too many requests or tokens for the account's quota (retryable)."""

    retryable = True


class ServiceUnavailableError(BedrockError):
    """The service is temporarily unavailable (retryable)."""

    retryable = True


class InternalServerError(BedrockError):
    """Bedrock failed internally (retryable)."""

    retryable = True


class ModelStreamError(BedrockError):
    """The model failed while streaming its reply (retryable)."""

    retryable = True


class ModelNotReadyError(BedrockError):
    """The model is not ready to serve yet (retryable)."""

    retryable = True


class ModelTimeoutError(BedrockError):
    """The model took too long to answer (retryable)."""

    retryable = True


class ModelError(BedrockError):
    """The model returned an error it would return again (not retried)."""


class InvalidRequestError(BedrockError):
    """Bedrock rejected the request as invalid (ValidationException, quota exceeded)."""


class AccessDeniedError(BedrockError):
    """The credentials may not call this model, or there are none."""


class ResourceNotFoundError(BedrockError):
    """The model or another named resource does not exist."""


class TransportError(ChatError):
    """The HTTP exchange with Bedrock broke (retryable)."""

    retryable = True


class ConnectionLostError(TransportError):
    """Could not connect, or the connection was reset or aborted mid-stream."""


class IncompleteStreamError(TransportError):
    """The response body ended before messageStop."""


class StreamDecodeError(TransportError):
    """A frame of the response was malformed or failed its checksum."""

    def __init__(
        self,
        message: str,
        *,
        frames: Iterable[Frame] = (),
        request_id: str | None = None,
        attempts: int = 1,
        partial_text: str = "",
    ) -> None:
        super().__init__(
            message, request_id=request_id, attempts=attempts, partial_text=partial_text
        )
        self.frames: list[Frame] = list(frames)
        """The frames decoded intact, in the same ``feed()`` call, before the bad one."""


class StreamTimeoutError(ChatError, TimeoutError):
    """A deadline of the turn passed; also a builtin TimeoutError."""


class FirstTokenTimeoutError(StreamTimeoutError):
    """No content arrived in time after an attempt started (retryable)."""

    retryable = True


class IdleTimeoutError(StreamTimeoutError):
    """The stream stalled between events for longer than the idle timeout."""


class TotalTimeoutError(StreamTimeoutError):
    """The turn's whole time budget ran out (never retried)."""


class ToolLoopError(ChatError):
    """The model still asked for tools after ``max_tool_rounds`` rounds of them."""


class OutputValidationError(ChatError):
    """The structured answer did not validate, even after the repair round(s)."""

    def __init__(
        self,
        message: str,
        *,
        raw_text: str,
        errors: list[dict[str, Any]],
        request_id: str | None = None,
        attempts: int = 1,
        partial_text: str = "",
    ) -> None:
        super().__init__(
            message, request_id=request_id, attempts=attempts, partial_text=partial_text
        )
        self.raw_text = raw_text
        """The model's last answer as JSON text (the forced tool's input, or the text)."""
        self.errors = errors
        """pydantic's ``ValidationError.errors()`` for that answer."""


class ConversationBusyError(RuntimeError):
    """A second turn was started while one is still in flight on the same conversation."""


class StreamClosedError(RuntimeError):
    """The stream was closed before it completed, or is used after it was closed."""
