"""Training samples in the product's own layouts, rendered by the runtime's harmony code.

A completion sample is the prompt `complete` renders for a cursor in a real file (path, language, the code after
the cursor, an empty analysis message, the final channel opened with the code before the cursor), followed by
the code that was really at the cursor up to a natural end (the rest of the line, the next line, a block's body
or a span inside a line) and the stop the runtime waits for (`\\n```` then `<|end|>`). An explanation sample is a
normal harmony chat about a function, answered in the final channel by the first paragraph of its docstring
after a short analysis message.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass

import numpy as np

from edge_runtime.errors import PromptTooLong
from edge_runtime.harmony import (
    COMPLETION_INSTRUCTIONS,
    EXPLAIN_INSTRUCTIONS,
    CompletionContext,
    ExplainContext,
    HarmonyCodec,
    Neighbour,
    render_completion_prompt,
    render_explain_prompt,
)
from edge_runtime.protocol import REASONING_EFFORTS
from export.training.corpus import SourceFile

LANGUAGE = "python"
COMPLETION_STOP = "\n```"  # the runtime's stop string for a completion (edge_runtime/server.py)
# What share of samples takes each layout (the rest are explanations).
CURSOR_KINDS = {"rest_of_line": 0.42, "next_line": 0.18, "block": 0.14, "middle": 0.12}
EXPLAIN_SHARE = 0.14
MAX_BLOCK_LINES = 6
MAX_ANSWER_CHARS = 320
CONTEXT_LINES = 20  # what the language server sends above a selection (lsp_server/server.py)


@dataclass(frozen=True)
class Sample:
    ids: list[int]
    scored_from: int  # tokens before this index are the fixed system and developer messages: not scored
    target_from: int  # the answer's first token (what the model is asked to write)
    kind: str


def _date(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(2025, 2028))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"


def _fixed_header_length(codec: HarmonyCodec, date: str, reasoning: str, instructions: str) -> int:
    """The system and developer messages: the same in every sample but for the date."""
    return len(codec.system(reasoning, date)) + len(codec.developer(instructions))


@dataclass
class Cut:
    prefix: str  # the code before the cursor, within the window
    target: str
    suffix: str


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _code_lines(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]


def choose_cut(lines: list[str], kind: str, rng: np.random.Generator) -> Cut | None:
    """Where the cursor is and what the model should write there, for one layout."""
    candidates = _code_lines(lines)
    if kind == "block":
        candidates = [i for i in candidates if lines[i].rstrip().endswith(":") and i + 1 < len(lines)]
    if not candidates:
        return None
    row = int(candidates[int(rng.integers(len(candidates)))])
    line = lines[row].rstrip("\n")
    before_rows, after_rows = "".join(lines[:row]), "".join(lines[row + 1 :])
    indent = _indent(line)
    if kind == "rest_of_line":
        column = int(rng.integers(indent, len(line)))
        return Cut(before_rows + line[:column], line[column:], "\n" + after_rows if after_rows else "")
    if kind == "next_line":
        # the user pressed Enter: the editor indented the new line (most of the time, to the right depth)
        lead = line[:indent] if rng.random() < 0.75 else ""
        return Cut(before_rows + lead, line[len(lead) :], "\n" + after_rows if after_rows else "")
    if kind == "middle":
        if len(line) - indent < 4:
            return None
        start = int(rng.integers(indent, len(line) - 1))
        stop = int(rng.integers(start + 1, min(len(line), start + 24) + 1))
        return Cut(
            before_rows + line[:start], line[start:stop], line[stop:] + ("\n" + after_rows if after_rows else "")
        )
    return _block_cut(lines, row, indent)


def _block_cut(lines: list[str], row: int, indent: int) -> Cut | None:
    """After a line ending in `:` and Enter: the body's lines, up to the dedent (at most MAX_BLOCK_LINES)."""
    body: list[str] = []
    end = row + 1
    while end < len(lines) and len(body) < MAX_BLOCK_LINES:
        text = lines[end]
        if text.strip() and _indent(text) <= indent:
            break
        body.append(text)
        end += 1
    while body and not body[-1].strip():
        body.pop()
        end -= 1
    if not body:
        return None
    lead = body[0][: _indent(body[0])]
    prefix = "".join(lines[: row + 1]) + lead
    target = "".join(body)[len(lead) :].rstrip("\n")
    rest = "".join(lines[end:])
    return Cut(prefix, target, "\n" + rest if rest else "")


def _window(cut: Cut, rng: np.random.Generator) -> tuple[str, str]:
    """The product's window: a few thousand characters before the cursor from a line start, ~1300 after."""
    long = rng.random() < 0.25
    budget = int(rng.integers(1500, 4000)) if long else int(rng.integers(150, 1500))
    prefix = cut.prefix
    if len(prefix) > budget:
        start = prefix.find("\n", len(prefix) - budget)
        prefix = prefix[start + 1 :] if start >= 0 else prefix
    suffix_budget = int(rng.integers(300, 1300))
    suffix = cut.suffix
    if len(suffix) > suffix_budget:
        end = suffix.rfind("\n", 0, suffix_budget)
        suffix = suffix[: end if end > 0 else suffix_budget]
    return prefix, suffix


