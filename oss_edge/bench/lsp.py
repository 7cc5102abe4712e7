"""`oss-edge bench lsp`: typing a real file through the language server, against the raw runtime.

A source file this project did not write (from the Python standard library by default) is typed character by
character at a steady rate. Like an editor, the client asks for an inline suggestion once the keys pause for its
debounce and cancels a request that is still running when the next key arrives. Every suggestion that came back is
then replayed, in order, straight to the daemon with the same runtime parameters: the difference in latency is the
language server's overhead.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from lsprotocol import types

from edge_runtime.client import connect
from lsp_server.config import Settings
from lsp_server.context import Cursor, allows_multiline, completion_request, window
from lsp_server.session import EditorSession, end_of
from oss_edge.bench.common import ensure_model, machine, percentile


async def replay_typing(
    model_dir: Path, text: str, chars: int, rate: float, debounce_s: float, home: Path
) -> dict[str, Any]:
    socket = home / "bench.sock"
    session = EditorSession(
        {"modelDir": str(model_dir), "runtimeSocket": str(socket), "debounceMs": 0, "runtimeIdleExit": 120},
        on_message=lambda m: print(f"  [server] {m}", file=sys.stderr),
    )
    await session.start()
    typist = _Typist(session, session.open(home / "typed.py", "", "python"), home / "typed.py")
    await session.wait_ready(typist.uri, 900)
    runtime = await connect(socket, client="oss-edge bench")
    before = await runtime.call("status")
    await typist.type(text[:chars], rate, debounce_s)
    after = await runtime.call("status")
    lsp_rss = _rss(session.client._server.pid if session.client._server else None)
    await session.stop()

    raw = []  # the same requests straight to the runtime, without the language server
    for _, params in typist.shown:
        began = time.perf_counter()
        await runtime.call("complete", params)
        raw.append(time.perf_counter() - began)
    await runtime.call("shutdown")
    await runtime.close()

    lsp = [latency for latency, _ in typist.shown]
    prompt = after["cache"]["prompt_tokens"] - before["cache"]["prompt_tokens"]
    cached = after["cache"]["cached_tokens"] - before["cache"]["cached_tokens"]
    reasons = {k: v - before["finish_reasons"].get(k, 0) for k, v in after["finish_reasons"].items()}
    return {
        "characters": chars,
        "rate_per_s": rate,
        "client_debounce_ms": round(debounce_s * 1000),
        "requests_sent": typist.sent,
        "requests_cancelled_by_client": typist.cancelled,
        "suggestions_shown": len(typist.shown),
        "empty_answers": typist.empty,
        "runtime_generations": after["cache"]["requests"] - before["cache"]["requests"],
        "runtime_finish_reasons": {k: v for k, v in reasons.items() if v},
        "lsp_latency_ms": {"p50": _ms(statistics.median(lsp)) if lsp else None, "p95": _ms(percentile(lsp, 0.95))},
        "raw_latency_ms": {"p50": _ms(statistics.median(raw)) if raw else None, "p95": _ms(percentile(raw, 0.95))},
        "lsp_overhead_ms_p50": _ms(statistics.median(lsp) - statistics.median(raw)) if lsp and raw else None,
        "prompt_tokens": prompt,
        "cached_share": round(cached / prompt, 4) if prompt else None,
        "rss_bytes": {"lsp_server": lsp_rss, "daemon": after["memory"]["rss_bytes"]},
        "lsp_latency_samples_ms": [_ms(x) for x in lsp],
        "raw_latency_samples_ms": [_ms(x) for x in raw],
    }


class _Typist:
    """Types into one document of a real editor session, asking for a suggestion after each pause as an editor does,
    cancelling the one still pending; counts what was sent, cancelled, shown and empty."""

    def __init__(self, session: EditorSession, uri: str, path: Path) -> None:
        self.session, self.uri, self.path = session, uri, path
        self.settings = Settings()
        self.sent = self.cancelled = self.empty = 0
        self.shown: list[tuple[float, dict[str, Any]]] = []  # latency, and the runtime request it stood for
        self.cancelled_ids: set[str] = set()  # an answer already on its way when its cancel left is dropped

    async def type(self, text: str, rate: float, debounce_s: float) -> None:
        tasks = []
        pending: tuple[str, asyncio.Future[Any]] | None = None
        interval = 1 / rate
        started = time.perf_counter()
        for index, character in enumerate(text):
            await asyncio.sleep(max(0.0, started + index * interval - time.perf_counter()))
            if pending is not None and not pending[1].done():
                self.session.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=pending[0]))
                self.cancelled_ids.add(pending[0])
                self.cancelled += 1
            self.session.type(self.uri, character)
            if debounce_s >= interval and index + 1 < len(text):
                continue  # the next key always comes within the debounce: only the last key asks
            await asyncio.sleep(debounce_s)
            msg_id = f"bench-{index}"
            params = self.request_params()
            future = self._ask(msg_id)
            pending = (msg_id, future)
            tasks.append(asyncio.ensure_future(self._settle(future, time.perf_counter(), params, msg_id)))
        await asyncio.gather(*tasks)

    def _ask(self, msg_id: str) -> asyncio.Future[Any]:
        self.sent += 1
        return asyncio.ensure_future(
            self.session.client.protocol.send_request_async(
                types.TEXT_DOCUMENT_INLINE_COMPLETION,
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=self.uri),
                    position=end_of(self.session.texts[self.uri]),
                    context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
                ),
                msg_id=msg_id,
            )
        )

    async def _settle(self, future: asyncio.Future[Any], began: float, params: dict[str, Any], msg_id: str) -> None:
        try:
            result = await future
        except Exception:
            return  # cancelled
        if msg_id in self.cancelled_ids:
            return
        if result is None or not result.items:
            self.empty += 1
        else:
            self.shown.append((time.perf_counter() - began, params))

    def request_params(self) -> dict[str, Any]:
        """What the server sends the runtime for the current document state (for the raw replay)."""
        settings = self.settings
        current = self.session.texts[self.uri]
        lines = current.splitlines(keepends=True) or [""]
        if current.endswith("\n"):
            lines.append("")
        cursor = Cursor(len(lines) - 1, len(lines[-1]))
        view = window(lines, cursor, settings.prefix_tokens, settings.suffix_tokens, settings.chunk_lines)
        return completion_request(
            view,
            view.prefix,
            uri=self.uri,
            path=str(self.path),
            language="python",
            neighbours=[],
            multiline=allows_multiline(settings.multiline, view),
            max_tokens=settings.max_tokens,
            time_budget_ms=settings.time_budget_ms,
        )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _rss(pid: int | None) -> int | None:
    if pid is None:
        return None
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def default_source() -> Path:
    return Path(textwrap.__file__)


def run(
    shapes: list[str], report_dir: Path, cache: Path, source: Path, chars: int, rate: float, debounce_ms: int
) -> dict[str, Any]:
    report_dir.mkdir(parents=True, exist_ok=True)
    text = source.read_text()
    results = []
    for shape in shapes:
        model_dir = ensure_model(shape, cache)
        print(f"typing {chars} characters of {source.name} at {rate}/s into {shape}", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="oss-edge-bench-") as home:
            figures = asyncio.run(replay_typing(model_dir, text, chars, rate, debounce_ms / 1000, Path(home)))
        results.append({"shape": shape, **figures})
    report = {
        "benchmark": "lsp",
        "machine": machine(),
        "source": str(source),
        "results": results,
        "command": f"oss-edge bench lsp {' '.join('--shape ' + s for s in shapes)} --chars {chars} --rate {rate} "
        f"--debounce {debounce_ms}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (report_dir / "lsp.json").write_text(json.dumps(report, indent=2) + "\n")
    (report_dir / "lsp.md").write_text(markdown(report))
    plot(report, report_dir / "lsp_latency.png")
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    """Latency distribution of the keystroke replay: the suggestions shown, via LSP and from the raw runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in report["results"] if r.get("lsp_latency_samples_ms")]
    if not results:
        return
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        for key, label in (
            ("lsp_latency_samples_ms", "via LSP (keystroke to suggestion)"),
            ("raw_latency_samples_ms", "raw runtime, same requests"),
        ):
            values = sorted(r[key])
            if values:
                share = [(i + 1) / len(values) for i in range(len(values))]
                ax.step(values, share, where="post", marker=".", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("share of suggestions shown")
        ax.set_title(f"{r['shape']}: {r['suggestions_shown']} suggestions, typing {r['rate_per_s']}/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"LSP benchmark: typing {Path(report['source']).name}",
        "",
        "| shape | keys | sent / cancelled / shown | generations | latency p50 / p95 via LSP | raw runtime p50 / p95 "
        "| LSP overhead p50 | prompt from cache | RSS LSP / daemon |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        rss = r["rss_bytes"]
        lsp_rss = f"{rss['lsp_server'] / 1e6:.0f} MB" if rss["lsp_server"] else "n/a"
        lines.append(
            f"| {r['shape']} | {r['characters']} at {r['rate_per_s']}/s | {r['requests_sent']} / "
            f"{r['requests_cancelled_by_client']} / {r['suggestions_shown']} | {r['runtime_generations']} | "
            f"{r['lsp_latency_ms']['p50']} / {r['lsp_latency_ms']['p95']} ms | "
            f"{r['raw_latency_ms']['p50']} / {r['raw_latency_ms']['p95']} ms | {r['lsp_overhead_ms_p50']} ms | "
            f"{100 * (r['cached_share'] or 0):.1f}% | {lsp_rss} / {rss['daemon'] / 1e9:.2f} GB |"
        )
    lines += ["", "![keystroke latency distribution](lsp_latency.png)", "", "Command:", "", f"    {report['command']}"]
    return "\n".join(lines) + "\n"
