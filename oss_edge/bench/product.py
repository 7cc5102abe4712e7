"""What users see, measured through the whole product: `oss-edge lsp` with its default settings, on cursor
positions cut from the stand-in's held-out modules, scored against the code that was really there.

For each position the document is the held-out file with the code at the cursor removed, opened in a real LSP
session; an automatic inline completion is asked for at the cursor. Between the language server and the daemon a
recording relay keeps each `complete` request and its result, so the fp32 transformers reference decodes exactly
the prompt the daemon rendered (greedy, the same stop strings, no clean-up), and the raw daemon text shows what
the language server's clean-up changed. Explanations: `ossEdge.explainSelection` on held-out functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from lsprotocol import types

from edge_runtime.engine import StopStrings
from edge_runtime.harmony import CompletionContext, Neighbour, render_completion_prompt
from edge_runtime.protocol import REQUEST, RESPONSE, FrameReader
from export.training.corpus import SourceFile, load_corpus
from export.training.samples import LANGUAGE, choose_cut, functions_of
from lsp_server.config import Settings
from lsp_server.session import EditorSession, first_text
from oss_edge.bench.common import oss_edge_command

# The cursor layouts, as a user meets them: typing a line (nothing after the cursor on it), a new line after
# Enter, the first line of a block after `:` and Enter, and an insertion inside a line that goes on after it.
KINDS = {"end of line": "rest_of_line", "new line": "next_line", "start of a block": "block", "mid-line": "middle"}
EXPLAIN_EFFORT = Settings().explain_effort  # the language server's default
SERVE_MAX_LENGTH = 8192  # the daemon's default context limit; the reference renders under the same limit


@dataclass
class Position:
    path: str
    text: str  # the document as the editor holds it: the code at the cursor removed
    cursor: int  # offset into text
    truth: str  # what was there
    kind: str


@dataclass
class Outcome:
    position: Position
    shown: str | None  # what the editor got
    raw: str | None = None  # the daemon's text before the language server's clean-up
    request: dict[str, Any] | None = None
    reference: str | None = None


def positions(files: list[SourceFile], count: int, seed: int) -> list[Position]:
    """`count` cursor positions spread over the files and the layouts, the same for the same seed."""
    rng = np.random.default_rng(seed)
    found: list[Position] = []
    kinds = list(KINDS.items())
    attempts = 0
    while len(found) < count and attempts < count * 50:
        attempts += 1
        label, kind = kinds[len(found) % len(kinds)]
        source = files[int(rng.integers(len(files)))]
        cut = choose_cut(source.text.splitlines(keepends=True), kind, rng)
        if cut is None or not cut.target.strip():
            continue
        found.append(Position(source.path, cut.prefix + cut.suffix, len(cut.prefix), cut.target, label))
    return found


def lsp_position(text: str, offset: int) -> types.Position:
    before = text[:offset]
    line = before.count("\n")
    column = before[before.rfind("\n") + 1 :]
    return types.Position(line=line, character=len(column.encode("utf-16-le")) // 2)


class Relay:
    """A Unix socket in front of the daemon's that passes every byte through and keeps `complete` and `explain`
    calls."""

    def __init__(self, listen: Path, daemon: Path) -> None:
        self.listen, self.daemon = listen, daemon
        self.requests: dict[tuple[int, int], dict[str, Any]] = {}
        self.results: dict[tuple[int, int], dict[str, Any]] = {}
        self.order: list[tuple[int, int]] = []
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._connection, path=str(self.listen))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        up_reader, up_writer = await asyncio.open_unix_connection(str(self.daemon))
        await asyncio.gather(
            self._pump(reader, up_writer, number, upstream=True),
            self._pump(up_reader, writer, number, upstream=False),
            return_exceptions=True,
        )

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int, upstream: bool
    ) -> None:
        frames = FrameReader()
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
                for message in frames.feed(data):
                    key = (number, message.id or 0)
                    if upstream and message.kind == REQUEST and message.method in ("complete", "explain"):
                        params = message.params[0] if isinstance(message.params, list) else message.params
                        if isinstance(params, dict) and not params.get("warm"):
                            self.requests[key] = {**params, "method": message.method}
                            self.order.append(key)
                    elif not upstream and message.kind == RESPONSE and key in self.requests:
                        self.results[key] = message.result if isinstance(message.result, dict) else {}
        finally:
            writer.close()

    def last_for(self, document: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The newest `complete` the language server sent for a document, and its result."""
        for key in reversed(self.order):
            if self.requests[key]["method"] == "complete" and self.requests[key].get("document") == document:
                request = {k: v for k, v in self.requests[key].items() if k != "method"}
                return request, self.results.get(key)
        return None, None

    def last_explain(self) -> dict[str, Any] | None:
        """The result of the newest `explain` the language server sent."""
        for key in reversed(self.order):
            if self.requests[key]["method"] == "explain":
                return self.results.get(key)
        return None


