"""Stream Amazon Bedrock ConverseStream chat replies into asyncio programs."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._config import Timeouts
from ._conversation import AsyncConversation
from ._errors import (
    AccessDeniedError,
    BedrockError,
    ChatError,
    ConnectionLostError,
    ConversationBusyError,
    FirstTokenTimeoutError,
    IdleTimeoutError,
    IncompleteStreamError,
    InternalServerError,
    InvalidRequestError,
    ModelError,
    ModelNotReadyError,
    ModelStreamError,
    ModelTimeoutError,
    OutputValidationError,
    ResourceNotFoundError,
    ServiceUnavailableError,
    StreamClosedError,
    StreamDecodeError,
    StreamTimeoutError,
    ThrottlingError,
    ToolLoopError,
    TotalTimeoutError,
    TransportError,
)
from ._events import (
    CitationDelta,
    ContentBlockStart,
    ContentBlockStop,
    MessageStart,
    MessageStop,
    Metadata,
    OutputDelta,
    ReasoningDelta,
    Retrying,
    StreamEvent,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    ToolUseDelta,
    ToolUseStart,
    TurnCompleted,
    TurnFailed,
    UnknownEvent,
)
from ._models import (
    CachePoint,
    ContentBlock,
    DocumentBlock,
    GuardContent,
    ImageBlock,
    InferenceConfig,
    Message,
    Metrics,
    RawBlock,
    ReasoningBlock,
    Reply,
    S3Location,
    TextBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Usage,
    VideoBlock,
)
from ._options import Cache, Guardrail, RequestOptions, Thinking
from ._otel import instrument, uninstrument
from ._retry import RetryPolicy
from ._state import ConversationState
from ._stream import ChatStream
from ._tools import Tool, tool

try:
    __version__ = version("aiostream-chat")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = [
    "AccessDeniedError",
    "AsyncConversation",
    "BedrockError",
    "Cache",
    "CachePoint",
    "ChatError",
    "ChatStream",
    "CitationDelta",
    "ConnectionLostError",
    "ContentBlock",
    "ContentBlockStart",
    "ContentBlockStop",
    "ConversationBusyError",
    "ConversationState",
    "DocumentBlock",
    "FirstTokenTimeoutError",
    "GuardContent",
    "Guardrail",
    "IdleTimeoutError",
    "ImageBlock",
    "IncompleteStreamError",
    "InferenceConfig",
    "InternalServerError",
    "InvalidRequestError",
    "Message",
    "MessageStart",
    "MessageStop",
    "Metadata",
    "Metrics",
    "ModelError",
    "ModelNotReadyError",
    "ModelStreamError",
    "ModelTimeoutError",
    "OutputDelta",
    "OutputValidationError",
    "RawBlock",
    "ReasoningBlock",
    "ReasoningDelta",
    "Reply",
    "RequestOptions",
    "ResourceNotFoundError",
    "RetryPolicy",
    "Retrying",
    "S3Location",
    "ServiceUnavailableError",
    "StreamClosedError",
    "StreamDecodeError",
    "StreamEvent",
    "StreamTimeoutError",
    "TextBlock",
    "TextDelta",
    "Thinking",
    "ThrottlingError",
    "Timeouts",
    "Tool",
    "ToolCallFinished",
    "ToolCallStarted",
    "ToolLoopError",
    "ToolResultBlock",
    "ToolSpec",
    "ToolUseBlock",
    "ToolUseDelta",
    "ToolUseStart",
    "TotalTimeoutError",
    "TransportError",
    "TurnCompleted",
    "TurnFailed",
    "UnknownEvent",
    "Usage",
    "VideoBlock",
    "__version__",
    "instrument",
    "tool",
    "uninstrument",
]

# Tracebacks and reprs read `aiostream_chat.ThrottlingError`, not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("aiostream_chat._"):
        _obj.__module__ = __name__
del _name, _obj
