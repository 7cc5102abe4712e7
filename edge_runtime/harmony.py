"""The harmony format on token ids: prompts for completion and explanation, and a parser for what the model writes.

Text is encoded with special-token matching switched off, so code that happens to contain `<|end|>` stays text;
the format's own special tokens are inserted by id. Everything that changes on a keystroke sits at the end of
the completion prompt, so that typing only appends tokens to what the KV cache already holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream

from edge_runtime.errors import ModelFolderError, PromptTooLong
from edge_runtime.protocol import REASONING_EFFORTS

# gpt-oss's harmony special tokens, in the order of their ids in its tokenizer (o200k_harmony).
HARMONY_SPECIAL_TOKENS = (
    "<|startoftext|>",
    "<|endoftext|>",
    "<|return|>",
    "<|constrain|>",
    "<|channel|>",
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|call|>",
)
# The ones the runtime's prompts and parser use: a checkpoint's and a model folder's tokenizer must keep each whole.
SPECIAL_TOKENS = ("<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>", "<|call|>", "<|constrain|>")
MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
KNOWLEDGE_CUTOFF = "2024-06"
VALID_CHANNELS = "# Valid channels: analysis, commentary, final. Channel must be included for every message."

COMPLETION_INSTRUCTIONS = (
    "You are a code completion engine inside an editor. The user message shows the file being edited and the "
    "code that follows the cursor. Your final message already starts with the code before the cursor: continue "
    "it from exactly where it stops. Write only code, no commentary and no explanation. Do not repeat the code "
    "after the cursor; close the code block with ``` where your insertion ends."
)
EXPLAIN_INSTRUCTIONS = (
    "You explain code to the developer who is working on it. Be precise and brief: say what the code does, how, "
    "and anything surprising (edge cases, bugs, performance). Use Markdown; quote identifiers in backticks."
)
# Front truncation of the code before the cursor drops whole blocks of lines, so that the cut (and with it the
# cached prompt) moves rarely while the user types.
PREFIX_CUT_LINES = 32


@dataclass(frozen=True)
class SpecialIds:
    start: int
    end: int
    message: int
    channel: int
    return_: int
    call: int
    constrain: int
    endoftext: int | None = None
    others: frozenset[int] = frozenset()  # every other special token: never shown as text


@dataclass
class Neighbour:
    path: str
    text: str


@dataclass
class CompletionContext:
    prefix: str
    suffix: str = ""
    path: str = ""
    language: str = ""
    neighbours: list[Neighbour] = field(default_factory=list)


@dataclass
class ExplainContext:
    code: str
    path: str = ""
    language: str = ""
    question: str = ""
    context: str = ""
    reasoning: str = "low"


@dataclass
class RenderedPrompt:
    ids: list[int]
    truncated: dict[str, int] = field(default_factory=dict)


class HarmonyCodec:
    """Renders harmony messages to token ids with the model's own tokenizer."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        ids = {}
        for token in SPECIAL_TOKENS:
            value = tokenizer.token_to_id(token)
            if value is None:
                raise ModelFolderError(f"the tokenizer lacks the harmony token {token}: not a gpt-oss tokenizer")
            ids[token] = value
        harmony = set(ids.values())
        others = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special and i not in harmony}
        self.special = SpecialIds(
            start=ids["<|start|>"],
            end=ids["<|end|>"],
            message=ids["<|message|>"],
            channel=ids["<|channel|>"],
            return_=ids["<|return|>"],
            call=ids["<|call|>"],
            constrain=ids["<|constrain|>"],
            endoftext=tokenizer.token_to_id("<|endoftext|>"),
            others=frozenset(others),
        )
        self.tokenizer = tokenizer
        self.tokenizer.encode_special_tokens = True

    def text(self, value: str) -> list[int]:
        if not value:
            return []
        return list(self.tokenizer.encode(value, add_special_tokens=False).ids)

    def header(self, role: str, channel: str | None = None) -> list[int]:
        ids = [self.special.start, *self.text(role)]
        if channel:
            ids += [self.special.channel, *self.text(channel)]
        return [*ids, self.special.message]

    def message(self, role: str, content: str, channel: str | None = None) -> list[int]:
        return [*self.header(role, channel), *self.text(content), self.special.end]

    def system(self, reasoning: str, date: str | None) -> list[int]:
        if reasoning not in REASONING_EFFORTS:
            raise ValueError(f"reasoning must be one of {', '.join(REASONING_EFFORTS)}")
        lines = [MODEL_IDENTITY, f"Knowledge cutoff: {KNOWLEDGE_CUTOFF}"]
        if date:
            lines.append(f"Current date: {date}")
        body = "\n".join(lines) + f"\n\nReasoning: {reasoning}\n\n{VALID_CHANNELS}"
        return self.message("system", body)

    def developer(self, instructions: str) -> list[int]:
        return self.message("developer", f"# Instructions\n\n{instructions}")

    def decode(self, ids: Iterable[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=False))


