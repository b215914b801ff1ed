"""Public API usage that mypy --strict checks (tests/test_static.py); never executed.

If a public signature drifts from the API contract (API.md), mypy fails on this file.
"""

from __future__ import annotations

import contextlib

import aioboto3

from aiostream_chat import (
    AsyncConversation,
    ChatError,
    ChatStream,
    ConversationState,
    InferenceConfig,
    Message,
    Reply,
    RetryPolicy,
    StreamEvent,
    TextBlock,
    TextDelta,
    ThrottlingError,
    Timeouts,
    ToolResultBlock,
    ToolSpec,
    TurnCompleted,
    TurnFailed,
)


async def usage(session: aioboto3.Session) -> None:
    async with AsyncConversation(
        "us.amazon.nova-micro-v1:0",
        system="Be brief.",
        history=[Message.user("hi"), Message.assistant("hello")],
        inference=InferenceConfig(
            max_tokens=100, temperature=0.5, top_p=0.9, stop_sequences=("x",)
        ),
        tools=[ToolSpec(name="f", description="d", input_schema={"type": "object"})],
        session=session,
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:8000",
        max_connections=50,
        retry=RetryPolicy(max_attempts=3, initial_delay=0.1, max_delay=2.0, jitter=True),
        timeouts=Timeouts(connect=5.0, first_token=30.0, idle=10.0, total=None),
    ) as conv:
        model: str = conv.model_id
        system: str | None = conv.system
        history: tuple[Message, ...] = conv.history
        busy: bool = conv.busy
        stream: ChatStream = conv.stream("prompt", timeouts=Timeouts(idle=5.0))
        async for chunk in stream:
            text: str = chunk
        async with conv.stream([TextBlock(text="hi")], retry=RetryPolicy.none()) as s:
            async for event in s.events():
                if isinstance(event, TextDelta):
                    text = event.text
            reply: Reply = await s.get_reply()
            status: str = s.status
            error: ChatError | None = s.error
            partial: str = s.text
        reply = await conv.send(Message.user("again"), inference=InferenceConfig(max_tokens=5))
        reply = await conv.send(
            [ToolResultBlock(tool_use_id="t", content=({"text": "ok"},), status="success")]
        )
        seconds: float | None = reply.metrics.time_to_first_token
        tokens: int = reply.usage.total_tokens
        fork: AsyncConversation = conv.fork()
        results: list[Reply | BaseException] = await conv.fan_out(["a", "b"], concurrency=2)
        async for index, ev in conv.fan_out_stream(["a"], concurrency=1):
            pair: tuple[int, StreamEvent] = (index, ev)
            if isinstance(ev, TurnCompleted):
                reply = ev.reply
            elif isinstance(ev, TurnFailed):
                failure: BaseException = ev.error
        state: ConversationState = conv.snapshot()
        restored = AsyncConversation.from_state(
            ConversationState.model_validate_json(state.model_dump_json()), session=session
        )
        await restored.aclose()
        async with contextlib.aclosing(conv.stream("x")) as closing:
            await closing.get_reply()
        try:
            await conv.send("x")
        except ThrottlingError as exc:
            attempts: int = exc.attempts
            code: str = exc.code
            rid: str | None = exc.request_id
        del model, system, history, busy, text, status, error, partial, seconds, tokens
        del fork, results, pair, failure, attempts, code, rid


async def whole_request_usage(session: aioboto3.Session) -> None:
    """API.md section 7: options, media blocks, count_tokens, richer metadata."""
    from aiostream_chat import (
        Cache,
        CachePoint,
        DocumentBlock,
        GuardContent,
        Guardrail,
        ImageBlock,
        Metadata,
        RequestOptions,
        S3Location,
        Thinking,
        VideoBlock,
    )

    options = RequestOptions(
        thinking=Thinking(budget_tokens=2048, effort=None),
        tool_choice="auto",
        cache=Cache(system=True, tools=False, history=True, ttl="1h"),
        guardrail=Guardrail(id="gr1", version="1", trace="enabled", stream_mode="async"),
        latency="optimized",
        service_tier="priority",
        request_metadata={"a": "b"},
        prompt_variables={"v": "x"},
        additional_request_fields={"top_k": 5},
        additional_response_field_paths=("/stop_sequence",),
        extra_body={"newField": 1},
    )
    async with AsyncConversation("m", session=session, options=options) as conv:
        image: ImageBlock = await ImageBlock.from_path("cat.png")
        doc = DocumentBlock(format="pdf", name="Doc", source=b"%PDF", citations=True)
        video = VideoBlock(format="mp4", source=S3Location(uri="s3://bkt/v.mp4", bucket_owner=None))
        count: int = await conv.count_tokens([TextBlock(text="hi"), image, doc, video])
        reply: Reply = await conv.send(
            [TextBlock(text="hi"), CachePoint(ttl="5m"), GuardContent(text="g", qualifiers=())],
            options=RequestOptions(service_tier="flex"),
        )
        tier: str | None = reply.service_tier
        _ = (count, tier, await conv.count_tokens())
        async with conv.stream("x", options=None) as stream:
            async for event in stream.events():
                if isinstance(event, Metadata):
                    extra: dict[str, object] = event.extra
                    _ = (event.service_tier, event.latency, extra)
        state: ConversationState = conv.snapshot()
        _ = state.options
