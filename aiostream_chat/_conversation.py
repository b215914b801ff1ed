"""AsyncConversation: settings, history, client ownership and turns."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import aioboto3

from ._client import ClientManager
from ._config import Timeouts, check_turn_timeouts
from ._conversation_turn import ConversationTurn
from ._count_tokens import count_tokens
from ._fanout import FanOutStream, fan_out, fan_out_stream
from ._limiter import Limiter
from ._models import (
    InferenceConfig,
    Message,
    Reply,
    ToolSpec,
    Usage,
)
from ._options import RequestOptions, check_options
from ._output import OutputSpec
from ._request import build_request
from ._retry import RetryPolicy
from ._state import ConversationState
from ._store import Binding, ConversationStore, check_id, check_ttl
from ._stream import ChatStream
from ._tool_loop import DEFAULT_MAX_TOOL_ROUNDS, DEFAULT_TOOL_TIMEOUT, Loop, check_limits
from ._tools import as_tools
from ._validate import (
    Prompt,
    check_client,
    check_history,
    check_next,
    check_type,
    user_message,
)

__all__ = ["AsyncConversation"]


class AsyncConversation:
    """A Bedrock chat whose history changes only when a turn completes."""

    def __init__(
        self,
        model_id: str,
        *,
        system: str | None = None,
        history: Iterable[Message] = (),
        inference: InferenceConfig | None = None,
        tools: Sequence[ToolSpec | Callable[..., Any]] = (),
        client: Any = None,
        session: aioboto3.Session | None = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        max_connections: int = 100,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        options: RequestOptions | None = None,
        limiter: Limiter | None = None,
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
        check_type("options", options, RequestOptions)
        check_type("limiter", limiter, Limiter)
        check_type("region_name", region_name, str)
        check_type("endpoint_url", endpoint_url, str)
        check_type("api_key", api_key, str)
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise TypeError(f"max_connections must be an int, not {type(max_connections).__name__}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        check_type("session", session, aioboto3.Session)
        check_client(client)
        messages = check_history(history)
        self._model_id = model_id
        self._system = system
        self._history: tuple[Message, ...] = messages
        self._inference = inference
        self._tools = as_tools(tools)
        self._options = options
        if options is not None:
            self._check_options(options, inference, self._tools)
        self._retry = retry or RetryPolicy()
        self._timeouts = timeouts or Timeouts()
        self._active: ChatStream | None = None
        self._limiter = limiter
        self._binding: Binding | None = None  # set by open(): the conversation's store record
        self._turn_options: dict[str, Any] = {}  # per-turn settings of a fan-out's forks
        self._usage = Usage()
        # Open streams of this conversation and its forks, closed before an owned client is.
        self._open_streams: set[ChatStream | None] = set()
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
    def usage(self) -> Usage:
        """Token usage summed over this conversation's completed turns (not its forks')."""
        return self._usage

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
        tools: Sequence[ToolSpec | Callable[..., Any]] | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        tool_timeout: float | None = DEFAULT_TOOL_TIMEOUT,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        output: Any = None,
        output_retries: int = 1,
        options: RequestOptions | None = None,
    ) -> ChatStream:
        """A stream for one turn; no I/O happens until it is iterated or entered.

        Tools that can run (``Tool``, ``@tool``, plain functions) are run by the stream when
        the model asks for them, each under ``tool_timeout``, for at most ``max_tool_rounds``
        rounds. ``output`` (a pydantic model or any type pydantic validates) asks for a
        structured answer: ``OutputDelta`` events while it streams, ``Reply.output`` at the end.
        """
        message = user_message(prompt)
        check_next(self._history, message)
        check_type("inference", inference, InferenceConfig)
        check_type("retry", retry, RetryPolicy)
        check_type("timeouts", timeouts, Timeouts)
        check_type("options", options, RequestOptions)
        check_turn_timeouts(self._timeouts, timeouts)
        check_limits(tool_timeout, max_tool_rounds)
        turn_tools = self._tools if tools is None else as_tools(tools)
        turn_inference = inference or self._inference
        turn_options = options or self._options
        if turn_options is not None:
            self._check_options(turn_options, turn_inference, turn_tools)
        spec = None
        if output is not None:
            thinking = turn_options is not None and (
                turn_options.thinking is not None
                or "thinking" in turn_options.additional_request_fields
            )
            spec = OutputSpec(
                output, model_id=self._model_id, retries=output_retries, thinking=thinking
            )
        loop = Loop(
            message,
            turn_tools,
            output=spec,
            tool_timeout=tool_timeout,
            max_tool_rounds=max_tool_rounds,
        )
        turn = ConversationTurn(
            self, message, turn_inference, turn_tools, spec, options=turn_options
        )
        stream = ChatStream(turn, retry or self._retry, timeouts or self._timeouts, loop)
        return turn.bind(stream)

    async def send(
        self,
        prompt: Prompt,
        *,
        inference: InferenceConfig | None = None,
        tools: Sequence[ToolSpec | Callable[..., Any]] | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        tool_timeout: float | None = DEFAULT_TOOL_TIMEOUT,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
        output: Any = None,
        output_retries: int = 1,
        options: RequestOptions | None = None,
    ) -> Reply:
        """Run a whole turn and return its reply (``reply.output`` with ``output=``)."""
        stream = self.stream(
            prompt,
            inference=inference,
            tools=tools,
            retry=retry,
            timeouts=timeouts,
            tool_timeout=tool_timeout,
            max_tool_rounds=max_tool_rounds,
            output=output,
            output_retries=output_retries,
            options=options,
        )
        async with stream:
            return await stream.get_reply()

    def fork(self) -> AsyncConversation:
        """Same settings, a copy of the history, and the parent's client (never closed by it)."""
        child = AsyncConversation.__new__(AsyncConversation)
        child.__dict__.update(self.__dict__)
        child._active = None
        child._binding = None  # an independent copy: never committed to the store
        child._usage = Usage()
        child._clients = self._clients.borrow()
        return child

    async def fan_out(
        self,
        prompts: Iterable[Prompt],
        *,
        concurrency: int = 16,
        return_exceptions: bool = False,
        output: Any = None,
    ) -> list[Reply | BaseException]:
        """Answer each prompt on its own fork of the current history, results in input order.

        With ``output=`` every reply carries its parsed ``output``.
        """
        return await fan_out(
            self,
            prompts,
            concurrency=concurrency,
            return_exceptions=return_exceptions,
            output=output,
        )

    def fan_out_stream(self, prompts: Iterable[Prompt], *, concurrency: int = 16) -> FanOutStream:
        """The fan-out's events as they arrive, as ``(prompt_index, event)`` pairs.

        An async iterator (of ``tuple[int, StreamEvent]``) and an async context manager;
        ``aclose()`` cancels every turn still running.
        """
        return fan_out_stream(self, prompts, concurrency=concurrency)

    def _check_options(
        self,
        options: RequestOptions,
        inference: InferenceConfig | None,
        tools: tuple[ToolSpec, ...],
    ) -> None:
        check_options(
            options,
            model_id=self._model_id,
            tool_names=[t.name for t in tools],
            max_tokens=inference.max_tokens if inference else None,
            temperature=inference.temperature if inference else None,
        )

    async def count_tokens(self, prompt: Prompt | None = None) -> int:
        """Bedrock's token count for the history (plus ``prompt``), system prompt and tools."""
        messages = self._history if prompt is None else (*self._history, user_message(prompt))
        request = build_request(
            model_id=self._model_id,
            messages=messages,
            system=self._system,
            inference=self._inference,
            tools=self._tools,
            options=self._options,
            history_len=len(self._history),
        )
        limits = [t for t in (self._timeouts.first_token, self._timeouts.total) if t is not None]
        client = await self._clients.get()
        timeout = min(limits, default=None)
        return await count_tokens(client, request.model_id, request.body, timeout)

    # -- state -----------------------------------------------------------------------------

    def snapshot(self) -> ConversationState:
        """The settings and history, without credentials or clients."""
        return ConversationState(
            model_id=self._model_id,
            system=self._system,
            inference=self._inference,
            # A snapshot holds what Bedrock sees of a tool; functions are not data.
            tools=tuple(ToolSpec(**t.model_dump()) for t in self._tools),
            options=self._options,
            history=self._history,
        )

    @classmethod
    async def open(
        cls,
        store: ConversationStore,
        conversation_id: str,
        model_id: str,
        *,
        lease_ttl: float = 30.0,
        **settings: Any,
    ) -> AsyncConversation:
        """A conversation bound to ``conversation_id`` in ``store``, its history loaded.

        Each turn takes the id's lease (``ConversationBusyError`` while a turn is in flight on
        it in any process), re-reads the history, renews the lease every ``lease_ttl / 3``
        seconds while it streams, and commits with a compare-and-set on the version it read.
        ``settings`` are the constructor's keyword arguments (history comes from the store).
        """
        if not isinstance(store, ConversationStore):
            raise TypeError(f"store must be a ConversationStore, not {type(store).__name__}")
        check_id(conversation_id)
        if "history" in settings:
            raise TypeError("open() loads the history from the store; history= is not accepted")
        binding = Binding(store, conversation_id, check_ttl(lease_ttl))
        conv = cls(model_id, **settings)
        state = await binding.load()
        if state is not None:
            conv._history = ConversationState.model_validate_json(state).history
        conv._binding = binding
        return conv

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
            options=state.options,
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
        if self._clients.owns_client:
            for stream in list(self._open_streams):
                if stream is not None:
                    await stream.aclose()
        elif self._active is not None:
            await self._active.aclose()
        if self._binding is not None:
            await self._binding.aclose()  # lease releases still in flight
        await self._clients.aclose()

    def __repr__(self) -> str:
        return (
            f"AsyncConversation(model_id={self._model_id!r}, turns={len(self._history) // 2}, "
            f"busy={self.busy})"
        )
