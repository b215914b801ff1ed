"""FakeBedrock: a loopback Bedrock Runtime server speaking the real event-stream protocol."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import random
import socket
import ssl
import struct
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from aiohttp import web

from ._agent_script import schema_answer
from ._script import EVENT_STREAM, Chunk, Script, default_reply, play, status_of
from ._validate_request import check_request
from ._wire import converse_output, decode_events, error_type

__all__ = ["Disconnect", "FakeBedrock", "ReceivedRequest", "is_loopback"]

Operation = Literal["converse-stream", "converse", "count-tokens"]

# How long a connection stays up after a reset or corrupt frame, so the client reads what
# came before it first.
_SETTLE = 0.05


@dataclass(frozen=True)
class ReceivedRequest:
    """A model request as FakeBedrock received it."""

    index: int
    operation: Operation
    model_id: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    time: float

    @property
    def prompt_text(self) -> str:
        """The text blocks of the last user message, joined by newlines."""
        for message in reversed(self.body.get("messages", [])):
            if isinstance(message, dict) and message.get("role") == "user":
                blocks = message.get("content", [])
                return "\n".join(b["text"] for b in blocks if isinstance(b, dict) and "text" in b)
        return ""

    @property
    def auth(self) -> Literal["sigv4", "bearer", "none"]:
        """How the request authenticated: SigV4, a bearer token (Bedrock API key) or not at all."""
        value = next((v for k, v in self.headers.items() if k.lower() == "authorization"), "")
        if value.startswith("Bearer "):
            return "bearer"
        return "sigv4" if value.startswith("AWS4-HMAC-SHA256 ") else "none"


@dataclass(frozen=True)
class Disconnect:
    """The end of one response: written out completely, or cut short by the client or a fault."""

    request_index: int
    time: float
    completed: bool
    frames_sent: int


@dataclass
class _Call:
    request: ReceivedRequest
    frames: int = 0
    done: bool = False


@dataclass
class _Waiter:
    count: int
    future: asyncio.Future[None] = field(repr=False)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _route(method: str, raw_path: str) -> tuple[Operation, str] | None:
    parts = urlsplit(raw_path).path.split("/")
    if method != "POST" or len(parts) != 4 or parts[0] or parts[1] != "model" or not parts[2]:
        return None
    if parts[3] == "converse-stream":
        return "converse-stream", unquote(parts[2])
    if parts[3] == "converse":
        return "converse", unquote(parts[2])
    if parts[3] == "count-tokens":
        return "count-tokens", unquote(parts[2])
    return None


def _error(status: int, code: str, message: str) -> web.Response:
    headers = {"x-amzn-ErrorType": error_type(code), "x-amzn-RequestId": str(uuid.uuid4())}
    return web.json_response({"message": message}, status=status, headers=headers)


def _reset(transport: asyncio.BaseTransport | None) -> None:
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 turns close() into a TCP RST.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


class FakeBedrock:
    """A Bedrock Runtime emulator on loopback for ConverseStream and Converse."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 0.0,
        max_concurrent_streams: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"FakeBedrock only listens on loopback addresses, not {host!r}")
        # "localhost" may resolve to two addresses that would get different ports.
        self.host = "127.0.0.1" if host == "localhost" else host
        self.delay = delay
        self.max_concurrent_streams = max_concurrent_streams
        self.ssl_context = ssl_context  # serve HTTPS; clients pass its CA as verify=
        self.responder: Callable[[ReceivedRequest], Script] = self._default_reply
        self.requests: list[ReceivedRequest] = []
        self.disconnects: list[Disconnect] = []
        self.throttled = 0
        self.max_open_streams = 0
        self._requested_port = port
        self._port: int | None = None
        self._open = 0
        self._queue: deque[Script] = deque()
        self._waiters: list[_Waiter] = []
        self._live: dict[asyncio.Task[Any], web.BaseRequest] = {}
        self._runner: web.ServerRunner | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._port is None:
            raise RuntimeError("FakeBedrock is not started")
        return self._port

    @property
    def endpoint_url(self) -> str:
        """The URL to pass as endpoint_url, e.g. http://127.0.0.1:54321."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://{host}:{self.port}"

    @property
    def open_streams(self) -> int:
        """ConverseStream responses being written right now."""
        return self._open

    async def start(self) -> None:
        """Start listening."""
        if self._runner is not None:
            return
        server = web.Server(self._handle, handler_cancellation=True)
        runner = web.ServerRunner(server, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(
                runner, self.host, self._requested_port, ssl_context=self.ssl_context
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def aclose(self) -> None:
        """Stop listening and close every connection, cutting off responses in progress."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for request in list(self._live.values()):
            if request.transport is not None:
                request.transport.abort()
        if self._live:
            await asyncio.wait(list(self._live), timeout=2.0)
        await runner.cleanup()

    async def __aenter__(self) -> FakeBedrock:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def enqueue(self, *scripts: Script, times: int = 1) -> None:
        """Queue scripts for the next requests, in order; `times` repeats each one."""
        for script in scripts:
            self._queue.extend([script] * times)

    # The API promises a timeout argument, like asyncio.wait_for.
    async def wait_for_disconnects(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[Disconnect]:
        """Wait until at least `count` responses have ended; raise TimeoutError otherwise."""
        if len(self.disconnects) < count:
            waiter = _Waiter(count, asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(timeout):
                    await waiter.future
            except TimeoutError:
                got = len(self.disconnects)
                msg = f"{got} of {count} disconnects after {timeout} s"
                raise TimeoutError(msg) from None
            finally:
                self._waiters.remove(waiter)
        return list(self.disconnects)

    async def assert_all_closed(
        self,
        requests: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[Disconnect]:
        """Assert that every request got exactly one response end and none is still open.

        Waits up to ``timeout`` seconds for the ends; ``requests``, when given, is the number
        of requests that must have arrived. Returns the disconnects.
        """
        if requests is not None:
            assert len(self.requests) == requests, f"{len(self.requests)} requests, not {requests}"
        count = len(self.requests)
        try:
            disconnects = await self.wait_for_disconnects(count, timeout=timeout)
        except TimeoutError as exc:
            raise AssertionError(f"responses left open: {exc}") from None
        ends = sorted(d.request_index for d in disconnects)
        assert ends == list(range(count)), f"responses ended {ends} for {count} requests"
        assert self.open_streams == 0, f"{self.open_streams} responses still being written"
        return disconnects

    def reset(self) -> None:
        """Forget queued scripts, received requests, disconnects and counters."""
        self._queue.clear()
        self.requests.clear()
        self.disconnects.clear()
        self.throttled = 0
        self.max_open_streams = self._open

    def _default_reply(self, request: ReceivedRequest) -> Script:
        # A request for structured output (output=) gets an answer that fits its schema.
        return schema_answer(request, delay=self.delay) or default_reply(
            request.prompt_text, delay=self.delay
        )

    def _record(self, call: _Call, completed: bool) -> None:
        if call.done:
            return
        call.done = True
        self.disconnects.append(
            Disconnect(call.request.index, time.monotonic(), completed, call.frames)
        )
        for waiter in self._waiters:
            if len(self.disconnects) >= waiter.count and not waiter.future.done():
                waiter.future.set_result(None)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        route = _route(request.method, request.raw_path)
        if route is None:
            return _error(404, "UnknownOperationException", f"No route for {request.raw_path}")
        operation, model_id = route
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return _error(400, "ValidationException", "Malformed input request.")
        received = ReceivedRequest(
            index=len(self.requests),
            operation=operation,
            model_id=model_id,
            path=request.raw_path,
            body=body if isinstance(body, dict) else {},
            headers=dict(request.headers),
            time=time.monotonic(),
        )
        self.requests.append(received)
        if (answer := check_request(received)) is not None:  # 400 for a bad body; CountTokens
            return answer
        call = _Call(received)
        task = asyncio.current_task()
        assert task is not None
        self._live[task] = request
        try:
            if operation == "converse":
                return await self._converse(request, call, self._next_script(received))
            limit = self.max_concurrent_streams
            if limit is not None and self._open >= limit:
                self.throttled += 1
                self._record(call, completed=True)
                return _error(429, "ThrottlingException", "Too many concurrent requests.")
            self._open += 1
            self.max_open_streams = max(self.max_open_streams, self._open)
            try:
                return await self._stream(request, call, self._next_script(received))
            finally:
                self._open -= 1
        finally:
            del self._live[task]
            # Reached on cancellation too: aiohttp cancels the handler when the client leaves.
            self._record(call, completed=False)

    def _next_script(self, request: ReceivedRequest) -> Script:
        return self._queue.popleft() if self._queue else self.responder(request)

    async def _prelude(self, call: _Call, script: Script) -> web.Response | None:
        """Wait out the header delay; return the error response if the script answers one."""
        if script.header_delay:
            await asyncio.sleep(script.header_delay)
        fault = script.fault
        if fault is not None and fault.kind == "http":
            self._record(call, completed=True)
            return _error(fault.status, fault.code, fault.message)
        if script.body is not None and script.status != 200:
            self._record(call, completed=True)
            headers = {"x-amzn-RequestId": str(uuid.uuid4()), **dict(script.headers)}
            return web.Response(status=script.status, body=b"".join(script.body), headers=headers)
        return None

    async def _converse(
        self, request: web.BaseRequest, call: _Call, script: Script
    ) -> web.StreamResponse:
        failed = await self._prelude(call, script)
        if failed is not None:
            return failed
        fault = script.fault
        if fault is not None and fault.kind == "stall":
            await asyncio.sleep(fault.seconds)
        elif fault is not None and fault.kind in ("exception", "error"):
            self._record(call, completed=True)
            code = fault.code[:1].upper() + fault.code[1:]
            return _error(status_of(fault.code), code, fault.message)
        elif fault is not None:
            self._record(call, completed=False)
            _reset(request.transport)
            return web.Response()
        events = decode_events(script.body) if script.body is not None else script.events
        self._record(call, completed=True)
        answer = converse_output(events)
        return web.json_response(answer, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    async def _stream(
        self, request: web.BaseRequest, call: _Call, script: Script
    ) -> web.StreamResponse:
        failed = await self._prelude(call, script)
        if failed is not None:
            return failed
        headers = dict(script.headers) or {"Content-Type": EVENT_STREAM}
        response = web.StreamResponse(
            status=script.status, headers={**headers, "x-amzn-RequestId": str(uuid.uuid4())}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            async with contextlib.aclosing(play(script, random.Random(call.request.index))) as body:
                async for chunk in body:
                    if chunk.fault is not None:
                        await self._fault(request, response, call, chunk)
                        return response
                    await response.write(chunk.data)
                    call.frames += 1
            await response.write_eof()
        except ConnectionError:
            return response
        self._record(call, completed=True)
        return response

    async def _fault(
        self, request: web.BaseRequest, response: web.StreamResponse, call: _Call, chunk: Chunk
    ) -> None:
        kind = chunk.fault.kind if chunk.fault is not None else ""
        if kind == "reset":
            await asyncio.sleep(_SETTLE)
            self._record(call, completed=False)
            _reset(request.transport)
            return
        if chunk.data:
            await response.write(chunk.data)
            call.frames += kind != "half_frame"
        if kind == "corrupt_crc":
            await asyncio.sleep(_SETTLE)
        await response.write_eof()
        self._record(call, completed=True)
