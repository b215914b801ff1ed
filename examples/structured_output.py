"""Structured output: extract a typed record from text, and watch its fields fill in.

Run with:
    python examples/structured_output.py            # the bundled emulator: no AWS account needed
    python examples/structured_output.py --model us.anthropic.claude-haiku-4-5-20251001-v1:0

``stream(prompt, output=Model)`` asks for JSON matching the model's schema (Bedrock's native
structured output where the model supports it, a forced tool otherwise), yields
``OutputDelta(partial)`` events as the JSON grows, and ``get_reply().output`` is the validated
pydantic object. An answer that fails validation is sent back once with the errors.
"""

from __future__ import annotations

import argparse
import asyncio

from _emulator import add_bedrock_arguments, bedrock
from pydantic import BaseModel, Field

from aiostream_chat import AsyncConversation, OutputDelta
from aiostream_chat.testing import structured

TEXT = (
    "Hi, this is Maria Gonzalez from Acme Robotics. Please ship the 12 servo motors to "
    "Calle Mayor 5, Madrid, by Friday. You can reach me at maria@acme.example."
)


class Order(BaseModel):
    """A purchase order found in a message."""

    customer: str = Field(description="Full name of the person ordering")
    company: str | None = None
    item: str
    quantity: int = Field(ge=1)
    address: str
    email: str | None = None


async def main(args: argparse.Namespace) -> None:
    async with bedrock(args) as target:
        if target.fake is not None:  # the emulated model answers with this record, in pieces
            target.fake.responder = structured(
                {
                    "customer": "Maria Gonzalez",
                    "company": "Acme Robotics",
                    "item": "servo motor",
                    "quantity": 12,
                    "address": "Calle Mayor 5, Madrid",
                    "email": "maria@acme.example",
                },
                chunks=12,
                delay=0.03,
            )
        async with AsyncConversation(target.model_id, **target.connection) as conv:
            stream = conv.stream(f"Extract the order from this message:\n\n{TEXT}", output=Order)
            async with stream:
                async for event in stream.events():
                    if isinstance(event, OutputDelta):
                        print(f"partial: {event.partial}")
                reply = await stream.get_reply()
            order: Order = reply.output
            print(f"Order: {order.quantity} x {order.item} for {order.customer} ({order.email})")
            print(f"Ship to: {order.address}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bedrock_arguments(parser)
    asyncio.run(main(parser.parse_args()))