@dataclass
class Daemon:
    """`oss-edge serve` for one model folder on a socket of the benchmark's own."""

    model_dir: Path
    socket: Path
    seed: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self, timeout: float = 120.0) -> None:
        command = oss_edge_command("serve", "--model", str(self.model_dir), "--socket", str(self.socket))
        command += ["--seed", str(self.seed)]  # explanations are sampled: the same ones each run
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"the daemon did not start: {error.strip()[-400:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


async def through_the_product(
    model_dir: Path, work: Path, cases: list[Position], functions: list[tuple[SourceFile, Any]], seed: int = 0
) -> tuple[list[Outcome], dict[str, Any]]:
    """Each position, then each function, through a real `oss-edge lsp` with default settings; the daemon runs
    behind a recording relay (the socket setting is the only one given besides the model)."""
    work.mkdir(parents=True, exist_ok=True)
    daemon = Daemon(model_dir, work / "daemon.sock", seed)
    relay = Relay(work / "relay.sock", daemon.socket)
    for stale in (daemon.socket, relay.listen):
        stale.unlink(missing_ok=True)
    daemon.start()
    await relay.start()
    options = {"modelDir": str(model_dir), "runtimeSocket": str(relay.listen)}
    session = EditorSession(options, on_message=lambda m: print(f"[server] {m}", file=sys.stderr), root=work)
    await session.start()
    try:
        await _ready(session, work)
        outcomes = []
        for done, case in enumerate(cases, 1):
            outcomes.append(await _suggest(session, relay, work, case))
            if done % 50 == 0 or done == len(cases):
                print(f"product: {done}/{len(cases)} cursor positions", file=sys.stderr, flush=True)
        explained = await explanations(session, relay, work, functions)
    finally:
        await session.stop()
        await relay.stop()
        daemon.stop()
    return outcomes, explained


async def _ready(session: EditorSession, work: Path) -> None:
    uri = session.open(work / "warmup.py", "import os\n\n\ndef main():\n    ", LANGUAGE)
    await session.wait_ready(uri, 120.0)
    session.client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


async def _suggest(session: EditorSession, relay: Relay, work: Path, case: Position) -> Outcome:
    uri = session.open(work / case.path, case.text, LANGUAGE)
    result = await session.client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=lsp_position(case.text, case.cursor),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
    )
    session.client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    request, answer = relay.last_for(uri)
    raw = answer.get("text") if answer else None
    return Outcome(case, first_text(result), raw, request)


def request_key(request: dict[str, Any] | None) -> str:
    return json.dumps(request, sort_keys=True)


def fill_reference(checkpoint: Path, model_dir: Path, outcomes: list[Outcome], known: dict[str, str | None]) -> None:
    """The fp32 transformers reference on each recorded prompt: greedy, the request's stops, no clean-up.

    `known` keeps the texts by request, so that the presets of one checkpoint share one reference run."""
    import torch
    from tokenizers import Tokenizer

    from edge_runtime.harmony import HarmonyCodec
    from export.verify import load_reference

    missing = [o for o in outcomes if o.request is not None and request_key(o.request) not in known]
    if missing:
        print(f"product: the fp32 transformers reference on {len(missing)} prompts", file=sys.stderr)
        model = load_reference(checkpoint)
        codec = HarmonyCodec(Tokenizer.from_file(str(model_dir / "tokenizer.json")))
        today = date.today().isoformat()
        with torch.no_grad():
            for done, outcome in enumerate(missing, 1):
                if done % 50 == 0:
                    print(f"product: reference {done}/{len(missing)}", file=sys.stderr, flush=True)
                assert outcome.request is not None
                known[request_key(outcome.request)] = _reference_one(model, codec, outcome.request, today)
    for outcome in outcomes:
        outcome.reference = known.get(request_key(outcome.request)) if outcome.request is not None else None


