"""The rounds of one turn: run tools the model asks for, repair a structured answer, sum up.

No I/O of its own: the stream feeds it each round's reply and each event it hands out, and
asks what comes next (``after_round``). The messages a turn adds (prompt, each assistant
message, each tool-result or repair message) are collected here and committed together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import ToolLoopError
from ._events import (
    ContentBlockStart,
    OutputDelta,
    StreamEvent,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    ToolUseDelta,
)
from ._models import Message, Reply, ToolSpec, ToolUseBlock, Usage
from ._output import OUTPUT_TOOL, OutputSpec
from ._tools import Observe, Tool, ToolRound

__all__ = ["DEFAULT_MAX_TOOL_ROUNDS", "DEFAULT_TOOL_TIMEOUT", "Loop", "check_limits"]

DEFAULT_TOOL_TIMEOUT = 60.0
DEFAULT_MAX_TOOL_ROUNDS = 8


def check_limits(tool_timeout: Any, max_tool_rounds: Any) -> None:
    """``tool_timeout`` is positive seconds or None; ``max_tool_rounds`` an int of at least 0."""
    if tool_timeout is not None:
        if isinstance(tool_timeout, bool) or not isinstance(tool_timeout, int | float):
            raise TypeError(f"tool_timeout must be a number or None, not {tool_timeout!r}")
        if tool_timeout <= 0:
            raise ValueError(f"tool_timeout must be positive, not {tool_timeout}")
    if isinstance(max_tool_rounds, bool) or not isinstance(max_tool_rounds, int):
        raise TypeError(f"max_tool_rounds must be an int, not {max_tool_rounds!r}")
    if max_tool_rounds < 0:
        raise ValueError(f"max_tool_rounds must be at least 0, not {max_tool_rounds}")


class Loop:
    """What a multi-round turn has done so far, and what it does next."""

    def __init__(
        self,
        user_message: Message,
        tools: Sequence[ToolSpec],
        *,
        output: OutputSpec | None = None,
        tool_timeout: float | None = DEFAULT_TOOL_TIMEOUT,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    ) -> None:
        self.messages: list[Message] = [user_message]
        self.replies: list[Reply] = []
        self.output = output
        self._runnable: Mapping[str, Tool] = {t.name: t for t in tools if isinstance(t, Tool)}
        self._manual = {t.name for t in tools if not isinstance(t, Tool)}
        self.tools: ToolRound | None = None
        """The calls of the current tool round, once a round asked for tools (until they end)."""
        self._timeout = tool_timeout
        self._max_rounds = max_tool_rounds
        self._tool_rounds = 0
        self._repairs = 0
        self._answer_index: int | None = None  # the content block holding the answer's JSON
        self._raw: list[str] = []
        self._partial: dict[str, Any] | None = None

    @property
    def added(self) -> tuple[Message, ...]:
        """The messages this turn has added so far (the prompt first)."""
        return tuple(self.messages)

    # -- streaming ---------------------------------------------------------------------------

    def start_round(self) -> None:
        """A new model call begins (or an attempt is retried): forget its partial answer."""
        self._answer_index = None
        self._raw = []
        self._partial = None

    def observe(self, event: StreamEvent) -> OutputDelta | None:
        """An ``OutputDelta`` when ``event`` grew the structured answer's parsed JSON."""
        spec = self.output
        if spec is None:
            return None
        if spec.mode == "tool":
            if type(event) is ContentBlockStart:
                if event.tool_use is not None and event.tool_use.name == OUTPUT_TOOL:
                    self._answer_index = event.index
                return None
            if type(event) is not ToolUseDelta or event.index != self._answer_index:
                return None
            self._raw.append(event.input_fragment)
        else:
            if type(event) is not TextDelta:
                return None
            self._raw.append(event.text)
        partial = spec.partial("".join(self._raw))
        if partial is None or partial == self._partial:
            return None
        self._partial = partial
        return OutputDelta(partial=partial)

    # -- between rounds ----------------------------------------------------------------------

    def after_round(self, reply: Reply) -> Reply | None:
        """The round ended with ``reply``: the turn's final reply, or None for another round
        (after the tool calls in ``tools``, or a repair message)."""
        self.replies.append(reply)
        self.messages.append(reply.message)
        spec = self.output
        if spec is not None and spec.is_answer(reply):
            return self._answer(spec, reply)
        if reply.stop_reason == "tool_use" and self._runs_itself(reply):
            if self._tool_rounds >= self._max_rounds:
                raise ToolLoopError(
                    f"the model still asked for tools after {self._max_rounds} round(s) of "
                    f"them (max_tool_rounds={self._max_rounds})"
                )
            self._tool_rounds += 1
            self.tools = ToolRound(self._runnable, reply.tool_uses, timeout=self._timeout)
            return None
        return self._final(reply)

    def _runs_itself(self, reply: Reply) -> bool:
        """Every requested tool is ours to run (names no tool has get an error result)."""
        names = {use.name for use in reply.tool_uses}
        return bool(names) and bool(self._runnable) and not (names & self._manual)

    def _answer(self, spec: OutputSpec, reply: Reply) -> Reply | None:
        value, errors = spec.parse(reply.message)
        if not errors:
            if spec.mode == "tool":
                message = spec.as_text(reply.message)
                self.messages[-1] = message
                uses = tuple(b for b in message.content if isinstance(b, ToolUseBlock))
                update = {"message": message, "text": message.text, "tool_uses": uses}
                reply = reply.model_copy(update=update)
            return self._final(reply, value)
        if self._repairs >= spec.retries:
            raise spec.failure(reply.message, errors)
        self._repairs += 1
        self.messages.append(spec.repair(reply.message, errors))
        return None

    def start_tools(self, observe: Observe | None = None) -> list[ToolCallStarted]:
        """Start the round's tool calls; their ``ToolCallStarted`` events (none if no tools)."""
        tools = self.tools
        if tools is None:
            return []
        tools.start(observe)
        return [
            ToolCallStarted(tool_use_id=u.tool_use_id, name=u.name, input=u.input)
            for u in tools.uses
        ]

    async def next_tool_result(self) -> ToolCallFinished | None:
        """The next call to finish; None once all did (their results are then the next
        user message)."""
        tools = self.tools
        assert tools is not None
        item = await tools.next_finished()
        if item is None:
            self.tools = None
            self.messages.append(Message(role="user", content=tools.results()))
            return None
        use, result, duration = item
        return ToolCallFinished(
            tool_use_id=use.tool_use_id, name=use.name, result=result, duration=duration
        )

    def cancel_tools(self) -> None:
        """Cancel the calls still running (synchronous)."""
        tools, self.tools = self.tools, None
        if tools is not None:
            tools.cancel()

    def _final(self, last: Reply, output: Any = None) -> Reply:
        replies = self.replies
        if len(replies) == 1:  # one round: its usage and metrics are the turn's
            return last.model_copy(update={"messages": tuple(self.messages), "output": output})
        metrics = last.metrics.model_copy(
            update={
                "attempts": sum(r.metrics.attempts for r in replies),
                "time_to_first_token": replies[0].metrics.time_to_first_token,
                "server_latency_ms": _sum_optional(r.metrics.server_latency_ms for r in replies),
            }
        )
        return last.model_copy(
            update={
                "usage": sum((r.usage for r in replies), Usage()),
                "metrics": metrics,
                "messages": tuple(self.messages),
                "output": output,
            }
        )


def _sum_optional(values: Any) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
