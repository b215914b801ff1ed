"""RequestOptions: checks before I/O, the fields they add, metadata, the emulator rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest

from aiostream_chat import (
    Cache,
    CachePoint,
    ConversationState,
    Guardrail,
    InferenceConfig,
    Message,
    Metadata,
    RequestOptions,
    TextBlock,
    Thinking,
    ToolSpec,
)
from aiostream_chat._accumulator import Accumulator
from aiostream_chat._options import apply_options, check_options, model_family
from aiostream_chat.testing import FakeBedrock, reply
from aiostream_chat.testing._validate_request import problem

CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
NOVA2 = "us.amazon.nova-2-lite-v1:0"
GPT_OSS = "openai.gpt-oss-120b-1:0"
TOOL = ToolSpec("lookup", "Look a word up.", {"type": "object", "properties": {}})


def body(history: int = 1) -> dict[str, Any]:
    """A request body with ``history`` earlier messages, then the prompt."""
    messages = [Message.user("hi").to_bedrock(), Message.assistant("hello").to_bedrock()]
    return {
        "messages": [*messages[:history], Message.user("now?").to_bedrock()],
        "system": [{"text": "Be brief."}],
        "toolConfig": {"tools": [TOOL.to_bedrock()]},
        "inferenceConfig": {"maxTokens": 4000},
    }


def check(options: RequestOptions, model_id: str = CLAUDE, **kw: Any) -> None:
    kw.setdefault("tool_names", ["lookup"])
    check_options(options, model_id=model_id, **kw)


@pytest.mark.parametrize(
    ("model_id", "family"),
    [
        ("anthropic.claude-3-7-sonnet-20250219-v1:0", "claude"),
        (CLAUDE, "claude"),
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
            "eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "claude",
        ),
        ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2", "claude"),
        (NOVA2, "nova2"),
        ("amazon.nova-2-lite-v1:0", "nova2"),
        (GPT_OSS, "gpt-oss"),
        ("us.amazon.nova-micro-v1:0", None),
        ("meta.llama3-70b-instruct-v1:0", None),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123", None),
    ],
)
def test_model_family_sees_through_prefixes_and_arns(model_id: str, family: str | None) -> None:
    """Region prefixes (us./eu./global.) and ARNs do not hide a model's reasoning family."""
    assert model_family(model_id) == family


def test_thinking_maps_to_each_family_shape() -> None:
    """Claude gets thinking.budget_tokens, Nova 2 reasoningConfig, gpt-oss reasoning_effort."""
    claude = apply_options(
        body(),
        RequestOptions(thinking=Thinking(budget_tokens=2048)),
        model_id=CLAUDE,
        history_len=1,
    )
    assert claude["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}
    }
    nova = apply_options(
        body(), RequestOptions(thinking=Thinking(effort="medium")), model_id=NOVA2, history_len=1
    )
    assert nova["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "medium"}
    }
    oss = apply_options(
        body(), RequestOptions(thinking=Thinking(effort="high")), model_id=GPT_OSS, history_len=1
    )
    assert oss["additionalModelRequestFields"] == {"reasoning_effort": "high"}


def test_thinking_on_an_unknown_family_names_additional_request_fields() -> None:
    """A model whose reasoning shape we cannot tell fails before I/O, naming the escape hatch."""
    with pytest.raises(ValueError, match="additional_request_fields"):
        check(RequestOptions(thinking=Thinking(effort="low")), "meta.llama3-70b-instruct-v1:0")


