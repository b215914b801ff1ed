"""Tools that run: ``Tool.from_function`` / ``@tool``, and running a round of tool calls.

A tool's input schema comes from its function's signature (a pydantic model built from the
parameters), its description from the docstring. Arguments the model sends are validated
before the call; invalid arguments, exceptions and timeouts become an error tool result the
model can read, never a failure of the turn.

Cancellation: cancelling a round cancels every running call. Async tools get the cancellation
at their next await; a sync tool runs in a worker thread that Python cannot stop, so its
thread is abandoned (it finishes in the background and its result is dropped). ``aclose()``
of a round waits at most ``CANCEL_GRACE`` seconds for the calls to stop, then leaves any
that ignore cancellation running detached, so such a tool never hangs the caller.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
import time
import typing
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Annotated, Any, overload

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError
from pydantic import create_model as _create_model

from ._models import ToolResultBlock, ToolSpec, ToolUseBlock
from ._validate import check_tools

__all__ = [
    "CANCEL_GRACE",
    "Tool",
    "ToolRound",
    "as_tools",
    "run_tool_calls",
    "tool",
]

log = logging.getLogger("aiostream_chat")

CANCEL_GRACE = 1.0
"""Seconds ``ToolRound.aclose()`` waits for cancelled calls before leaving them detached."""

_ANY = TypeAdapter(Any)
_detached: set[asyncio.Task[Any]] = set()  # calls that ignored cancellation, kept alive
_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params)\s*:\s*$")
_PARAM = re.compile(r"^\s*(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def _split_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description part of a docstring, and the parameter docs of its ``Args:`` section."""
    lines = doc.splitlines()
    i = next((n for n, line in enumerate(lines) if _SECTION.match(line)), None)
    if i is None:
        return doc.strip(), {}
    params: dict[str, str] = {}
    current: str | None = None
    for line in lines[i + 1 :]:
        match = _PARAM.match(line)
        if match and (current is None or len(line) - len(line.lstrip()) <= _indent(lines[i + 1])):
            current = match.group(1)
            params[current] = match.group(3).strip()
        elif current is not None and line.strip():
            params[current] = f"{params[current]} {line.strip()}".strip()
        elif not line.strip() and params:
            break
    return "\n".join(lines[:i]).strip(), params


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _with_descriptions(annotation: Any) -> Any:
    """``Annotated[x, "text"]`` becomes ``Annotated[x, Field(description="text")]``."""
    if typing.get_origin(annotation) is not Annotated:
        return annotation
    base, *metadata = typing.get_args(annotation)
    extras = [Field(description=m) if isinstance(m, str) else m for m in metadata]
    return Annotated[(base, *extras)]


