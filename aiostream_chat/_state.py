"""ConversationState: a conversation's settings and history, without credentials or clients."""

from __future__ import annotations

from ._models import Frozen, InferenceConfig, Message, ToolSpec
from ._options import RequestOptions

__all__ = ["ConversationState"]


class ConversationState(Frozen):
    """Everything needed to resume a conversation; round-trips through JSON."""

    model_id: str
    system: str | None = None
    inference: InferenceConfig | None = None
    tools: tuple[ToolSpec, ...] = ()
    options: RequestOptions | None = None
    history: tuple[Message, ...] = ()