@pytest.mark.parametrize(
    ("options", "kw", "words"),
    [
        (RequestOptions(thinking=Thinking(budget_tokens=512)), {}, "at least 1024"),
        (RequestOptions(thinking=Thinking(budget_tokens=4096)), {"max_tokens": 4096}, "below"),
        (
            RequestOptions(thinking=Thinking(budget_tokens=2048)),
            {"temperature": 0.2},
            "temperature",
        ),
        (
            RequestOptions(
                thinking=Thinking(budget_tokens=2048), additional_request_fields={"top_k": 5}
            ),
            {},
            "top_k",
        ),
        (RequestOptions(thinking=Thinking(budget_tokens=2048), tool_choice="any"), {}, "forced"),
        (RequestOptions(thinking=Thinking(budget_tokens=2048), tool_choice="lookup"), {}, "forced"),
        (RequestOptions(thinking=Thinking(effort="low")), {}, "budget_tokens"),
    ],
)
def test_claude_thinking_rules_fail_before_io(
    options: RequestOptions, kw: dict[str, Any], words: str
) -> None:
    """What Bedrock rejects for Claude's extended thinking is a ValueError saying why."""
    with pytest.raises(ValueError, match=words):
        check(options, **kw)


def test_claude_thinking_that_bedrock_accepts_passes() -> None:
    """Budget >= 1024 below max_tokens, temperature 1, tool_choice auto: no error."""
    options = RequestOptions(thinking=Thinking(budget_tokens=1024), tool_choice="auto")
    check(options, max_tokens=2048, temperature=1)


def test_effort_families_need_an_effort() -> None:
    """Nova 2 and gpt-oss reason by effort: a budget alone is refused."""
    with pytest.raises(ValueError, match="effort"):
        check(RequestOptions(thinking=Thinking(budget_tokens=2048)), NOVA2)


def test_tool_choice_must_name_a_tool_of_the_turn() -> None:
    """tool_choice naming an unknown tool, or any tool_choice without tools, fails before I/O."""
    with pytest.raises(ValueError, match="names no tool"):
        check(RequestOptions(tool_choice="search"), tool_names=["lookup"])
    with pytest.raises(ValueError, match="needs tools"):
        check(RequestOptions(tool_choice="any"), tool_names=[])


def test_tool_choice_shapes() -> None:
    """auto/any/a tool name become Bedrock's toolChoice union inside toolConfig."""
    for choice, shape in [
        ("auto", {"auto": {}}),
        ("any", {"any": {}}),
        ("lookup", {"tool": {"name": "lookup"}}),
    ]:
        out = apply_options(
            body(), RequestOptions(tool_choice=choice), model_id=NOVA2, history_len=1
        )
        assert out["toolConfig"]["toolChoice"] == shape
        assert out["toolConfig"]["tools"] == [TOOL.to_bedrock()]


def test_cache_points_go_after_system_tools_and_history() -> None:
    """Cache(system, tools, history, ttl) appends cachePoint blocks in the three places."""
    original = body(history=2)
    options = RequestOptions(cache=Cache(system=True, tools=True, history=True, ttl="1h"))
    out = apply_options(original, options, model_id=CLAUDE, history_len=2)
    point = {"cachePoint": {"type": "default", "ttl": "1h"}}
    assert out["system"] == [{"text": "Be brief."}, point]
    assert out["toolConfig"]["tools"] == [TOOL.to_bedrock(), point]
    assert out["messages"][1]["content"] == [{"text": "hello"}, point]
    assert out["messages"][2]["content"] == [{"text": "now?"}]  # the prompt itself: none
    assert original == body(history=2)  # the input body is not changed
    first_turn = apply_options(body(history=0), options, model_id=CLAUDE, history_len=0)
    assert first_turn["messages"] == body(history=0)["messages"]
    plain = apply_options(
        body(), RequestOptions(cache=Cache(system=True)), model_id=CLAUDE, history_len=1
    )
    assert plain["system"][-1] == {"cachePoint": {"type": "default"}}


def test_cache_points_beyond_bedrocks_limit_fail() -> None:
    """More than 4 cache points in one request (ours plus the prompt's) is a ValueError."""
    request = body(history=1)
    request["messages"][-1]["content"] += [CachePoint().to_bedrock(), CachePoint().to_bedrock()]
    options = RequestOptions(cache=Cache(system=True, tools=True, history=True))
    with pytest.raises(ValueError, match="at most 4"):
        apply_options(request, options, model_id=CLAUDE, history_len=1)


