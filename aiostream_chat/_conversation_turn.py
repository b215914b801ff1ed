"""A conversation's side of one turn: the busy claim, the request, the atomic commit.

``ConversationTurn`` is what a ``ChatStream`` gets as its ``Turn``: it claims the conversation
(and the store's lease when the conversation is bound to one), builds each round's request
from the history, commits the turn's messages at the end and frees the conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._errors import ConversationBusyError, StoreError
from ._models import InferenceConfig, Message, Reply, ToolSpec
from ._options import RequestOptions
from ._output import OutputSpec
from ._request import Request, build_request
from ._state import ConversationState

if TYPE_CHECKING:
    from ._conversation import AsyncConversation
    from ._stream import ChatStream

__all__ = ["ConversationTurn"]


class ConversationTurn:
    """Binds one stream to its conversation and its per-turn settings (the stream's ``Turn``)."""

    __slots__ = (
        "_claimed",
        "_conv",
        "_inference",
        "_options",
        "_output",
        "_stream",
        "_tools",
        "limiter",
        "model_id",
        "user_message",
    )

    def __init__(
        self,
        conv: AsyncConversation,
        user_message: Message,
        inference: InferenceConfig | None,
        tools: tuple[ToolSpec, ...],
        output: OutputSpec | None = None,
        options: RequestOptions | None = None,
    ) -> None:
        self._conv = conv
        self._inference = inference
        self._tools = tools
        self._output = output
        self._options = options
        self._stream: ChatStream | None = None
        self.model_id = conv._model_id
        self.user_message = user_message
        self.limiter = conv._limiter
        self._claimed = False  # holds the store's lease

    def bind(self, stream: ChatStream) -> ChatStream:
        self._stream = stream
        return stream

    async def begin(self) -> None:
        conv = self._conv
        if conv._active is not None:
            raise ConversationBusyError(
                "a turn is already in flight on this conversation; use fork() or fan_out() "
                "for concurrent turns"
            )
        conv._active = self._stream
        conv._open_streams.add(self._stream)
        binding = conv._binding
        if binding is None:
            return
        try:  # the store's lease (busy elsewhere?) and the history as committed by anyone
            state = await binding.begin()
        except BaseException:
            self.release()
            raise
        self._claimed = True
        if state is not None:
            conv._history = ConversationState.model_validate_json(state).history

    def request(self, added: Sequence[Message]) -> Request:
        conv = self._conv
        request = build_request(
            model_id=conv._model_id,
            messages=(*conv._history, *added),
            system=conv._system,
            inference=self._inference,
            tools=self._tools,
            options=self._options,
            history_len=len(conv._history),
        )
        if self._output is None:
            return request
        return Request(model_id=request.model_id, body=self._output.apply(request.body))

    async def commit(self, added: tuple[Message, ...], reply: Reply) -> None:
        conv = self._conv
        history = (*conv._history, *added)
        if conv._binding is not None:
            state = conv.snapshot().model_copy(update={"history": history})
            try:
                await conv._binding.commit(state.model_dump_json())
            except StoreError as exc:
                raise StoreError(str(exc), reply=reply, attempts=reply.metrics.attempts) from exc
        conv._history = history
        conv._usage = conv._usage + reply.usage

    def release(self) -> None:
        conv = self._conv
        if self._claimed:
            self._claimed = False
            if conv._binding is not None:
                conv._binding.release()
        if conv._active is self._stream:
            conv._active = None
        conv._open_streams.discard(self._stream)

    async def client(self) -> Any:
        return await self._conv._clients.get()

    def ready_client(self) -> Any:
        return self._conv._clients.ready()

    def endpoint_url(self) -> str | None:
        return self._conv._clients.endpoint_url
