"""What a stream needs from its conversation: the ``Turn`` protocol (so layers point down)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._limiter import Limiter
    from ._models import Message, Reply
    from ._request import Request

__all__ = ["Turn"]


class Turn(Protocol):
    """What a stream needs from its conversation (abstract, so layers point down)."""

    model_id: str
    user_message: Message
    limiter: Limiter | None

    async def begin(self) -> None:
        """Claim the conversation (``ConversationBusyError`` if a turn is in flight)."""

    def request(self, added: Sequence[Message]) -> Request:
        """The request of the next round: the history, then the messages this turn added."""

    async def commit(self, added: tuple[Message, ...], reply: Reply) -> None:
        """Append the turn's messages to the history, atomically."""

    def release(self) -> None:
        """Free the conversation; called once when a begun turn ends, however it ends."""

    async def client(self) -> Any:
        """The bedrock-runtime client to send with."""

    def ready_client(self) -> Any:
        """The client if it is already open (no await needed), else None."""

    def endpoint_url(self) -> str | None:
        """Where requests go, when known (for observers)."""