def test_every_option_lands_on_its_request_field() -> None:
    """Each option maps to the exact field Bedrock documents; extra_body merges last."""
    options = RequestOptions(
        guardrail=Guardrail("gr1abc", "3", trace="enabled_full", stream_mode="async"),
        latency="optimized",
        service_tier="flex",
        request_metadata={"team": "search", "run": "42"},
        prompt_variables={"topic": "cats"},
        additional_request_fields={"top_k": 40},
        additional_response_field_paths=["/stop_sequence"],
        extra_body={"inferenceConfig": {"topP": 0.5}, "newField": {"on": True}},
    )
    original = body()
    out = apply_options(original, options, model_id=NOVA2, history_len=1)
    assert out["guardrailConfig"] == {
        "guardrailIdentifier": "gr1abc",
        "guardrailVersion": "3",
        "trace": "enabled_full",
        "streamProcessingMode": "async",
    }
    assert out["performanceConfig"] == {"latency": "optimized"}
    assert out["serviceTier"] == {"type": "flex"}
    assert out["requestMetadata"] == {"team": "search", "run": "42"}
    assert out["promptVariables"] == {"topic": {"text": "cats"}}
    assert out["additionalModelRequestFields"] == {"top_k": 40}
    assert out["additionalModelResponseFieldPaths"] == ["/stop_sequence"]
    assert out["inferenceConfig"] == {"maxTokens": 4000, "topP": 0.5}
    assert out["newField"] == {"on": True}
    assert original["inferenceConfig"] == {"maxTokens": 4000}


def test_additional_fields_merge_with_thinking() -> None:
    """User additional_request_fields sit beside the thinking fields (and win on a clash)."""
    options = RequestOptions(
        thinking=Thinking(budget_tokens=2048),
        additional_request_fields={"anthropic_beta": ["interleaved-thinking-2025-05-14"]},
    )
    out = apply_options(body(), options, model_id=CLAUDE, history_len=1)
    assert out["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "anthropic_beta": ["interleaved-thinking-2025-05-14"],
    }


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: Thinking(), "budget_tokens or effort"),
        (lambda: Thinking(effort="extreme"), "effort"),
        (lambda: Cache(ttl="2h"), "ttl"),
        (lambda: Guardrail("gr1", "latest"), "version"),
        (lambda: Guardrail("GR 1", "1"), "id"),
        (lambda: RequestOptions(service_tier="gold"), "service_tier"),
        (lambda: RequestOptions(latency="fast"), "latency"),
        (lambda: RequestOptions(request_metadata={f"k{i}": "v" for i in range(17)}), "16"),
        (lambda: RequestOptions(request_metadata={"bad key!": "v"}), "request_metadata"),
        (lambda: RequestOptions(additional_response_field_paths=["a"] * 11), "10"),
        (lambda: RequestOptions(additional_response_field_paths=["stop"]), "JSON pointer"),
        (lambda: RequestOptions(tool_choice=""), "empty"),
    ],
)
def test_bad_options_are_one_plain_sentence(build: Any, words: str) -> None:
    """Bad option values raise ValueError at construction, one line, no pydantic URL."""
    with pytest.raises(ValueError, match=words) as caught:
        build()
    assert "\n" not in str(caught.value) and "pydantic" not in str(caught.value)


def test_a_str_where_a_sequence_belongs_is_a_type_error() -> None:
    """additional_response_field_paths="/x" is a TypeError, not ten one-letter paths."""
    with pytest.raises(TypeError, match="not a str"):
        RequestOptions(additional_response_field_paths="/stop_sequence")


