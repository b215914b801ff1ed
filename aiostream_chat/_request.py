"""The request of one model call: built in one place, immutable, with its JSON body.

Everything a Converse request can carry is assembled by ``build_request``; the transport
sends ``Request.json()`` as it is, so fields and content blocks newer than the pinned botocore
still reach Bedrock.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._models import InferenceConfig, Message, ToolSpec
from ._options import RequestOptions, apply_options

__all__ = ["Request", "build_request", "encode_json"]


def _encode(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot send a {type(value).__name__} to Bedrock (not JSON-serialisable)")


def encode_json(value: Any) -> bytes:
    """JSON as Bedrock expects it: compact, bytes as base64 (like botocore)."""
    return json.dumps(value, default=_encode, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Request:
    """One ConverseStream call: the model and the JSON body (every field but ``modelId``)."""

    model_id: str
    body: dict[str, Any]
    _json: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Encoded once, up front: a value that cannot be sent fails here, before any I/O.
        object.__setattr__(self, "_json", encode_json(self.body))

    def json(self) -> bytes:
        """The body as sent."""
        return self._json


def build_request(
    *,
    model_id: str,
    messages: Sequence[Message],
    system: str | None = None,
    inference: InferenceConfig | None = None,
    tools: Sequence[ToolSpec] = (),
    options: RequestOptions | None = None,
    history_len: int = 0,
) -> Request:
    """The request for ``messages`` (history, then the new user message) with these settings.

    ``history_len`` counts the messages before this turn's prompt (where ``Cache(history=True)``
    puts its cache point); ``options`` are added last (see ``_options.apply_options``).
    """
    body: dict[str, Any] = {"messages": [m.to_bedrock() for m in messages]}
    if system:
        body["system"] = [{"text": system}]
    if inference is not None and (config := inference.to_bedrock()):
        body["inferenceConfig"] = config
    if tools:
        body["toolConfig"] = {"tools": [t.to_bedrock() for t in tools]}
    if options is not None:
        body = apply_options(body, options, model_id=model_id, history_len=history_len)
    return Request(model_id=model_id, body=body)
