"""Explain Selection: one explanation streamed to the editor as `ossEdge/explanation` notifications, with
work-done progress the user can cancel, and the finished markdown as the command's result."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.workspace import TextDocument

if TYPE_CHECKING:
    from lsp_server.server import OssEdgeServer

EXPLANATION_NOTIFICATION = "ossEdge/explanation"
CONTEXT_LINES = 20  # lines above the selection sent along as context


def selection(document: TextDocument, range_: types.Range) -> tuple[str, str] | None:
    """The selected code and the lines above it, or None for a blank selection."""
    code = document.text_in_client_range(range_).strip("\n")
    if not code.strip():
        return None
    lines = list(document.lines)
    start = document.position_codec.position_from_client_units(lines, range_.start).line
    return code, "".join(lines[max(0, start - CONTEXT_LINES) : start])


class Explanation:
    """One running explanation: forwards the model's channels to the editor and keeps the final text."""

    def __init__(self, ls: OssEdgeServer, uri: str) -> None:
        self.ls = ls
        self.uri = uri
        self.id = uuid.uuid4().hex[:12]
        self.token = f"oss-edge-explain-{self.id}"
        self.final: list[str] = []
        self.thinking = False

    async def run(self, code: str, context: str, effort: str | None) -> str:
        ls = self.ls
        began = time.monotonic()
        await ls.show_progress(self.token, "begin", "explaining the selection", None, cancellable=True)
        self._cancel_with_progress()
        params = {
            "code": code,
            "path": ls.relative_path(self.uri),
            "language": ls.language(self.uri),
            "context": context,
            "reasoning": effort or ls.settings.explain_effort,
            "max_tokens": ls.settings.explain_max_tokens,
        }
        try:
            result = await ls.link.run("explain", params, self.on_chunk, wait=True)
        finally:
            await ls.show_progress(self.token, "end", f"done in {time.monotonic() - began:.1f} s", None)
        if result is None:
            raise RuntimeError(f"the model is not available: {ls.link.last_error or 'no model configured'}")
        markdown: str = result["text"].strip()
        cut = bool(result.get("analysis_cut"))
        self._notify({"channel": "final", "delta": "", "done": True, "markdown": markdown, "analysisCut": cut})
        return markdown

    def on_chunk(self, channel: str, text: str) -> None:
        self._notify({"channel": channel, "delta": text, "done": False})
        if channel == "final":
            self.final.append(text)
            self._report(f"{len(''.join(self.final).split())} words")
        elif not self.final and not self.thinking:
            self.thinking = True
            self._report("thinking…")

    def _cancel_with_progress(self) -> None:
        """window/workDoneProgress/cancel cancels the token's future: stop the explanation with it."""
        task = asyncio.current_task()
        from_client = self.ls.work_done_progress.tokens.get(self.token)
        if from_client is not None and task is not None:
            from_client.add_done_callback(lambda f: task.cancel() if f.cancelled() else None)

    def _notify(self, fields: dict[str, Any]) -> None:
        if not self.ls.shut_down:
            self.ls.protocol.notify(EXPLANATION_NOTIFICATION, {"id": self.id, "uri": self.uri, **fields})

    def _report(self, message: str) -> None:
        ls = self.ls
        if ls.shut_down or not ls.progress_supported or self.token not in ls.work_done_progress.tokens:
            return
        ls.work_done_progress.report(self.token, types.WorkDoneProgressReport(message=message))