def test_options_round_trip_through_conversation_state() -> None:
    """ConversationState keeps options and restores them equal from JSON."""
    options = RequestOptions(
        thinking=Thinking(budget_tokens=2048),
        cache=Cache(system=True, ttl="5m"),
        guardrail=Guardrail("gr1", "DRAFT"),
        service_tier="priority",
        request_metadata={"a": "b"},
        extra_body={"x": [1, {"y": None}], "blob": b"\xfb\xff\xbf"},
    )
    state = ConversationState(model_id=CLAUDE, options=options)
    restored = ConversationState.model_validate_json(state.model_dump_json())
    assert restored == state
    assert restored.options is not None and restored.options.extra_body["blob"] == b"\xfb\xff\xbf"


def test_metadata_keeps_tier_latency_and_the_rest() -> None:
    """The metadata event's serviceTier, performanceConfig and cacheDetails are all kept."""
    acc = Accumulator()
    event = acc.handle(
        "metadata",
        {
            "usage": {
                "inputTokens": 10,
                "outputTokens": 5,
                "totalTokens": 15,
                "cacheReadInputTokens": 3,
                "cacheWriteInputTokens": 7,
                "cacheDetails": [{"ttl": "1h", "inputTokens": 7}],
            },
            "metrics": {"latencyMs": 120},
            "serviceTier": {"type": "priority"},
            "performanceConfig": {"latency": "optimized"},
            "somethingNewer": {"a": 1},
            "p": "abcdef",
        },
    )
    assert isinstance(event, Metadata)
    assert (event.service_tier, event.latency, event.server_latency_ms) == (
        "priority",
        "optimized",
        120,
    )
    assert event.extra == {
        "cacheDetails": [{"ttl": "1h", "inputTokens": 7}],
        "somethingNewer": {"a": 1},
    }
    assert (event.usage.cache_read_input_tokens, event.usage.cache_write_input_tokens) == (3, 7)


async def test_scripted_metadata_reaches_the_reply(
    fake_bedrock: FakeBedrock, make_conv: Any
) -> None:
    """FakeBedrock scripts tier, latency and cache details; the Reply and events keep them."""
    usage = {
        "inputTokens": 1200,
        "outputTokens": 9,
        "totalTokens": 1209,
        "cacheReadInputTokens": 1100,
        "cacheWriteInputTokens": 0,
        "cacheDetails": [],
    }
    metadata = {"serviceTier": {"type": "flex"}, "performanceConfig": {"latency": "standard"}}
    fake_bedrock.enqueue(reply("Cached.", usage=usage, metadata=metadata))
    conv = make_conv()
    async with conv.stream("hi") as stream:
        events = [e async for e in stream.events()]
        result = await stream.get_reply()
    (meta,) = [e for e in events if isinstance(e, Metadata)]
    assert (meta.service_tier, meta.latency, meta.extra) == (
        "flex",
        "standard",
        {"cacheDetails": []},
    )
    assert (result.service_tier, result.latency) == ("flex", "standard")
    assert result.usage.cache_read_input_tokens == 1100
    assert result.metadata_extra == {"cacheDetails": []}


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"serviceTier": {"type": "gold"}}, "serviceTier.type"),
        ({"serviceTier": "priority"}, "serviceTier"),
        ({"performanceConfig": {"latency": "fast"}}, "performanceConfig.latency"),
        ({"guardrailConfig": {"guardrailIdentifier": "g1"}}, "guardrailVersion"),
        (
            {
                "guardrailConfig": {
                    "guardrailIdentifier": "g1",
                    "guardrailVersion": "1",
                    "streamProcessingMode": "later",
                }
            },
            "streamProcessingMode",
        ),
        ({"requestMetadata": {}}, "requestMetadata"),
        ({"promptVariables": {"a": "b"}}, "promptVariables.a"),
        ({"additionalModelResponseFieldPaths": ["stop"]}, "JSON pointer"),
        ({"system": [{"text": "s"}, {"cachePoint": {"type": "ephemeral"}}]}, "cachePoint.type"),
        ({"system": [{"cachePoint": {"type": "default", "ttl": "2h"}}]}, "cachePoint.ttl"),
        (
            {"toolConfig": {"tools": [TOOL.to_bedrock()], "toolChoice": {"tool": {"name": "x"}}}},
            "toolChoice",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"text": "t"},
                            {"image": {"format": "bmp", "source": {"bytes": "AA=="}}},
                        ],
                    }
                ]
            },
            "image.format",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "document": {
                                    "format": "pdf",
                                    "name": "a",
                                    "source": {"bytes": "AA=="},
                                }
                            }
                        ],
                    }
                ]
            },
            "text block with the document",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"text": "t"}, {"cachePoint": {"type": "default"}}] * 5,
                    }
                ]
            },
            "cache points",
        ),
        (
            {
                "additionalModelRequestFields": {
                    "thinking": {"type": "enabled", "budget_tokens": 100}
                }
            },
            "1024",
        ),
    ],
)
def test_emulator_rejects_shapes_bedrock_rejects(patch: dict[str, Any], where: str) -> None:
    """FakeBedrock's validator finds what Bedrock documents as invalid, and says where."""
    request = {"messages": [{"role": "user", "content": [{"text": "hi"}]}], **patch}
    found = problem(request, CLAUDE, "converse-stream")
    assert found is not None and where in found


