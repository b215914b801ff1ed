"""The public surface matches the API contract (API.md) name for name."""

from __future__ import annotations

import aiostream_chat
import aiostream_chat.testing

API_NAMES = {
    "AsyncConversation",
    "ChatStream",
    "ConversationState",
    "Reply",
    "Usage",
    "Metrics",
    "Message",
    "ContentBlock",
    "TextBlock",
    "ToolUseBlock",
    "ToolResultBlock",
    "ReasoningBlock",
    "RawBlock",
    "InferenceConfig",
    "ToolSpec",
    "Timeouts",
    "RetryPolicy",
    "StreamEvent",
    "MessageStart",
    "ContentBlockStart",
    "ToolUseStart",
    "TextDelta",
    "ToolUseDelta",
    "ReasoningDelta",
    "CitationDelta",
    "ContentBlockStop",
    "MessageStop",
    "Metadata",
    "UnknownEvent",
    "Retrying",
    "TurnCompleted",
    "TurnFailed",
    "ChatError",
    "BedrockError",
    "ThrottlingError",
    "ServiceUnavailableError",
    "InternalServerError",
    "ModelStreamError",
    "ModelNotReadyError",
    "ModelTimeoutError",
    "ModelError",
    "InvalidRequestError",
    "AccessDeniedError",
    "ResourceNotFoundError",
    "TransportError",
    "ConnectionLostError",
    "IncompleteStreamError",
    "StreamDecodeError",
    "StreamTimeoutError",
    "FirstTokenTimeoutError",
    "IdleTimeoutError",
    "TotalTimeoutError",
    "ConversationBusyError",
    "StreamClosedError",
    "__version__",
    # section 8: tools that run, structured output
    "Tool",
    "tool",
    "ToolCallStarted",
    "ToolCallFinished",
    "OutputDelta",
    # section 11
    "ToolLoopError",
    "OutputValidationError",
    # section 9
    "instrument",
    "uninstrument",
}
# Section 7 (issue 11): the whole Converse request.
API_NAMES |= {
    "RequestOptions",
    "Thinking",
    "Cache",
    "Guardrail",
    "ImageBlock",
    "DocumentBlock",
    "VideoBlock",
    "S3Location",
    "CachePoint",
    "GuardContent",
}


def test_all_is_sorted_and_exactly_the_api() -> None:
    """__all__ is sorted and names exactly what API.md lists."""
    names = aiostream_chat.__all__
    assert names == sorted(names)
    assert set(names) == API_NAMES
    for name in names:
        assert hasattr(aiostream_chat, name), name


def test_classes_report_the_public_module() -> None:
    """Tracebacks read aiostream_chat.ThrottlingError, not a private module path."""
    for name in aiostream_chat.__all__:
        obj = getattr(aiostream_chat, name)
        if isinstance(obj, type):
            assert obj.__module__ == "aiostream_chat", name


def test_error_tree_shape() -> None:
    """The hierarchy and retryable flags follow API.md section 5."""
    a = aiostream_chat
    assert issubclass(a.StreamTimeoutError, TimeoutError) and issubclass(
        a.StreamTimeoutError, a.ChatError
    )
    for cls in (a.ConversationBusyError, a.StreamClosedError):
        assert issubclass(cls, RuntimeError) and not issubclass(cls, a.ChatError)
    retryable = {
        a.ThrottlingError,
        a.ServiceUnavailableError,
        a.InternalServerError,
        a.ModelStreamError,
        a.ModelNotReadyError,
        a.ModelTimeoutError,
        a.TransportError,
        a.ConnectionLostError,
        a.IncompleteStreamError,
        a.StreamDecodeError,
        a.FirstTokenTimeoutError,
    }
    for name in a.__all__:
        cls = getattr(a, name)
        if isinstance(cls, type) and issubclass(cls, a.ChatError):
            assert cls.retryable is (cls in retryable), name
    assert issubclass(a.ConnectionLostError, a.TransportError)
    assert issubclass(a.ThrottlingError, a.BedrockError)


def test_version_from_metadata() -> None:
    """__version__ comes from the installed distribution's metadata."""
    from importlib.metadata import version

    assert aiostream_chat.__version__ == version("aiostream-chat")


def test_testing_exports_sorted() -> None:
    """aiostream_chat.testing has one sorted __all__ including FakeBedrock and no_backoff."""
    names = aiostream_chat.testing.__all__
    assert names == sorted(names) and {"FakeBedrock", "no_backoff", "set_backoff"} <= set(names)
