"""ConverseStream mocked in-process with respx, for clients on aiobotocore's httpx backend.

The same scripts as FakeBedrock (``reply()``, ``replay()``, faults) are rendered as real
event-stream bytes in an ``httpx`` response, so botocore's signing and error parsing and our
decoder still run; only the socket is gone. Use it inside ``respx.mock(using="httpx")``: the
default httpcore-level mock rebuilds a wrong URL from aiobotocore's request target.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import httpx
import respx

from ._script import EVENT_STREAM, Script, default_reply, play
from ._wire import error_type

__all__ = ["RespxBedrock"]

_PATH = r"^/model/(?P<model_id>[^/]+)/converse-stream$"


class _ScriptBody(httpx.AsyncByteStream):
    """The body of one scripted response; records whether the client closed it early."""

    def __init__(self, owner: RespxBedrock, script: Script, seed: int) -> None:
        self._owner = owner
        self._script = script
        self._rng = random.Random(seed)
        self.finished = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async with contextlib.aclosing(play(self._script, self._rng)) as body:
            async for chunk in body:
                if chunk.fault is not None and chunk.fault.kind == "reset":
                    raise httpx.ReadError("connection reset by peer (scripted)")
                if chunk.data:
                    yield chunk.data
        self.finished = True

    async def aclose(self) -> None:
        if not self.finished:
            self._owner.closed_early += 1


class RespxBedrock:
    """A respx route answering ConverseStream from queued scripts (then a default reply)."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.requests: list[httpx.Request] = []
        self.closed_early = 0
        """Responses the client closed before their body ended (cancellation, break)."""
        self._queue: deque[Script] = deque()
        self.route = router.post(path__regex=_PATH).mock(side_effect=self._answer)

    def enqueue(self, *scripts: Script, times: int = 1) -> None:
        """Answer the next requests with these scripts, in order, each ``times`` times."""
        for script in scripts:
            self._queue.extend([script] * times)

    @property
    def model_ids(self) -> list[str]:
        return [unquote(r.url.raw_path.decode().split("/")[2]) for r in self.requests]

    def body(self, index: int = -1) -> dict[str, Any]:
        """The JSON body of a received request."""
        return dict(json.loads(self.requests[index].content))

    async def _answer(self, request: httpx.Request, model_id: str = "") -> httpx.Response:
        self.requests.append(request)
        if self._queue:
            script = self._queue.popleft()
        else:
            prompt = self.body()["messages"][-1]["content"][0].get("text", "")
            script = default_reply(prompt)
        if script.header_delay:
            await asyncio.sleep(script.header_delay)
        headers = {"x-amzn-RequestId": str(uuid.uuid4())}
        fault = script.fault
        if fault is not None and fault.kind == "http":
            headers["x-amzn-ErrorType"] = error_type(fault.code)
            return httpx.Response(fault.status, headers=headers, json={"message": fault.message})
        headers.update(dict(script.headers) or {"Content-Type": EVENT_STREAM})
        if script.status != 200:
            return httpx.Response(
                script.status, headers=headers, content=b"".join(script.body or ())
            )
        body = _ScriptBody(self, script, len(self.requests))
        return httpx.Response(200, headers=headers, stream=body)