def test_emulator_accepts_every_shape_the_library_builds() -> None:
    """Everything apply_options produces passes FakeBedrock's validator."""
    options = RequestOptions(
        thinking=Thinking(budget_tokens=2048),
        tool_choice="auto",
        cache=Cache(system=True, tools=True, history=True, ttl="5m"),
        guardrail=Guardrail("gr1abc", "DRAFT", trace="enabled", stream_mode="async"),
        latency="optimized",
        service_tier="priority",
        request_metadata={"k": "v"},
        prompt_variables={"p": "v"},
        additional_response_field_paths=["/stop_sequence"],
    )
    out = apply_options(body(history=2), options, model_id=CLAUDE, history_len=2)
    assert problem(json.loads(json.dumps(out)), CLAUDE, "converse-stream") is None


async def test_emulator_answers_a_bad_body_with_a_400_validation_exception(
    fake_bedrock: FakeBedrock,
) -> None:
    """A wrong shape gets HTTP 400 with x-amzn-ErrorType ValidationException, like Bedrock."""
    url = f"{fake_bedrock.endpoint_url}/model/{CLAUDE}/converse-stream"
    payload = {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "serviceTier": {"type": "gold"},
    }
    async with aiohttp.ClientSession() as http, http.post(url, json=payload) as response:
        assert response.status == 400
        assert response.headers["x-amzn-ErrorType"].startswith("ValidationException:")
        message = (await response.json())["message"]
    assert "serviceTier.type" in message and "priority, default, flex, reserved" in message
    assert fake_bedrock.requests[0].body["serviceTier"] == {"type": "gold"}


def test_inference_config_and_prompt_blocks_are_untouched() -> None:
    """Options never change the prompt's own blocks (a TextBlock stays a text entry)."""
    out = apply_options(body(), RequestOptions(), model_id=CLAUDE, history_len=1)
    assert out == body()
    assert TextBlock("now?").to_bedrock() == out["messages"][-1]["content"][0]
    assert InferenceConfig(max_tokens=4000).to_bedrock() == out["inferenceConfig"]


# -- through the whole stack: botocore, the transport and the emulator ---------------------


async def test_service_tier_that_botocore_rejects_reaches_the_emulator(
    fake_bedrock: FakeBedrock, make_conv: Any
) -> None:
    """serviceTier (unknown to botocore 1.40, which would raise ParamValidationError) is sent."""
    conv = make_conv(options=RequestOptions(service_tier="priority", latency="optimized"))
    await conv.send("hi")
    sent = fake_bedrock.requests[0].body
    assert sent["serviceTier"] == {"type": "priority"}
    assert sent["performanceConfig"] == {"latency": "optimized"}
    assert sent["messages"] == [{"role": "user", "content": [{"text": "hi"}]}]