def _context(request: dict[str, Any]) -> tuple[CompletionContext, int]:
    """The runtime's completion context for a recorded `complete` request, and its token budget."""
    ctx = CompletionContext(
        prefix=request.get("prefix", ""),
        suffix=request.get("suffix", ""),
        path=request.get("path", ""),
        language=request.get("language", ""),
        neighbours=[Neighbour(n["path"], n["text"]) for n in request.get("neighbours", [])],
    )
    return ctx, int(request.get("max_tokens", 128))


def _reference_one(model: Any, codec: Any, request: dict[str, Any], today: str) -> str:
    import torch

    ctx, max_tokens = _context(request)
    ids = render_completion_prompt(codec, ctx, SERVE_MAX_LENGTH - max_tokens - 1, today).ids
    stops = ["\n```", *request.get("stop", [])]
    special = codec.special
    ends = {special.end, special.return_, special.call, special.endoftext}
    out = model(input_ids=torch.tensor([ids]), use_cache=True)
    generated: list[int] = []
    for _ in range(max_tokens):
        token = int(out.logits[0, -1].argmax())
        if token in ends:
            break
        generated.append(token)
        stopper = StopStrings(stops, lead=ctx.prefix or "\n")  # as the daemon cuts its output
        text = stopper.push(codec.decode(generated))
        if stopper.hit:
            return text
        out = model(input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
    return codec.decode(generated)


_LLAMA_CPP_DECODE = """
import json, sys
import numpy as np
import llama_cpp

model = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=8192, n_threads=int(sys.argv[3]), verbose=False)
jobs = json.loads(open(sys.argv[2]).read())
out = []
for job in jobs:
    model.reset()
    model.eval(job["ids"])
    generated = []
    for _ in range(job["max_tokens"]):
        # without logits_all the wrapper keeps no scores: the last position's logits, from the context itself
        last = np.ctypeslib.as_array(model._ctx.get_logits_ith(-1), shape=(model.n_vocab(),))
        token = int(np.argmax(last))
        if token in job["ends"]:
            break
        generated.append(token)
        model.eval([token])
    out.append(generated)
print(json.dumps(out))
"""


def llama_cpp_texts(gguf: Path, python: str, model_dir: Path, outcomes: list[Outcome], threads: int) -> list[str]:
    """llama.cpp decoding the very prompts the daemon rendered (greedy, the same stops, no clean-up)."""
    from tokenizers import Tokenizer

    from edge_runtime.harmony import HarmonyCodec

    codec = HarmonyCodec(Tokenizer.from_file(str(model_dir / "tokenizer.json")))
    special = codec.special
    ends = [special.end, special.return_, special.call, *([special.endoftext] if special.endoftext else [])]
    today = date.today().isoformat()
    jobs = []
    for outcome in outcomes:
        request = outcome.request or {}
        ctx, max_tokens = _context(request)
        ids = render_completion_prompt(codec, ctx, SERVE_MAX_LENGTH - max_tokens - 1, today).ids if request else []
        jobs.append({"ids": ids or [special.start], "max_tokens": max_tokens if request else 0, "ends": ends})
    job_file = gguf.parent / "product-jobs.json"
    job_file.write_text(json.dumps(jobs))
    done = subprocess.run(
        [python, "-c", _LLAMA_CPP_DECODE, str(gguf), str(job_file), str(threads)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError("llama.cpp decoding failed: " + (done.stderr.strip().splitlines() or ["?"])[-1])
    texts = []
    for outcome, generated in zip(outcomes, json.loads(done.stdout.strip().splitlines()[-1]), strict=True):
        request = outcome.request or {}
        stopper = StopStrings(["\n```", *request.get("stop", [])], lead=request.get("prefix") or "\n")
        texts.append(stopper.push(codec.decode(generated)))
    return texts


def common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def score(pairs: Sequence[tuple[str | None, str]]) -> dict[str, float]:
    """Exact first line, share of the truth's characters accepted (longest common prefix), empty answers."""
    exact = accepted = total = empty = 0
    for suggestion, truth in pairs:
        text = suggestion or ""
        empty += not text.strip()
        exact += bool(text.strip()) and first_line(text) == first_line(truth)
        accepted += common_prefix(text, truth)
        total += len(truth)
    n = max(1, len(pairs))
    return {
        "exact_line": round(exact / n, 4),
        "accepted_chars": round(accepted / max(1, total), 4),
        "empty": round(empty / n, 4),
        "positions": len(pairs),
    }


def by_kind(pairs: Sequence[tuple[str | None, str]], outcomes: list[Outcome]) -> dict[str, dict[str, float]]:
    return {
        kind: score([pair for pair, o in zip(pairs, outcomes, strict=True) if o.position.kind == kind])
        for kind in KINDS
    }


def first_line(text: str | None) -> str:
    return (text or "").split("\n")[0].rstrip()


def completion_figures(outcomes: list[Outcome]) -> dict[str, Any]:
    shown = [(o.shown, o.position.truth) for o in outcomes]
    figures: dict[str, Any] = {"product": score(shown), "by_kind": by_kind(shown, outcomes)}
    figures["daemon_raw"] = score([(o.raw, o.position.truth) for o in outcomes])
    # the clean-up must keep what the model got right: a raw first line equal to the truth's, lost in what is shown
    figures["cut_by_cleanup"] = sum(
        1
        for o in outcomes
        if first_line(o.raw)
        and first_line(o.raw) == first_line(o.position.truth)
        and first_line(o.shown) != first_line(o.position.truth)
    )
    if any(o.reference is not None for o in outcomes):
        figures["reference_fp32"] = score([(o.reference, o.position.truth) for o in outcomes])
        figures["same_as_fp32"] = same_first_line([o.raw for o in outcomes], outcomes)
    return figures


def same_first_line(texts: Sequence[str | None], outcomes: list[Outcome]) -> float | None:
    """The share of prompts whose first line equals the fp32 reference's: what quantization changes in what users
    see, whether or not the model is right (the weak stand-in rarely is)."""
    pairs = [(t, o.reference) for t, o in zip(texts, outcomes, strict=True) if o.reference is not None]
    if not pairs:
        return None
    return round(sum(first_line(t or "") == first_line(r or "") for t, r in pairs) / len(pairs), 4)


def examples(outcomes: list[Outcome], count: int = 12) -> list[dict[str, Any]]:
    return [
        {"path": o.position.path, "kind": o.position.kind, "truth": o.position.truth, "shown": o.shown}
        for o in outcomes[:count]
    ]


def held_out_positions(count: int, seed: int, stdlib: Path | None = None) -> list[Position]:
    return positions(list(load_corpus(stdlib).held_out), count, seed)


def held_out_functions(count: int, seed: int, stdlib: Path | None = None) -> list[tuple[SourceFile, Any]]:
    rng = np.random.default_rng(seed)
    pool = [(source, function) for source in load_corpus(stdlib).held_out for function in functions_of(source)]
    picked = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
    return [pool[int(i)] for i in sorted(picked)]


async def explanations(
    session: EditorSession, relay: Relay, work: Path, functions: list[tuple[SourceFile, Any]]
) -> dict[str, Any]:
    """`ossEdge.explainSelection` on held-out functions: how often the answer reaches the final channel, and how
    often the model got there on its own (the daemon did not have to cut its reasoning)."""
    answered, on_its_own, seconds, words = 0, 0, [], []
    for source, function in functions:
        uri = session.open(work / source.path, source.text, LANGUAGE)
        first = source.text[: source.text.find(function.documented)].count("\n")
        last = first + function.documented.count("\n")
        timed = await session.explain(
            uri, types.Position(line=first, character=0), types.Position(line=last, character=0), EXPLAIN_EFFORT
        )
        session.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        seconds.append(timed.seconds)
        text = str(timed.result or "").strip()
        answered += bool(text)
        on_its_own += bool(text) and not (relay.last_explain() or {}).get("analysis_cut", False)
        words.append(len(text.split()))
    return {
        "functions": len(seconds),
        "final_channel_share": round(answered / max(1, len(seconds)), 4),
        "unforced_share": round(on_its_own / max(1, len(seconds)), 4),
        "median_seconds": round(float(np.median(seconds)), 2) if seconds else None,
        "median_words": int(np.median(words)) if words else None,
    }


def measure(model_dir: Path, work: Path, count: int, explain: int, seed: int) -> tuple[list[Outcome], dict[str, Any]]:
    """Held-out cursor positions and functions through the product, for one model folder."""
    cases = held_out_positions(count, seed)
    functions = held_out_functions(explain, seed) if explain else []
    print(
        f"product: {len(cases)} cursor positions, {len(functions)} explanations through oss-edge lsp", file=sys.stderr
    )
    return asyncio.run(through_the_product(model_dir, work, cases, functions, seed))
