"""AsyncConversation: settings, history, client ownership and turns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import aioboto3

from ._client import ClientManager
from ._config import Timeouts
from ._errors import ConversationBusyError
from ._models import (
    InferenceConfig,
    Message,
    RawBlock,
    Reply,
    ToolSpec,
)
from ._retry import RetryPolicy
from ._state import ConversationState
from ._stream import RAW_BODY, ChatStream, Turn
from ._transport import json_body
from ._validate import Prompt, check_tools, check_type, user_message

if TYPE_CHECKING:
    from ._fanout import FanOutStream

__all__ = ["AsyncConversation"]


def _stand_in(message: Message) -> dict[str, Any]:
    blocks = (
        {"text": "(content block)"} if isinstance(b, RawBlock) else b.to_bedrock()
        for b in message.content
    )
    return {"role": message.role, "content": list(blocks)}


class _ConversationTurn(Turn):
    """Binds one stream to its conversation and its per-turn settings."""

    def __init__(
        self,
        conv: AsyncConversation,
        inference: InferenceConfig | None,
        tools: tuple[ToolSpec, ...],
    ) -> None:
        self._conv = conv
        self._inference = inference
        self._tools = tools

    def begin(self, stream: ChatStream) -> dict[str, Any]:
        conv = self._conv
        if conv._active is not None and conv._active is not stream:
            raise ConversationBusyError(
                "a turn is already in flight on this conversation; use fork() or fan_out() "
                "for concurrent turns"
            )
        conv._active = stream
        conv._clients.streams.add(stream)
        history = (*conv._history, stream.user_message)
        messages = [m.to_bedrock() for m in history]
        params: dict[str, Any] = {"modelId": conv._model_id, "messages": messages}
        if conv._system:
            params["system"] = [{"text": conv._system}]
        if self._inference is not None and (config := self._inference.to_bedrock()):
            params["inferenceConfig"] = config
        if self._tools:
            params["toolConfig"] = {"tools": [t.to_bedrock() for t in self._tools]}
        if any(isinstance(b, RawBlock) for m in history for b in m.content):
            # botocore would reject blocks newer than its model: it validates a stand-in
            # and the transport sends the real body (see open_converse_stream).
            params[RAW_BODY] = json_body(params)
            params["messages"] = [_stand_in(m) for m in history]
        return params

    def end(self, stream: ChatStream, reply: Reply | None) -> None:
        conv = self._conv
        if reply is not None:
            conv._history = (*conv._history, stream.user_message, reply.message)
        if conv._active is stream:
            conv._active = None
        conv._clients.streams.discard(stream)

    async def client(self) -> Any:
        return await self._conv._clients.get()


class AsyncConversation:
    """A Bedrock chat whose history changes only when a turn completes."""

    def __init__(
        self,
        model_id: str,
        *,
        system: str | None = None,
        history: Iterable[Message] = (),
        inference: InferenceConfig | None = None,
        tools: Sequence[ToolSpec] = (),
        client: Any = None,
        session: aioboto3.Session | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        max_connections: int = 100,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        api_key: str | None = None,
    ) -> None:
        if not isinstance(model_id, str):
            raise TypeError(f"model_id must be a str, not {type(model_id).__name__}")
        if not model_id.strip():
            raise ValueError("model_id is empty")
        check_type("system", system, str)
        check_type("inference", inference, InferenceConfig)
        check_type("retry", retry, RetryPolicy)
        check_type("timeouts", timeouts, Timeouts)
        check_type("region_name", region_name, str)
        check_type("endpoint_url", endpoint_url, str)
        check_type("api_key", api_key, str)
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise TypeError("max_connections must be an int")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        if isinstance(history, str | bytes):
            raise TypeError("history must be an iterable of Message")
        messages = tuple(history)
        for message in messages:
            if not isinstance(message, Message):
                raise TypeError(f"history must hold Message objects, not {type(message).__name__}")
        self._model_id = model_id
        self._system = system
        self._history: tuple[Message, ...] = messages
        self._inference = inference
        self._tools = check_tools(tools)
        self._retry = retry or RetryPolicy()
        self._timeouts = timeouts or Timeouts()
        self._active: ChatStream | None = None
        self._clients = ClientManager(
            client=client,
            session=session,
            region_name=region_name,
            endpoint_url=endpoint_url,
            max_connections=max_connections,
            connect_timeout=self._timeouts.connect,
            api_key=api_key,
        )

    # -- properties ------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def system(self) -> str | None:
        return self._system

    @property
    def history(self) -> tuple[Message, ...]:
        """A snapshot of the completed turns' messages."""
        return self._history

    @property
    def busy(self) -> bool:
        """True while a turn is in flight."""
        return self._active is not None

    # -- turns -----------------------------------------------------------------------------

    def stream(
        self,
        prompt: Prompt,
        *,
        inference: InferenceConfig | None = None,
        tools: Sequence[ToolSpec] | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> ChatStream:
        """A stream for one turn; no I/O happens until it is iterated or entered."""
        message = user_message(prompt)
        check_type("inference", inference, InferenceConfig)
        check_type("retry", retry, RetryPolicy)
        check_type("timeouts", timeouts, Timeouts)
        turn_tools = self._tools if tools is None else check_tools(tools)
        turn = _ConversationTurn(self, inference or self._inference, turn_tools)
        return ChatStream(turn, message, retry or self._retry, timeouts or self._timeouts)

    async def send(
        self,
        prompt: Prompt,
        *,
        inference: InferenceConfig | None = None,
        tools: Sequence[ToolSpec] | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> Reply:
        """Run a whole turn and return its reply."""
        stream = self.stream(
            prompt, inference=inference, tools=tools, retry=retry, timeouts=timeouts
        )
        async with stream:
            return await stream.get_reply()

    def fork(self) -> AsyncConversation:
        """Same settings, a copy of the history, and the parent's client (never closed by it)."""
        child = AsyncConversation.__new__(AsyncConversation)
        child.__dict__.update(self.__dict__)
        child._active = None
        child._clients = self._clients.borrow()
        return child

    async def fan_out(
        self,
        prompts: Iterable[Prompt],
        *,
        concurrency: int = 16,
        return_exceptions: bool = False,
    ) -> list[Reply | BaseException]:
        """Answer each prompt on its own fork of the current history, results in input order."""
        from ._fanout import fan_out

        return await fan_out(
            self, prompts, concurrency=concurrency, return_exceptions=return_exceptions
        )

    def fan_out_stream(self, prompts: Iterable[Prompt], *, concurrency: int = 16) -> FanOutStream:
        """The fan-out's events as they arrive, as ``(prompt_index, event)`` pairs.

        An async iterator (of ``tuple[int, StreamEvent]``) and an async context manager;
        ``aclose()`` cancels every turn still running.
        """
        from ._fanout import fan_out_stream

        return fan_out_stream(self, prompts, concurrency=concurrency)

    # -- state -----------------------------------------------------------------------------

    def snapshot(self) -> ConversationState:
        """The settings and history, without credentials or clients."""
        return ConversationState(
            model_id=self._model_id,
            system=self._system,
            inference=self._inference,
            tools=self._tools,
            history=self._history,
        )

    @classmethod
    def from_state(cls, state: ConversationState, **client_kwargs: Any) -> AsyncConversation:
        """A conversation resumed from a snapshot; ``client_kwargs`` as for the constructor."""
        if not isinstance(state, ConversationState):
            raise TypeError(f"state must be a ConversationState, not {type(state).__name__}")
        return cls(
            state.model_id,
            system=state.system,
            history=state.history,
            inference=state.inference,
            tools=state.tools,
            **client_kwargs,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncConversation:
        await self._clients.get()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close any open stream, then the client if this conversation opened it. Idempotent."""
        if self._active is not None:
            await self._active.aclose()
        await self._clients.aclose()

    def __repr__(self) -> str:
        return (
            f"AsyncConversation(model_id={self._model_id!r}, turns={len(self._history) // 2}, "
            f"busy={self.busy})"
        )