async def test_every_option_arrives_at_the_wire(fake_bedrock: FakeBedrock, make_conv: Any) -> None:
    """The JSON the emulator received holds each option in Bedrock's documented shape."""
    options = RequestOptions(
        thinking=Thinking(budget_tokens=2048),
        tool_choice="auto",
        cache=Cache(system=True, tools=True, history=True, ttl="1h"),
        guardrail=Guardrail("gr1abc", "2", trace="enabled", stream_mode="async"),
        request_metadata={"tenant": "acme"},
        prompt_variables={"city": "Paris"},
        additional_response_field_paths=["/stop_sequence"],
        extra_body={"brandNewField": {"x": 1}},
    )
    conv = make_conv(
        CLAUDE,
        system="Be brief.",
        tools=[TOOL],
        inference=InferenceConfig(max_tokens=4096),
        options=options,
    )
    await conv.send("first")
    await conv.send([TextBlock("second"), CachePoint(ttl="1h")])
    first, second = (r.body for r in fake_bedrock.requests)
    point = {"cachePoint": {"type": "default", "ttl": "1h"}}
    assert first["system"] == [{"text": "Be brief."}, point]
    assert first["toolConfig"]["tools"][-1] == point
    assert first["toolConfig"]["toolChoice"] == {"auto": {}}
    assert first["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}
    }
    assert first["guardrailConfig"]["streamProcessingMode"] == "async"
    assert first["requestMetadata"] == {"tenant": "acme"}
    assert first["promptVariables"] == {"city": {"text": "Paris"}}
    assert first["additionalModelResponseFieldPaths"] == ["/stop_sequence"]
    assert first["brandNewField"] == {"x": 1}
    assert first["messages"] == [{"role": "user", "content": [{"text": "first"}]}]
    assert second["messages"][1]["content"][-1] == point  # after the last history message
    assert second["messages"][2]["content"] == [{"text": "second"}, point]
    assert "cachePoint" not in str(conv.history[1].to_bedrock())  # history stays clean


async def test_per_turn_options_replace_the_conversations(
    fake_bedrock: FakeBedrock, make_conv: Any
) -> None:
    """stream(options=...) replaces the conversation's options for that turn only."""
    conv = make_conv(options=RequestOptions(service_tier="flex"))
    await conv.send("one", options=RequestOptions(latency="optimized"))
    await conv.send("two")
    first, second = (r.body for r in fake_bedrock.requests)
    assert "serviceTier" not in first and first["performanceConfig"] == {"latency": "optimized"}
    assert second["serviceTier"] == {"type": "flex"} and "performanceConfig" not in second


async def test_bad_options_fail_at_the_call_before_any_io(
    fake_bedrock: FakeBedrock, make_conv: Any
) -> None:
    """Options Bedrock would reject raise ValueError at the call; nothing is sent."""
    conv = make_conv(CLAUDE, tools=[TOOL], inference=InferenceConfig(max_tokens=1000))
    with pytest.raises(ValueError, match="below max_tokens"):
        conv.stream("hi", options=RequestOptions(thinking=Thinking(budget_tokens=2000)))
    with pytest.raises(ValueError, match="names no tool"):
        conv.stream("hi", options=RequestOptions(tool_choice="search"))
    with pytest.raises(ValueError, match="additional_request_fields"):
        make_conv(
            "meta.llama3-70b-instruct-v1:0", options=RequestOptions(thinking=Thinking(effort="low"))
        )
    with pytest.raises(TypeError, match="options must be RequestOptions"):
        conv.stream("hi", options={"service_tier": "flex"})
    assert fake_bedrock.requests == [] and not conv.busy


async def test_a_shape_bedrock_rejects_fails_as_invalid_request(
    fake_bedrock: FakeBedrock, make_conv: Any
) -> None:
    """extra_body with a wrong shape gets the emulator's 400, raised as InvalidRequestError."""
    from aiostream_chat import InvalidRequestError

    conv = make_conv(options=RequestOptions(extra_body={"serviceTier": {"type": "gold"}}))
    with pytest.raises(InvalidRequestError, match=r"serviceTier\.type"):
        await conv.send("hi")
    assert conv.history == () and not conv.busy


