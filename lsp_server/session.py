"""An LSP client session against `oss-edge lsp`, as an editor would drive it: for `oss-edge demo` and `bench lsp`."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from edge_runtime import __version__


@dataclass
class Timed:
    seconds: float
    result: Any


@dataclass
class EditorSession:
    """One editor window: a language server process, the documents it has open, what it reported."""

    options: dict[str, Any]
    on_message: Callable[[str], None] = print
    on_progress: Callable[[str], None] | None = None
    on_explanation: Callable[[dict[str, Any]], None] | None = None
    root: Path | None = None  # the workspace folder: paths are shown to the model relative to it
    client: LanguageClient = field(init=False)
    versions: dict[str, int] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    async def start(self) -> None:
        self.client = LanguageClient("oss-edge-session", __version__)
        session = self

        @self.client.feature(types.WINDOW_SHOW_MESSAGE)
        def show_message(params: types.ShowMessageParams) -> None:
            session.on_message(params.message)

        @self.client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def create_progress(params: types.WorkDoneProgressCreateParams) -> None:
            return None

        @self.client.feature(types.PROGRESS)
        def progress(params: types.ProgressParams) -> None:
            value = params.value
            message = value.get("message") if isinstance(value, dict) else getattr(value, "message", None)
            if session.on_progress and message:
                session.on_progress(str(message))

        @self.client.feature("ossEdge/explanation")
        def explanation(params: Any) -> None:
            if session.on_explanation:
                session.on_explanation(params if isinstance(params, dict) else params._asdict())

        await self.client.start_io(sys.executable, "-m", "lsp_server", "lsp")
        capabilities = types.ClientCapabilities(window=types.WindowClientCapabilities(work_done_progress=True))
        await self.client.initialize_async(
            types.InitializeParams(
                capabilities=capabilities,
                initialization_options=self.options,
                root_uri=self.root.absolute().as_uri() if self.root else None,
            )
        )
        self.client.initialized(types.InitializedParams())

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()

    def open(self, path: Path | str, text: str, language: str) -> str:
        uri = Path(path).absolute().as_uri() if not str(path).startswith(("file:", "untitled:")) else str(path)
        self.versions[uri], self.texts[uri] = 0, text
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id=language, version=0, text=text)
            )
        )
        return uri

    def type(self, uri: str, characters: str) -> None:
        """Append characters at the end of the document, as one incremental change."""
        text = self.texts[uri]
        end = end_of(text)
        self.texts[uri] = text + characters
        self.versions[uri] += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
                content_changes=[
                    types.TextDocumentContentChangePartial(range=types.Range(start=end, end=end), text=characters)
                ],
            )
        )

    async def inline(self, uri: str, invoked: bool = False) -> Timed:
        kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
        began = time.perf_counter()
        result = await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=end_of(self.texts[uri]),
                context=types.InlineCompletionContext(trigger_kind=kind),
            )
        )
        return Timed(time.perf_counter() - began, result)

    def rest(self, uri: str) -> None:
        """The cursor rests at the end of the document: what an editor sends after `warmOnRestMs` without typing."""
        position = end_of(self.texts[uri])
        self.client.protocol.notify(
            "ossEdge/warm",
            {"textDocument": {"uri": uri}, "position": {"line": position.line, "character": position.character}},
        )

    async def wait_ready(self, uri: str, timeout: float) -> float:
        """Seconds until the first suggestion arrives (the model loads in the meantime)."""
        began = time.perf_counter()
        while (await self.inline(uri)).result is None:
            if time.perf_counter() - began > timeout:
                raise TimeoutError(f"no suggestion within {timeout:.0f} s")
            await asyncio.sleep(0.2)
        return time.perf_counter() - began

    async def explain(self, uri: str, start: types.Position, end: types.Position, reasoning: str) -> Timed:
        began = time.perf_counter()
        markdown = await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command="ossEdge.explainSelection",
                arguments=[
                    {
                        "uri": uri,
                        "range": {
                            "start": {"line": start.line, "character": start.character},
                            "end": {"line": end.line, "character": end.character},
                        },
                        "reasoning": reasoning,
                    }
                ],
            )
        )
        return Timed(time.perf_counter() - began, markdown)


def end_of(text: str) -> types.Position:
    """The position after the last character, in UTF-16 units (what the server negotiates by default)."""
    lines = text.split("\n")
    return types.Position(line=len(lines) - 1, character=len(lines[-1].encode("utf-16-le")) // 2)


def first_text(result: Any) -> str | None:
    if result is None or not getattr(result, "items", None):
        return None
    text = result.items[0].insert_text
    return text if isinstance(text, str) else getattr(text, "value", None)