def _arguments_model(fn: Callable[..., Any], name: str, docs: Mapping[str, str]) -> type[BaseModel]:
    """A pydantic model of ``fn``'s parameters (fields are aliased so no name can clash)."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # e.g. a name only defined inside a function: fall back to raw annotations
        hints = {}
    fields: dict[str, Any] = {}
    for index, param in enumerate(inspect.signature(fn).parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(
                f"tool {name!r} must take named parameters only, not {param.kind.description} "
                f"{param.name!r}"
            )
        annotation = hints.get(param.name, param.annotation)
        if annotation is param.empty:
            annotation = Any
        default = ... if param.default is param.empty else param.default
        if param.name in docs:
            field = Field(default, alias=param.name, description=docs[param.name])
        else:  # leave room for a description given with Annotated
            field = Field(default, alias=param.name)
        fields[f"arg_{index}"] = (_with_descriptions(annotation), field)
    config = ConfigDict(extra="forbid", validate_by_alias=True, validate_by_name=False)
    return _create_model(f"{name}_arguments", __config__=config, **fields)


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    schema.pop("title", None)
    schema.setdefault("properties", {})
    return schema


def _is_async(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004  # an object whose __call__ is async
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


class Tool(ToolSpec):
    """A ``ToolSpec`` that can also run: built by ``Tool.from_function`` or ``@tool``."""

    model_config = ConfigDict(frozen=True)
    _fn: Callable[..., Any] | None = PrivateAttr(default=None)
    _arguments: type[BaseModel] | None = PrivateAttr(default=None)

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> Tool:
        """A tool from a sync or async function: schema from its signature, text from its doc."""
        if not callable(fn):
            raise TypeError(f"a tool must be a function, not {type(fn).__name__}")
        if isinstance(fn, Tool):
            return fn
        name = name if name is not None else getattr(fn, "__name__", None)
        if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
            raise ValueError(
                f"a tool name must be 1-64 letters, digits, '_' or '-', not {name!r}; pass name="
            )
        summary, docs = _split_docstring(inspect.getdoc(fn) or "")
        description = description if description is not None else summary
        if not isinstance(description, str) or not description.strip():
            raise ValueError(f"tool {name!r} needs a description: give it a docstring")
        arguments = _arguments_model(fn, name, docs)
        made = cls(name=name, description=description, input_schema=_schema(arguments))
        made._fn = fn
        made._arguments = arguments
        return made

    def arguments(self, tool_input: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments for a call, validated; raises pydantic's ``ValidationError``."""
        if self._arguments is None:
            raise TypeError(f"tool {self.name!r} has no function; build it with Tool.from_function")
        parsed = self._arguments.model_validate(dict(tool_input))
        fields = type(parsed).model_fields
        return {info.alias or key: getattr(parsed, key) for key, info in fields.items()}

    async def call(self, **arguments: Any) -> Any:
        """Call the function: async ones on the loop, sync ones in a worker thread."""
        fn = self._fn
        if fn is None:
            raise TypeError(f"tool {self.name!r} has no function; build it with Tool.from_function")
        if _is_async(fn):
            return await fn(**arguments)
        call = functools.partial(fn, **arguments)
        result = await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        if inspect.isawaitable(result):
            result = await result
        return result

    # A per-call limit inside the round, not a deadline for the caller's await.
    async def run(
        self,
        use: ToolUseBlock,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> ToolResultBlock:
        """One call as the model asked for it; every failure becomes an error result."""
        return (await self.run_and_explain(use, timeout=timeout))[0]

    async def run_and_explain(
        self,
        use: ToolUseBlock,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> tuple[ToolResultBlock, str | None]:
        """``run()``, and what kind of failure an error result stands for (None for success):
        the exception's class name, ``ValidationError`` for bad arguments, ``timeout``."""
        try:
            arguments = self.arguments(use.input)
        except ValidationError as exc:
            text = f"Invalid arguments for tool {self.name!r}:\n{_explain(exc)}"
            return _error(use, text), "ValidationError"
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                value = await self.call(**arguments)
        except TimeoutError as exc:
            if not deadline.expired():
                text = f"Tool {self.name!r} failed: {type(exc).__name__}: {exc}"
                return _error(use, text), type(exc).__name__
            text = f"Tool {self.name!r} did not finish within {timeout:g} s and was stopped."
            return _error(use, text), "timeout"
        except Exception as exc:
            log.debug("tool %s raised %r", self.name, exc)
            text = f"Tool {self.name!r} failed: {type(exc).__name__}: {exc}"
            return _error(use, text), type(exc).__name__
        try:
            return result_block(use.tool_use_id, value), None
        except Exception as exc:
            text = f"Tool {self.name!r} returned a value that is not JSON: {type(exc).__name__}"
            return _error(use, text), type(exc).__name__


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Decorator form of ``Tool.from_function``: ``@tool`` or ``@tool(name=...)``."""
    if fn is not None:
        return Tool.from_function(fn, name=name, description=description)

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool.from_function(f, name=name, description=description)

    return wrap


def as_tools(tools: Any) -> tuple[ToolSpec, ...]:
    """``tools=`` as given: ``ToolSpec``/``Tool`` kept, plain functions wrapped as ``Tool``."""
    if isinstance(tools, Iterable) and not isinstance(tools, str | bytes | BaseModel):
        tools = [_wrap(item) for item in tools]
    checked = check_tools(tools)  # the same TypeErrors as for any other tools=
    names = [t.name for t in checked]
    if len(set(names)) != len(names):
        raise ValueError(f"tool names must be unique, got {names}")
    return checked


def _wrap(item: Any) -> Any:
    if callable(item) and not isinstance(item, type | ToolSpec):
        return Tool.from_function(item)
    return item


def result_block(tool_use_id: str, value: Any) -> ToolResultBlock:
    """A tool's return value as a successful tool result."""
    if isinstance(value, ToolResultBlock):
        return value.model_copy(update={"tool_use_id": tool_use_id})
    if isinstance(value, str):
        content: list[dict[str, Any]] = [{"text": value}]
    elif isinstance(value, BaseModel) and hasattr(value, "to_bedrock"):
        content = [value.to_bedrock()]  # a content block: text, image, document...
    else:
        data = _ANY.dump_python(value, mode="json")
        content = [{"json": data if isinstance(data, dict) else {"result": data}}]
    return ToolResultBlock(tool_use_id=tool_use_id, content=tuple(content), status="success")


def _error(use: ToolUseBlock, text: str) -> ToolResultBlock:
    return ToolResultBlock(tool_use_id=use.tool_use_id, content=({"text": text},), status="error")


def _explain(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "(input)"
        lines.append(f"- {where}: {error['msg']}")
    return "\n".join(lines) + "\nCall the tool again with arguments that match its input schema."


def _unknown(use: ToolUseBlock, tools: Mapping[str, Tool]) -> ToolResultBlock:
    names = ", ".join(sorted(tools)) or "none"
    return _error(use, f"There is no tool named {use.name!r}. Available tools: {names}.")


Finished = tuple[ToolUseBlock, ToolResultBlock, float]
Record = Callable[[ToolResultBlock, str | None], None]
Observe = Callable[[ToolUseBlock, str | None], AbstractContextManager[Record]]
"""Around one call, inside its task: given the call and its tool's description, a context
manager yielding where the result and its failure kind go (the tracing seam)."""


class ToolRound:
    """The calls of one round, running concurrently; results come back as each finishes."""

    def __init__(
        self, tools: Mapping[str, Tool], uses: Sequence[ToolUseBlock], *, timeout: float | None
    ) -> None:
        self._tools = tools
        self._uses = tuple(uses)
        self._timeout = timeout
        self._tasks: list[asyncio.Task[Finished]] = []
        self._pending: set[asyncio.Task[Finished]] = set()
        self._done: deque[Finished] = deque()
        self._results: dict[str, ToolResultBlock] = {}

    @property
    def uses(self) -> tuple[ToolUseBlock, ...]:
        return self._uses

    def start(self, observe: Observe | None = None) -> None:
        """Start every call (on the running loop), each inside ``observe(...)`` when given."""
        self._tasks = [asyncio.create_task(self._one(use, observe)) for use in self._uses]
        self._pending = set(self._tasks)

    async def _one(self, use: ToolUseBlock, observe: Observe | None) -> Finished:
        start = time.monotonic()
        found = self._tools.get(use.name)
        if observe is None:
            result, _ = await self._call(use, found)
        else:
            with observe(use, found.description if found is not None else None) as record:
                result, failure = await self._call(use, found)
                record(result, failure)
        return use, result, time.monotonic() - start

    async def _call(
        self, use: ToolUseBlock, found: Tool | None
    ) -> tuple[ToolResultBlock, str | None]:
        if found is None:
            return _unknown(use, self._tools), "unknown_tool"
        return await found.run_and_explain(use, timeout=self._timeout)

    async def next_finished(self) -> Finished | None:
        """The next call to finish, or None once every call has finished."""
        if not self._done:
            if not self._pending:
                return None
            done, _ = await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
            for task in self._tasks:  # calls that finished together: in the model's order
                if task in done:
                    self._pending.discard(task)
                    self._done.append(task.result())
        item = self._done.popleft()
        self._results[item[0].tool_use_id] = item[1]
        return item

    def results(self) -> tuple[ToolResultBlock, ...]:
        """The results in the order the model asked for the calls (after every call finished)."""
        return tuple(self._results[use.tool_use_id] for use in self._uses)

    def cancel(self) -> None:
        """Cancel every running call (synchronous; see ``aclose`` to wait for them)."""
        for task in self._tasks:
            if not task.done():
                task.cancel()
                _detached.add(task)  # asyncio keeps only weak references to tasks
                task.add_done_callback(_detached.discard)

    async def aclose(self, grace: float = CANCEL_GRACE) -> None:
        """Cancel the calls and wait at most ``grace`` seconds; stragglers are left detached."""
        self.cancel()
        running = [t for t in self._tasks if not t.done()]
        if running:
            _, still = await asyncio.wait(running, timeout=grace)
            if still:
                log.warning("%d tool call(s) ignored cancellation: left running", len(still))


async def run_tool_calls(
    tools: Mapping[str, Tool] | Sequence[Tool],
    tool_uses: Sequence[ToolUseBlock],
    *,
    timeout: float | None = 60.0,  # noqa: ASYNC109  # each call's limit, as in tool_timeout=
) -> tuple[ToolResultBlock, ...]:
    """Run the calls concurrently, each under ``timeout``; the results in the calls' order.

    Cancelling this cancels every call and returns within ``CANCEL_GRACE`` seconds.
    """
    if not isinstance(tools, Mapping):
        tools = {t.name: t for t in tools}
    batch = ToolRound(tools, tool_uses, timeout=timeout)
    batch.start()
    try:
        while await batch.next_finished() is not None:
            pass
    except BaseException:
        await asyncio.shield(batch.aclose())
        raise
    return batch.results()