def _neighbours(files: list[SourceFile], rng: np.random.Generator) -> list[Neighbour]:
    if rng.random() >= 0.2:
        return []
    other = files[int(rng.integers(len(files)))]
    lines = other.text.splitlines()
    start = int(rng.integers(max(1, len(lines) - 8)))
    chunk = "\n".join(lines[start : start + int(rng.integers(8, 25))]).strip("\n")
    return [Neighbour(other.path, chunk)] if chunk.strip() else []


def completion_sample(
    codec: HarmonyCodec, source: SourceFile, files: list[SourceFile], rng: np.random.Generator, max_tokens: int
) -> Sample | None:
    kinds = list(CURSOR_KINDS)
    weights = np.array([CURSOR_KINDS[k] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    cut = choose_cut(source.text.splitlines(keepends=True), kind, rng)
    if cut is None or not cut.target.strip():
        return None
    prefix, suffix = _window(cut, rng)
    answer = [*codec.text(cut.target + COMPLETION_STOP), codec.special.end]
    ctx = CompletionContext(prefix, suffix, source.path, LANGUAGE, _neighbours(files, rng))
    date = _date(rng)
    try:
        prompt = render_completion_prompt(codec, ctx, max_tokens - len(answer), date)
    except PromptTooLong:
        return None
    fixed = _fixed_header_length(codec, date, "low", COMPLETION_INSTRUCTIONS)
    return Sample([*prompt.ids, *answer], fixed, len(prompt.ids), kind)


@dataclass(frozen=True)
class Function:
    name: str
    code: str  # the definition without its docstring, indented as in the file
    documented: str  # the definition as written
    summary: str  # the docstring's first paragraph, on one line
    context: str  # the lines above it, as the language server sends them (up to 20)


def functions_of(source: SourceFile) -> list[Function]:
    """Functions and methods with a docstring and a body beyond it, at most 60 lines each."""
    try:
        tree = ast.parse(source.text)
    except (SyntaxError, ValueError):
        return []
    lines = source.text.splitlines(keepends=True)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.end_lineno is None:
            continue
        doc = ast.get_docstring(node)
        first = node.body[0]
        if not doc or len(node.body) < 2 or first.end_lineno is None or node.end_lineno - node.lineno > 60:
            continue
        summary = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
        if len(summary) < 12:
            continue
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
        kept = lines[start : first.lineno - 1] + lines[first.end_lineno : node.end_lineno]
        documented = "".join(lines[start : node.end_lineno])
        context = "".join(lines[max(0, start - CONTEXT_LINES) : start])
        found.append(Function(node.name, "".join(kept), documented, summary[:MAX_ANSWER_CHARS], context))
    return found


def _dedent(code: str) -> str:
    lines = code.splitlines()
    width = min((_indent(line) for line in lines if line.strip()), default=0)
    return "\n".join(line[width:] for line in lines)


def analysis_text(function: Function) -> str:
    return f"The user wants to know what `{function.name}` does. Summarize its purpose in a sentence or two."


def explain_sample(
    codec: HarmonyCodec, source: SourceFile, function: Function, rng: np.random.Generator, max_tokens: int
) -> Sample | None:
    reasoning = REASONING_EFFORTS[int(rng.integers(len(REASONING_EFFORTS)))]
    date = _date(rng)
    # most selections come with the code above them; some still hold their docstring
    code = function.documented if rng.random() < 0.3 else function.code
    code = (_dedent(code) if rng.random() < 0.5 else code).strip("\n")  # a selection as the server sends it
    ctx = ExplainContext(
        code=code,
        path=source.path,
        language=LANGUAGE,
        context=function.context if rng.random() < 0.8 else "",
        reasoning=reasoning,
    )
    special = codec.special
    answer = [
        *codec.text(analysis_text(function)),
        special.end,
        *codec.header("assistant", "final"),
        *codec.text(function.summary),
        special.return_,
    ]
    try:
        prompt = render_explain_prompt(codec, ctx, max_tokens - len(answer), date)
    except PromptTooLong:
        return None
    return Sample(
        [*prompt.ids, *answer],
        _fixed_header_length(codec, date, reasoning, EXPLAIN_INSTRUCTIONS),
        len(prompt.ids),
        "explain",
    )


class SampleStream:
    """An endless, seeded stream of samples from a set of files (the same seed gives the same samples)."""

    def __init__(self, codec: HarmonyCodec, files: list[SourceFile], seed: int, max_tokens: int) -> None:
        self.codec, self.files, self.max_tokens = codec, files, max_tokens
        self.rng = np.random.default_rng(seed)
        sizes = np.array([len(f.text) for f in files], dtype=np.float64)
        self.weights = sizes / sizes.sum()
        self._functions: dict[int, list[Function]] = {}

    def __next__(self) -> Sample:
        while True:
            index = int(self.rng.choice(len(self.files), p=self.weights))
            source = self.files[index]
            if self.rng.random() < EXPLAIN_SHARE:
                functions = self._functions.setdefault(index, functions_of(source))
                if not functions:
                    continue
                function = functions[int(self.rng.integers(len(functions)))]
                sample = explain_sample(self.codec, source, function, self.rng, self.max_tokens)
            else:
                sample = completion_sample(self.codec, source, self.files, self.rng, self.max_tokens)
            if sample is not None:
                return sample

    def __iter__(self) -> SampleStream:
        return self