async def test_snapshot_keeps_options(fake_bedrock: FakeBedrock, make_conv: Any) -> None:
    """A conversation restored from a JSON snapshot sends the same options."""
    options = RequestOptions(service_tier="priority", cache=Cache(history=True))
    conv = make_conv(options=options)
    await conv.send("one")
    state = ConversationState.model_validate_json(conv.snapshot().model_dump_json())
    assert state.options == options
    restored = make_conv(**{"options": state.options, "history": state.history})
    await restored.send("two")
    assert fake_bedrock.requests[-1].body["serviceTier"] == {"type": "priority"}


# -- the command line -----------------------------------------------------------------------


def _cli_target(fake: FakeBedrock, model: str = CLAUDE) -> list[str]:
    return ["--model", model, "--region", "us-east-1", "--endpoint-url", fake.endpoint_url]


async def test_cli_thinking_and_attachments_reach_the_request(
    fake_bedrock: FakeBedrock, tmp_path: Any
) -> None:
    """chat --thinking BUDGET --image PATH --document PATH (repeatable) sends the thinking
    field and the files, attached to the prompt after its text."""
    from tests.test_blocks import PDF, PNG
    from tests.test_cli import run

    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "b.gif").write_bytes(b"GIF89a")
    (tmp_path / "spec sheet.pdf").write_bytes(PDF)
    code, _, err = await run(
        "chat", *_cli_target(fake_bedrock), "--thinking", "2048", "--max-tokens", "4096",
        "--image", str(tmp_path / "a.png"), "--image", str(tmp_path / "b.gif"),
        "--document", str(tmp_path / "spec sheet.pdf"), "Compare them.",
    )  # fmt: skip
    assert code == 0, err
    body = fake_bedrock.requests[0].body
    assert body["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}
    }
    content = body["messages"][0]["content"]
    assert content[0] == {"text": "Compare them."}
    assert [next(iter(b)) for b in content[1:]] == ["image", "image", "document"]
    assert content[2]["image"]["format"] == "gif"
    assert content[3]["document"]["name"] == "spec sheet"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--thinking", "512"], "at least 1024"),
        (["--thinking", "2048", "--max-tokens", "1024"], "below max_tokens"),
        (["--image", "/nonexistent/cat.png"], "cannot attach"),
        (["--document", "notes.rtf"], "cannot attach"),
    ],
)
async def test_cli_bad_thinking_or_attachment_is_one_line_exit_2(
    fake_bedrock: FakeBedrock, extra: list[str], words: str
) -> None:
    """A budget Bedrock rejects or a file that cannot be attached: exit 2, one line, no I/O."""
    from tests.test_cli import assert_one_line, run

    code, _, err = await run("chat", *_cli_target(fake_bedrock), *extra, "hi")
    assert code == 2
    assert words in assert_one_line(err)
    assert fake_bedrock.requests == []


async def test_cli_thinking_on_a_model_without_a_known_shape_says_so(
    fake_bedrock: FakeBedrock,
) -> None:
    """--thinking on a model whose reasoning shape is unknown names additional_request_fields."""
    from tests.test_cli import assert_one_line, run

    target = _cli_target(fake_bedrock, "meta.llama3-70b-instruct-v1:0")
    code, _, err = await run("chat", *target, "--thinking", "2048", "hi")
    assert code == 2 and "additional_request_fields" in assert_one_line(err)


# -- grounded in real Bedrock exchanges (tests/fixtures/bedrock, from pydantic-ai) ------------

FIXTURES = Path(__file__).parent / "fixtures" / "bedrock"
EXCHANGES = {e["name"]: e for e in json.loads((FIXTURES / "converse_exchanges.json").read_text())}


