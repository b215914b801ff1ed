"""Shared by the web chat examples: the demo tool and the emulator's model that calls it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from aiostream_chat import tool
from aiostream_chat.testing import ToolUse, agent, tool_rounds

__all__ = ["demo_model", "local_time"]


@tool
def local_time(city: Annotated[str, "The city the user asked about"]) -> str:
    """The current time (UTC) for a city."""
    return f"It is {datetime.now(UTC):%H:%M} UTC (the server's clock; {city} may differ)"


def demo_model(fake: Any) -> Any:
    """On the emulator: a model that calls local_time when asked about the time."""
    default = fake.responder
    clock = agent([ToolUse("local_time", {"city": "Paris"})], say="Let me check the clock. ")

    def respond(request: Any) -> Any:
        if tool_rounds(request) or "time" in request.prompt_text.lower():
            return clock(request)
        return default(request)

    return respond
