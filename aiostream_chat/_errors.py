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
│   ├── ConnectionLostError      connection refused, reset or aborted
│   ├── IncompleteStreamError    the stream ended without messageStop
│   └── StreamDecodeError        a frame was malformed or failed its checksum
└── StreamTimeoutError         a deadline passed; also a builtin TimeoutError
    ├── FirstTokenTimeoutError   no content arrived in time after an attempt started (retryable)
    ├── IdleTimeoutError         the stream stalled between events
    └── TotalTimeoutError        the turn's whole budget ran out (never retried)

ConversationBusyError and StreamClosedError are RuntimeErrors: they report misuse, not failure.
"""

from __future__ import annotations

from typing import Any

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
    "ResourceNotFoundError",
    "ServiceUnavailableError",
    "StreamClosedError",
    "StreamDecodeError",
    "StreamTimeoutError",
    "ThrottlingError",
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
    retryable = True


class ServiceUnavailableError(BedrockError):
    retryable = True


class InternalServerError(BedrockError):
    retryable = True


class ModelStreamError(BedrockError):
    retryable = True


class ModelNotReadyError(BedrockError):
    retryable = True


class ModelTimeoutError(BedrockError):
    retryable = True


class ModelError(BedrockError):
    pass


class InvalidRequestError(BedrockError):
    pass


class AccessDeniedError(BedrockError):
    pass


class ResourceNotFoundError(BedrockError):
    pass


class TransportError(ChatError):
    retryable = True


class ConnectionLostError(TransportError):
    pass


class IncompleteStreamError(TransportError):
    pass


class StreamDecodeError(TransportError):
    """A frame of the stream was malformed or failed its checksum."""

    frames: list[Any] = []  # noqa: RUF012  # set per instance by the decoder
    """The intact frames decoded before the bad one, in the same read."""


class StreamTimeoutError(ChatError, TimeoutError):
    pass


class FirstTokenTimeoutError(StreamTimeoutError):
    retryable = True


class IdleTimeoutError(StreamTimeoutError):
    pass


class TotalTimeoutError(StreamTimeoutError):
    pass


class ConversationBusyError(RuntimeError):
    """A second turn was started while one is still in flight on the same conversation."""


class StreamClosedError(RuntimeError):
    """The stream was closed before it completed, or is used after it was closed."""