@pytest.mark.parametrize("name", sorted(EXCHANGES))
def test_requests_bedrock_accepted_pass_the_emulator(name: str) -> None:
    """Every real request Bedrock answered 200 passes FakeBedrock's validator (it is not
    stricter than Bedrock), CountTokens included."""
    exchange = EXCHANGES[name]
    model_id, operation = (unquote(p) for p in exchange["uri"].rsplit("/", 2)[-2:])
    assert exchange["status"] == 200
    assert problem(exchange["request_body"], model_id, operation) is None


def test_option_shapes_match_requests_bedrock_accepted() -> None:
    """serviceTier, performanceConfig, guardrailConfig, cache points and toolChoice come out
    exactly as in real requests Bedrock accepted."""
    tier = EXCHANGES["bedrock_model_service_tier#0"]["request_body"]
    latency = EXCHANGES["bedrock_model_performance_config#0"]["request_body"]
    guard = EXCHANGES["bedrock_model_guardrail_config#0"]["request_body"]["guardrailConfig"]
    options = RequestOptions(
        service_tier="default",
        latency="optimized",
        guardrail=Guardrail(guard["guardrailIdentifier"], guard["guardrailVersion"], "enabled"),
    )
    out = apply_options({"messages": []}, options, model_id=NOVA2, history_len=0)
    assert out["serviceTier"] == tier["serviceTier"]
    assert out["performanceConfig"] == latency["performanceConfig"]
    assert {k: v for k, v in out["guardrailConfig"].items() if k in guard} == guard
    cached = EXCHANGES["bedrock_cache_write_and_read#0"]["request_body"]
    plain = {
        "messages": [],
        "system": cached["system"][:-1],
        "toolConfig": {"tools": cached["toolConfig"]["tools"][:-1]},
    }
    ours = apply_options(
        plain,
        RequestOptions(cache=Cache(system=True, tools=True), tool_choice="auto"),
        model_id=CLAUDE,
        history_len=0,
    )
    assert ours["system"] == cached["system"]
    assert ours["toolConfig"] == cached["toolConfig"]


@pytest.mark.parametrize(
    ("name", "tier", "latency", "extra_keys"),
    [
        ("bedrock_model_service_tier#0", "flex", None, set()),
        ("bedrock_model_performance_config#0", None, "optimized", {"serverToolUsage"}),
        (
            "bedrock_cache_write_and_read#0",
            None,
            None,
            {"cacheReadInputTokenCount", "cacheWriteInputTokenCount", "serverToolUsage"},
        ),
    ],
)
def test_real_metadata_is_kept(
    name: str, tier: str | None, latency: str | None, extra_keys: set[str]
) -> None:
    """Real usage/metrics/tier/latency (the metadata event's members) become Metadata fields;
    what we do not model (serverToolUsage, cache*TokenCount, ...) is kept in extra."""
    answer = EXCHANGES[name]["response_body"]
    payload = {k: v for k, v in answer.items() if k not in ("output", "stopReason")}
    event = Accumulator().handle("metadata", payload)
    assert isinstance(event, Metadata)
    assert (event.service_tier, event.latency) == (tier, latency)
    assert event.server_latency_ms == answer["metrics"]["latencyMs"]
    assert extra_keys <= event.extra.keys()
    usage = answer["usage"]
    assert event.usage.cache_write_input_tokens == usage.get("cacheWriteInputTokens", 0)
    assert event.usage.total_tokens == usage["totalTokens"]


def test_real_guardrail_trace_is_kept() -> None:
    """A real guardrail trace arrives whole on Metadata.trace."""
    answer = EXCHANGES["bedrock_model_guardrail_config#0"]["response_body"]
    event = Accumulator().handle("metadata", {k: answer[k] for k in ("usage", "metrics", "trace")})
    assert isinstance(event, Metadata) and event.trace == answer["trace"]
    assert event.trace is not None and "inputAssessment" in event.trace["guardrail"]