def fence(language: str) -> str:
    return "```" + (language or "")


def _completion_user_message(ctx: CompletionContext) -> str:
    parts = []
    for neighbour in ctx.neighbours:
        parts.append(f"Related file {neighbour.path}:\n```\n{neighbour.text}\n```")
    where = ctx.path or "untitled"
    parts.append(f"Editing {where}" + (f" ({ctx.language})" if ctx.language else "") + ".")
    if ctx.suffix:
        parts.append(f"Code after the cursor:\n{fence(ctx.language)}\n{ctx.suffix}\n```")
    else:
        parts.append("The cursor is at the end of the file.")
    return "\n\n".join(parts)


def _render_completion(codec: HarmonyCodec, ctx: CompletionContext, date: str | None) -> list[int]:
    special = codec.special
    return [
        *codec.system("low", date),
        *codec.developer(COMPLETION_INSTRUCTIONS),
        *codec.message("user", _completion_user_message(ctx)),
        *codec.header("assistant", "analysis"),
        special.end,
        *codec.header("assistant", "final"),
        *codec.text(f"{fence(ctx.language)}\n{ctx.prefix}"),
    ]


def render_completion_prompt(
    codec: HarmonyCodec, ctx: CompletionContext, max_tokens: int, date: str | None = None
) -> RenderedPrompt:
    """The completion prompt, cut to `max_tokens`: neighbours go first, then the suffix's tail, then old prefix."""
    ctx = CompletionContext(ctx.prefix, ctx.suffix, ctx.path, ctx.language, list(ctx.neighbours))
    truncated: dict[str, int] = {}
    ids = _render_completion(codec, ctx, date)
    while len(ids) > max_tokens and ctx.neighbours:
        ctx.neighbours.pop()
        truncated["neighbours"] = truncated.get("neighbours", 0) + 1
        ids = _render_completion(codec, ctx, date)
    while len(ids) > max_tokens and ctx.suffix:
        lines = ctx.suffix.split("\n")
        keep = len(lines) // 2
        truncated["suffix_lines"] = truncated.get("suffix_lines", 0) + len(lines) - keep
        ctx.suffix = "\n".join(lines[:keep])
        ids = _render_completion(codec, ctx, date)
    while len(ids) > max_tokens:
        lines = ctx.prefix.split("\n")
        if len(lines) <= 1:
            raise PromptTooLong(f"the prompt needs {len(ids)} tokens even without context; the limit is {max_tokens}")
        cut = min(len(lines) - 1, max(PREFIX_CUT_LINES, (len(lines) // 4) // PREFIX_CUT_LINES * PREFIX_CUT_LINES))
        truncated["prefix_lines"] = truncated.get("prefix_lines", 0) + cut
        ctx.prefix = "\n".join(lines[cut:])
        ids = _render_completion(codec, ctx, date)
    return RenderedPrompt(ids, truncated)


def render_explain_prompt(
    codec: HarmonyCodec, ctx: ExplainContext, max_tokens: int, date: str | None = None
) -> RenderedPrompt:
    """A normal harmony chat, with the assistant's analysis message opened (gpt-oss reasons before it answers)."""
    where = f" from {ctx.path}" if ctx.path else ""
    body = f"Explain this code{where}:\n{fence(ctx.language)}\n{ctx.code}\n```"
    if ctx.context:
        body = f"Surrounding code:\n{fence(ctx.language)}\n{ctx.context}\n```\n\n{body}"
    if ctx.question:
        body += f"\n\n{ctx.question}"
    ids = [
        *codec.system(ctx.reasoning, date),
        *codec.developer(EXPLAIN_INSTRUCTIONS),
        *codec.message("user", body),
        *codec.header("assistant", "analysis"),
    ]
    if len(ids) > max_tokens:
        raise PromptTooLong(f"the selection needs {len(ids)} prompt tokens; the limit is {max_tokens}")
    return RenderedPrompt(ids)


@dataclass
class ParseEvent:
    """A content token on a channel, or the end of the output with its reason."""

    channel: str
    token: int | None = None
    finish: str | None = None


class ChannelParser:
    """Splits generated token ids into channels and says when the output is over.

    Stops at `<|return|>`, `<|call|>` and `<|endoftext|>`, and at `<|end|>` of a final-channel message (or of any
    message when `single_message`, as in completion, where the output starts inside the final channel's content).
    Other special tokens are dropped. With `ignore_eos` (for benchmarks) nothing ends the output: the stop tokens
    are dropped too, so generation runs to its token or time budget.
    """

    def __init__(
        self, special: SpecialIds, channel: str | None, single_message: bool, ignore_eos: bool = False
    ) -> None:
        self.special = special
        self.ignore_eos = ignore_eos
        self.channel = channel
        self.in_content = channel is not None
        self.single_message = single_message
        self.header: list[int] = []
        self.finished: str | None = None

    def feed(self, token: int, decode: DecodeText) -> list[ParseEvent]:
        s = self.special
        if self.finished:
            return []
        if self.ignore_eos and token in (s.return_, s.call, s.endoftext, s.end):
            return []
        if token in (s.return_, s.call, s.endoftext):
            self.finished = "tool_call" if token == s.call else "stop"
            return [ParseEvent(self.channel or "", finish=self.finished)]
        if token in s.others:
            return []
        if self.in_content:
            if token == s.end:
                if self.single_message or self.channel == "final":
                    self.finished = "stop"
                    return [ParseEvent(self.channel or "", finish="stop")]
                self.in_content = False
                self.header = []
                return []
            if token == s.start:  # a new message began without closing the last one
                self.in_content = False
                self.header = []
                return []
            if token in (s.channel, s.message, s.constrain):  # header tokens out of place: never text
                return []
            return [ParseEvent(self.channel or "", token)]
        if token == s.start:
            self.header = []
        elif token == s.message:
            self.channel = _channel_of(self.header, s, decode)
            self.in_content = True
        else:
            self.header.append(token)
        return []


class DecodeText:
    """Tokens to text, one channel at a time, never splitting a multi-byte character."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.streams: dict[str, DecodeStream] = {}

    def __call__(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=False))

    def step(self, channel: str, token: int) -> str:
        stream = self.streams.setdefault(channel, DecodeStream(skip_special_tokens=False))
        return stream.step(self.tokenizer, token) or ""


def _channel_of(header: list[int], special: SpecialIds, decode: DecodeText) -> str:
    if special.channel not in header:
        return "final"
    after = header[header.index(special.channel) + 1 :]
    if special.constrain in after:
        after = after[: after.index(special.constrain)]
    words = decode(after).split()
    return words[0] if words else "final"
