"""The harmony renderer and parser, on token ids, against the format specification's examples."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from edge_runtime.engine import common_prefix
from edge_runtime.errors import PromptTooLong
from edge_runtime.harmony import (
    ChannelParser,
    CompletionContext,
    DecodeText,
    ExplainContext,
    HarmonyCodec,
    Neighbour,
    render_completion_prompt,
    render_explain_prompt,
)

# The specification's example conversation, as the model sees it (special tokens written out).
SPEC_PROMPT = (
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\n"
    "Current date: 2025-06-28\n\n"
    "Reasoning: high\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>"
    "<|start|>developer<|message|># Instructions\n\nAlways respond in riddles<|end|>"
    "<|start|>user<|message|>What is 2 + 2?<|end|>"
    "<|start|>assistant"
)
SPEC_OUTPUT = (
    '<|channel|>analysis<|message|>User asks: "What is 2 + 2?" Simple arithmetic. Provide answer.<|end|>'
    "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>"
)
SPEC_TOOL_CALL = (
    "<|channel|>analysis<|message|>Need to use function get_weather.<|end|>"
    '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location":"SF"}'
    "<|call|>"
)


@pytest.fixture(scope="module")
def tokenizer_file(tiny_mxfp4: Path) -> Path:
    return tiny_mxfp4 / "tokenizer.json"


@pytest.fixture
def codec(tokenizer_file: Path) -> HarmonyCodec:
    return HarmonyCodec(Tokenizer.from_file(str(tokenizer_file)))


@pytest.fixture
def reference(tokenizer_file: Path) -> Tokenizer:
    """The plain tokenizer, which turns written-out special tokens into their ids."""
    return Tokenizer.from_file(str(tokenizer_file))


def parse(codec: HarmonyCodec, ids: list[int], channel: str | None, single: bool) -> tuple[dict[str, str], str | None]:
    parser = ChannelParser(codec.special, channel, single_message=single)
    decode = DecodeText(codec.tokenizer)
    texts: dict[str, str] = {}
    for token in ids:
        for event in parser.feed(token, decode):
            if event.finish:
                return texts, event.finish
            assert event.token is not None
            texts[event.channel] = texts.get(event.channel, "") + decode.step(event.channel, event.token)
    return texts, None


def test_renders_the_specification_example_token_for_token(codec: HarmonyCodec, reference: Tokenizer) -> None:
    ids = [
        *codec.system("high", "2025-06-28"),
        *codec.developer("Always respond in riddles"),
        *codec.message("user", "What is 2 + 2?"),
        codec.special.start,
        *codec.text("assistant"),
    ]
    assert ids == reference.encode(SPEC_PROMPT, add_special_tokens=False).ids


def test_parses_the_specification_answer_into_channels(codec: HarmonyCodec, reference: Tokenizer) -> None:
    ids = reference.encode(SPEC_OUTPUT, add_special_tokens=False).ids
    texts, finish = parse(codec, ids, None, single=False)
    assert texts == {
        "analysis": 'User asks: "What is 2 + 2?" Simple arithmetic. Provide answer.',
        "final": "2 + 2 = 4.",
    }
    assert finish == "stop"


def test_a_tool_call_ends_the_output_on_its_channel(codec: HarmonyCodec, reference: Tokenizer) -> None:
    texts, finish = parse(codec, reference.encode(SPEC_TOOL_CALL, add_special_tokens=False).ids, None, single=False)
    assert finish == "tool_call"
    assert texts["commentary"] == '{"location":"SF"}'
    assert "final" not in texts


def test_completion_output_stops_at_end_and_drops_other_special_tokens(
    codec: HarmonyCodec, reference: Tokenizer
) -> None:
    ids = reference.encode("x + 1<|startoftext|><|channel|>)<|message|><|end|>more", add_special_tokens=False).ids
    texts, finish = parse(codec, ids, "final", single=True)
    assert texts == {"final": "x + 1)"}
    assert finish == "stop"
    texts, finish = parse(codec, reference.encode("y<|endoftext|>z", add_special_tokens=False).ids, "final", True)
    assert (texts, finish) == ({"final": "y"}, "stop")


def test_code_that_spells_special_tokens_stays_text(codec: HarmonyCodec) -> None:
    code = 'print("<|end|><|start|>system<|message|>")'
    ids = codec.text(code)
    specials = {codec.special.start, codec.special.end, codec.special.message}
    assert not specials & set(ids)
    assert codec.decode(ids) == code


def test_completion_prompt_skips_analysis_and_opens_the_final_channel_with_the_prefix(codec: HarmonyCodec) -> None:
    ctx = CompletionContext(
        prefix="def add(a, b):\n    return ", suffix="\n\nprint(add(1, 2))\n", path="m.py", language="python"
    )
    ids = render_completion_prompt(codec, ctx, 4096, "2026-01-01").ids
    text = codec.decode(ids)
    assert "Reasoning: low" in text
    assert text.endswith(
        "<|start|>assistant<|channel|>analysis<|message|><|end|>"
        "<|start|>assistant<|channel|>final<|message|>```python\ndef add(a, b):\n    return "
    )
    assert "print(add(1, 2))" in text.split("<|start|>user")[1].split("<|end|>")[0]


def test_typing_at_the_end_of_a_line_reuses_at_least_98_percent_of_the_prompt(codec: HarmonyCodec) -> None:
    source = Path(__file__).read_text()
    cut = source.index("def test_typing_at_the_end")
    prefix, suffix = source[:cut], source[cut:]
    neighbour = Neighbour(
        "edge_runtime/harmony.py", (Path(__file__).parent.parent / "edge_runtime/harmony.py").read_text()[:3000]
    )
    line = "    assert sum(values) == expected_total  # typed one key at a time"
    previous = render_completion_prompt(
        codec, CompletionContext(prefix, suffix, "t.py", "python", [neighbour]), 8192
    ).ids
    worst = 1.0
    for n in range(1, len(line) + 1):
        ctx = CompletionContext(prefix + line[:n], suffix, "t.py", "python", [neighbour])
        ids = render_completion_prompt(codec, ctx, 8192).ids
        worst = min(worst, common_prefix(previous, ids) / len(ids))
        previous = ids
    assert len(previous) > 2000
    assert worst >= 0.98


def test_a_prompt_over_the_limit_drops_neighbours_then_suffix_then_old_prefix(codec: HarmonyCodec) -> None:
    prefix = "".join(f"value_{i} = {i}\n" for i in range(3000))
    suffix = "".join(f"after_{i} = {i}\n" for i in range(500))
    ctx = CompletionContext(prefix + "total = ", suffix, "big.py", "python", [Neighbour("n.py", "x = 1\n" * 400)])
    rendered = render_completion_prompt(codec, ctx, 1500)
    assert len(rendered.ids) <= 1500
    assert rendered.truncated["neighbours"] == 1
    assert rendered.truncated["suffix_lines"] > 0
    assert rendered.truncated["prefix_lines"] % 32 == 0
    assert codec.decode(rendered.ids).endswith("value_2999 = 2999\ntotal = ")
    small = render_completion_prompt(codec, CompletionContext("x = ", "", "s.py"), 1500)
    assert small.truncated == {}


def test_prompts_that_cannot_fit_are_refused(codec: HarmonyCodec) -> None:
    with pytest.raises(PromptTooLong):
        render_completion_prompt(codec, CompletionContext("y" * 50000), 1000)
    with pytest.raises(PromptTooLong):
        render_explain_prompt(codec, ExplainContext("z = 1\n" * 2000), 1000)


def test_explain_prompt_carries_the_reasoning_effort_and_opens_the_analysis_channel(codec: HarmonyCodec) -> None:
    ids = render_explain_prompt(codec, ExplainContext("x = 1", "a.py", "python", reasoning="high"), 4096).ids
    text = codec.decode(ids)
    assert "Reasoning: high" in text
    assert text.endswith("x = 1\n```<|end|><|start|>assistant<|channel|>analysis<|message|>")


def test_a_stop_string_inside_the_code_before_the_cursor_does_not_end_the_output() -> None:
    from edge_runtime.engine import StopStrings

    # a one-line suggestion (stop "\n") two characters into a line: the lead holds the previous line's newline
    stops = StopStrings(["\n```", "\n"], lead="ab:\nx")
    assert stops.push("  = 1") == "  = 1" and not stops.hit
    assert stops.push("\nnext") == "" and stops.hit
    # the fence still stops where it begins in the lead: the output starts with ``` on a fresh line
    fence = StopStrings(["\n```"], lead="def f():\n")
    assert fence.push("```") == "" and fence.hit
