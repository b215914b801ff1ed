"""Test support: FakeBedrock, a loopback Bedrock Runtime emulator, and its reply scripts."""

from .._retry import no_backoff
from ._recordings import load_recording, recordings_dir
from ._script import Fault, Script, ToolUse, raw_events, replay, reply
from ._server import Disconnect, FakeBedrock, ReceivedRequest

__all__ = [
    "Disconnect",
    "FakeBedrock",
    "Fault",
    "ReceivedRequest",
    "Script",
    "ToolUse",
    "load_recording",
    "no_backoff",
    "raw_events",
    "recordings_dir",
    "replay",
    "reply",
]
