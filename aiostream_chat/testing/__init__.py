"""Test support: FakeBedrock, a loopback Bedrock Runtime emulator, and its reply scripts."""

from .._retry import no_backoff, set_backoff
from ._agent_script import agent, structured, tool_results, tool_rounds
from ._recordings import load_recording, recordings_dir
from ._script import Fault, Script, ToolUse, raw_events, replay, reply
from ._server import Disconnect, FakeBedrock, ReceivedRequest

__all__ = [
    "Disconnect",
    "FakeBedrock",
    "Fault",
    "ReceivedRequest",
    "RespxBedrock",
    "Script",
    "ToolUse",
    "agent",
    "load_recording",
    "no_backoff",
    "raw_events",
    "recordings_dir",
    "replay",
    "reply",
    "set_backoff",
    "structured",
    "tool_results",
    "tool_rounds",
]


def __getattr__(name: str) -> object:
    # RespxBedrock needs respx and httpx, which only tests install: import it on first use.
    if name == "RespxBedrock":
        from ._respx import RespxBedrock

        return RespxBedrock
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
