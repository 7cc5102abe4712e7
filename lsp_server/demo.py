"""`oss-edge demo`: the whole product in a terminal. An LSP session against our own server types a sample file,
prints each suggestion with its latency, streams one explanation, and sums up the timings and the cache reuse."""

from __future__ import annotations

import asyncio
import statistics
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, TextIO

from lsprotocol import types

from edge_runtime.client import connect
from edge_runtime.errors import ExitCode, NoModel
from edge_runtime.paths import default_socket
from lsp_server.config import Settings
from lsp_server.runtime_link import find_model
from lsp_server.session import EditorSession, first_text

SAMPLE = '''import math


def mean(values):
    """The arithmetic mean of a non-empty sequence."""
    return sum(values) / len(values)


def stdev(values):
    centre = mean(values)
    squares = [(v - centre) ** 2 for v in values]
    return math.sqrt(sum(squares) / (len(values) - 1))
'''


WARM_TIMEOUT_S = 600  # a cold read of the sample by gpt-oss-20b takes well under a minute on 2 cores


def run_demo(model: Path | None, sample: Path | None, language: str, reasoning: str, ready_timeout: float) -> int:
    try:
        model_dir = find_model(Settings(model_dir=str(model) if model else ""))
    except NoModel as exc:
        print(f"oss-edge demo: {exc}", file=sys.stderr)
        print(
            "To try the whole product on the stand-in (a small model trained here, in the repository): "
            "make run SYNTHETIC=1, or oss-edge export models/stand-in",
            file=sys.stderr,
        )
        return ExitCode.NO_MODEL
    text = sample.read_text() if sample else SAMPLE
    name = sample.name if sample else "stats.py"
    return asyncio.run(_demo(model_dir, text, name, language, reasoning, ready_timeout))


async def _demo(model_dir: Path, text: str, name: str, language: str, reasoning: str, ready_timeout: float) -> int:
    out = sys.stdout
    print(f"oss-edge demo: model {model_dir}", file=out)
    session = EditorSession(
        {"modelDir": str(model_dir), "debounceMs": 0},
        on_message=lambda m: print(f"  [server] {m}", file=out),
        on_progress=lambda m: print(f"  [progress] {m}", file=out, flush=True),
    )
    streamed: list[str] = []

    def on_explanation(note: dict[str, Any]) -> None:
        if note.get("done") or not note.get("delta"):
            return
        if note.get("channel") == "final":
            streamed.append(note["delta"])
            out.write(note["delta"])
            out.flush()

    session.on_explanation = on_explanation
    await session.start()
    try:
        uri = session.open(Path.cwd() / name, "", language)
        print("starting the language server and the model …", file=out, flush=True)
        waited = await session.wait_ready(uri, ready_timeout)
        print(f"first suggestion after {waited:.1f} s (model start included)\n", file=out)
        latencies = await _type_line_by_line(session, uri, name, text, out)
        await _rest_in_a_new_file(session, model_dir, text, language, out)
        end = len(text.splitlines()) - 1
        print(f"\nexplaining the whole file (reasoning: {reasoning}):\n", file=out)
        explained = await session.explain(
            uri, types.Position(line=0, character=0), types.Position(line=end + 1, character=0), reasoning
        )
        answer = explained.result or "(no answer: the model wrote no final message within its token budget)"
        if not streamed:
            print(textwrap.indent(str(answer), "  "), file=out)
        print(f"\n\nexplanation took {explained.seconds:.1f} s", file=out)
        _print_timings(latencies, await _runtime_status(model_dir), out)
        print(
            "\nThe model stays loaded for 15 minutes. Editors connect to it through `oss-edge lsp`: see editors/.",
            file=out,
        )
    finally:
        await session.stop()
    return 0


async def _type_line_by_line(session: EditorSession, uri: str, name: str, text: str, out: TextIO) -> list[float]:
    """Type `text`, asking for a suggestion after the first word of each line; returns the latencies."""
    print(
        f"typing {name}, asking for a suggestion after the first word of each line "
        "(typed so far │ suggested │ what the file has):",
        file=out,
    )
    latencies = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        if body:
            typed = first_word(body)
            session.type(uri, typed)
            timed = await session.inline(uri)
            latencies.append(timed.seconds)
            suggestion = first_text(timed.result)
            shown = repr(suggestion.split("\n")[0][:44]) if suggestion else "(none)"
            truth = repr(body[len(typed) :][:44])
            print(f"  {typed[-24:]!s:>24} │ {shown:<46} │ {truth}  {timed.seconds * 1000:5.0f} ms", file=out)
            session.type(uri, body[len(typed) :])
        session.type(uri, line[len(body) :])
    return latencies


def _print_timings(latencies: list[float], status: dict[str, Any] | None, out: TextIO) -> None:
    print("\ntimings", file=out)
    if latencies:
        ordered = sorted(latencies)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        print(
            f"  suggestions: {len(latencies)}, median {statistics.median(latencies) * 1000:.0f} ms, "
            f"p95 {p95 * 1000:.0f} ms",
            file=out,
        )
    if status:
        cache, speed = status["cache"], status["throughput"]
        print(
            f"  prompt tokens served from the KV cache: {100 * (cache['reuse_ratio'] or 0):.1f}% "
            f"of {cache['prompt_tokens']}; decode {speed['decode_tokens_per_s']} tok/s; "
            f"daemon RSS {status['memory']['rss_bytes'] / 1e9:.2f} GB on {status['provider']}",
            file=out,
        )


def first_word(line: str) -> str:
    """The line up to the end of its first word (its indentation and a keyword or name, as a user starts it)."""
    stripped = line.lstrip()
    start = len(line) - len(stripped)
    end = start
    while end < len(line) and (line[end].isalnum() or line[end] == "_"):
        end += 1
    return line[: max(end, start + 1)]


async def _rest_in_a_new_file(session: EditorSession, model_dir: Path, text: str, language: str, out: Any) -> None:
    """Open another file and let the cursor rest in it: the model reads its code in the background (`warm`), so the
    first suggestion there reads only the key typed after the rest."""
    try:  # one connection to watch the daemon for the whole step
        runtime = await connect(default_socket(model_dir), client="oss-edge demo")
    except Exception:
        return
    try:
        before: dict[str, Any] = await runtime.call("status", timeout=10)
        warmed_before = before["finish_reasons"].get("warmed", 0)
        uri = session.open(Path.cwd() / "notes_on_stats.py", text, language)
        print("\nopening notes_on_stats.py and resting the cursor at its end …", file=out, flush=True)
        began = time.perf_counter()
        session.rest(uri)
        status = before
        while status["finish_reasons"].get("warmed", 0) <= warmed_before:
            if time.perf_counter() - began > WARM_TIMEOUT_S:
                print(f"  the background read did not finish within {WARM_TIMEOUT_S} s; skipped", file=out)
                return
            await asyncio.sleep(0.1)
            status = await runtime.call("status", timeout=10)
        rested = time.perf_counter() - began
        session.type(uri, "\n\ndef median(values):\n    ")
        timed = await session.inline(uri)
        after: dict[str, Any] = await runtime.call("status", timeout=10)
    finally:
        await runtime.close()
    prompt = after["cache"]["prompt_tokens"] - status["cache"]["prompt_tokens"]
    cached = after["cache"]["cached_tokens"] - status["cache"]["cached_tokens"]
    suggestion = first_text(timed.result)
    shown = repr(suggestion.split("\n")[0][:60]) if suggestion else "(none)"
    print(
        f"  the model read the file in the background in {rested:.1f} s; then the first suggestion there: "
        f"{shown}  {timed.seconds * 1000:.0f} ms ({cached} of its {prompt} prompt tokens from the cache)",
        file=out,
        flush=True,
    )


async def _runtime_status(model_dir: Path) -> dict[str, Any] | None:
    try:
        runtime = await connect(default_socket(model_dir), client="oss-edge demo")
    except Exception:
        return None
    try:
        status: dict[str, Any] = await runtime.call("status", timeout=10)
        return status
    finally:
        await runtime.close()
