"""`oss-edge lsp`: the language server editors talk to. Thin handlers; the work is in context, cleanup and the link.

Completion comes two ways: `textDocument/inlineCompletion` (LSP 3.18) for clients that show ghost text, and
`textDocument/completion` only when invoked explicitly, for clients without it — a model completion costs hundreds
of milliseconds, too much to start on every trigger character next to the other completion sources.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcServerNotInitialized
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import ServerTextPosition

from edge_runtime import __version__
from edge_runtime.errors import NoModel
from edge_runtime.protocol import REASONING_EFFORTS
from lsp_server.cleanup import Surroundings, clean, indent_unit
from lsp_server.config import Settings, parse_settings
from lsp_server.context import (
    ChunkRing,
    Cursor,
    Window,
    allows_multiline,
    clamp_cursor,
    completion_request,
    window,
)
from lsp_server.explanation import Explanation, selection
from lsp_server.runtime_link import RuntimeLink

log = logging.getLogger("oss_edge.lsp")

EXPLAIN_COMMAND = "ossEdge.explainSelection"
STATUS_REQUEST = "ossEdge/status"
WARM_NOTIFICATION = "ossEdge/warm"
WORD = re.compile(r"[\w$]*$")
MAX_DOCUMENT_CHARS = 20_000_000
CONVERTER = get_converter()


@dataclass
class Answer:
    """The cleaned suggestion texts for one request at a cursor, with the document's lines as split once for it."""

    document: TextDocument
    lines: list[str]
    cursor: Cursor
    texts: list[str]

    def client_position(self, line: int, column: int) -> types.Position:
        return self.document.position_codec.position_to_client_units(self.lines, _server_position(Cursor(line, column)))


@dataclass
class Shown:
    """The last suggestion shown in a document, kept for type-through: the cursor's line, the text before the
    cursor on it, and the suggestion's text."""

    line: int
    line_before: str
    text: str


@dataclass
class DocumentState:
    """What the server keeps per open document (pygls keeps the text)."""

    language: str = ""
    ticket: int = 0  # the newest completion request's number: an older one still in its debounce gives way
    shown: Shown | None = None


class Protocol(LanguageServerProtocol):
    """Three departures from pygls' defaults.

    - Requests without "params" (allowed by JSON-RPC, sent by Neovim for `ossEdge/status`) are read as params null.
    - pygls drops requests after shutdown without a word; the specification wants an InvalidRequest error.
    - pygls runs commands inside a generator, where `$/cancelRequest` cannot reach the running command; running the
      command as the request's own task makes a long explanation cancellable from the client.
    """

    def structure_message(self, data: dict[str, Any]) -> Any:
        # JSON-RPC lets a request leave out "params"; pygls cannot read a custom request without it.
        if "method" in data and "params" not in data:
            data = {**data, "params": None}
        return super().structure_message(data)

    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    async def lsp_workspace__execute_command(self, params: types.ExecuteCommandParams) -> Any:  # type: ignore[override]
        handler = self.fm.commands.get(params.command)
        if handler is None:
            raise JsonRpcInvalidParams.of(ValueError(f"unknown command {params.command!r}"))
        return await handler(*(params.arguments or []))

    def handle_message(self, message: Any) -> None:
        method = getattr(message, "method", None)
        if self._shutdown and method not in (None, types.EXIT) and getattr(message, "id", None) is not None:
            error = types.ResponseError(code=types.ErrorCodes.InvalidRequest, message="the server is shut down")
            self._send_response(message.id, error=error)
            return
        super().handle_message(message)


class OssEdgeServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("oss-edge", __version__, protocol_cls=Protocol)
        self.settings = Settings()
        self.ring = ChunkRing()
        self.link = RuntimeLink()
        self.documents: dict[str, DocumentState] = {}
        self.active_uri: str | None = None
        self.root: str | None = None
        self.progress_supported = False
        self.shut_down = False
        self.pending_problems: list[str] = []
        self.ready_for_requests = False
        self.stats = {"requests": 0, "type_through": 0, "superseded": 0, "generations": 0, "shown": 0, "warmed": 0}
        self.last_latency_ms: float | None = None
        self.last_tokens_per_s: float | None = None

    # --- helpers -------------------------------------------------------------------------------------------

    def message(self, text: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        if not self.shut_down:
            self.window_show_message(types.ShowMessageParams(type=kind, message=f"oss-edge: {text}"))

    def apply_settings(self, raw: Any, base: Settings | None = None) -> None:
        self.settings, problems = parse_settings(raw, base)
        if problems:
            self.message("ignored invalid settings: " + "; ".join(problems))
        try:
            self.link.configure(self.settings)
        except NoModel as exc:
            self.link.model_dir = None
            self.message(str(exc))

    def relative_path(self, uri: str) -> str:
        parsed = urlparse(uri)
        path = unquote(parsed.path) if parsed.scheme in ("file", "") else f"{parsed.scheme}:{unquote(parsed.path)}"
        if self.root and path.startswith(self.root.rstrip("/") + "/"):
            return path[len(self.root.rstrip("/")) + 1 :]
        return path

    def state(self, uri: str) -> DocumentState:
        """The server's state for `uri`, made on first use (a client may ask before didOpen's language arrives)."""
        return self.documents.setdefault(uri, DocumentState())

    def language(self, uri: str) -> str:
        state = self.documents.get(uri)
        return state.language if state else ""

    def document(self, uri: str) -> TextDocument | None:
        """Only documents the client opened: their text is what the user sees."""
        if not self.ready_for_requests:
            raise JsonRpcServerNotInitialized("initialize first")
        document = self.workspace.text_documents.get(unquote(uri))  # pygls keys its documents unquoted
        if document is None or len(document.source) > MAX_DOCUMENT_CHARS:
            return None
        return document

    def remember(self, uri: str, around: int) -> None:
        document = self.workspace.text_documents.get(unquote(uri))  # pygls keys its documents unquoted
        if document is not None and "\x00" not in document.source[:4096]:
            lines = list(document.lines)
            self.ring.add(uri, self.relative_path(uri), lines, around, self.settings.chunk_lines)

    async def show_progress(
        self, token: str, phase: str, text: str | None, percent: int | None, cancellable: bool = False
    ) -> None:
        if not self.progress_supported or self.shut_down:
            return
        if phase == "begin":
            try:
                await self.work_done_progress.create_async(token)
            except Exception:  # a client may refuse; progress is a courtesy
                return
            self.work_done_progress.begin(
                token,
                types.WorkDoneProgressBegin(
                    title="oss-edge", message=text, percentage=percent, cancellable=cancellable
                ),
            )
        elif token in self.work_done_progress.tokens:
            if phase == "report":
                self.work_done_progress.report(token, types.WorkDoneProgressReport(message=text, percentage=percent))
            else:
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=text))
                self.work_done_progress.tokens.pop(token, None)

    def start_runtime(self) -> None:
        if self.link.model_dir is None or self.link.ready:
            return
        token = f"oss-edge-load-{uuid.uuid4().hex[:8]}"

        async def report(phase: str, text: str | None, percent: int | None) -> None:
            await self.show_progress(token, phase, text, percent)

        task = self.link.start(report)
        task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.result() is None and self.link.last_error:
            self.message(f"the model could not be started: {self.link.last_error}", types.MessageType.Error)

    # --- completion ----------------------------------------------------------------------------------------

    async def suggest(
        self, uri: str, position: types.Position, alternatives: int, selected: tuple[types.Range, str] | None
    ) -> Answer | None:
        """Cleaned suggestions at a position, or None. Type-through, debounce and supersession happen here."""
        self.stats["requests"] += 1
        at = self.view_at(uri, position)
        if at is None:
            return None
        document, lines, cursor, view = at
        self.enter(uri)
        if selected is None:
            remainder = self.type_through(uri, cursor, view.line_before)
            if remainder is not None:
                self.stats["type_through"] += 1
                return Answer(document, lines, cursor, [remainder])
        state = self.state(uri)
        state.ticket += 1
        ticket = state.ticket
        if self.settings.debounce_ms:
            await asyncio.sleep(self.settings.debounce_ms / 1000)
        if state.ticket != ticket or self.documents.get(uri) is not state:
            self.stats["superseded"] += 1
            return None
        prefix, line_before = view.prefix, view.line_before
        if selected is not None:
            prefix, line_before = prefix + selected[1], line_before + selected[1]
        multiline = allows_multiline(self.settings.multiline, view)
        where = Surroundings(line_before, view.line_after, view.suffix, indent_unit(lines), multiline)
        texts = await self.generate(uri, view, prefix, multiline, where, alternatives)
        if not texts:
            return None
        if selected is None:
            state.shown = Shown(cursor.line, view.line_before, texts[0])
        self.stats["shown"] += 1
        return Answer(document, lines, cursor, texts)

    def enter(self, uri: str) -> None:
        """The user works in `uri` now: the file they left joins the neighbour snippets (the prompt's early part,
        which changes here and never on a keystroke)."""
        if self.active_uri != uri:
            left = self.documents.get(self.active_uri) if self.active_uri is not None else None
            if self.active_uri is not None and left is not None and left.shown is not None:
                self.remember(self.active_uri, left.shown.line)
            self.active_uri = uri

    def view_at(self, uri: str, position: types.Position) -> tuple[TextDocument, list[str], Cursor, Window] | None:
        """The document, its lines, the cursor and the code around it that a completion there sees; None where
        the server does not complete (unknown document, language turned off, binary text)."""
        document = self.document(uri)
        if document is None or not self.settings.enabled_for(self.language(uri)):
            return None
        lines = list(document.lines)
        if position.line == len(lines) and (not lines or lines[-1].endswith("\n")):
            lines.append("")  # the empty line after a final newline, where the cursor is
        server_position = document.position_codec.position_from_client_units(lines, position)
        cursor = clamp_cursor(lines, server_position.line, server_position.character)
        view = window(
            lines, cursor, self.settings.prefix_tokens, self.settings.suffix_tokens, self.settings.chunk_lines
        )
        if "\x00" in view.prefix or "\x00" in view.suffix:
            return None
        return document, lines, cursor, view

    def request_params(self, uri: str, view: Window, prefix: str, multiline: bool) -> dict[str, Any]:
        return completion_request(
            view,
            prefix,
            uri=uri,
            path=self.relative_path(uri),
            language=self.language(uri),
            neighbours=self.ring.neighbours(uri, self.settings.neighbour_chunks),
            multiline=multiline,
            max_tokens=self.settings.max_tokens,
            time_budget_ms=self.settings.time_budget_ms,
        )

    async def warm(self, uri: str, position: types.Position) -> None:
        """Read the prompt a completion at `position` would have into the daemon's cache, in the background, so
        that the first suggestion there starts from the cache. Only once the model is loaded; never waits."""
        if not self.settings.warm_on_rest_ms or not self.link.ready:
            return
        at = self.view_at(uri, position)
        if at is None:
            return
        self.enter(uri)  # as the completion there will: the same neighbours, the same prompt
        view = at[3]
        params = self.request_params(uri, view, view.prefix, allows_multiline(self.settings.multiline, view))
        self.stats["warmed"] += 1
        await self.link.run("complete", {**params, "warm": True}, None, wait=False)

    async def generate(
        self, uri: str, view: Window, prefix: str, multiline: bool, where: Surroundings, alternatives: int
    ) -> list[str]:
        params = self.request_params(uri, view, prefix, multiline)
        texts: list[str] = []
        for attempt in range(alternatives):
            if attempt:
                params.update(temperature=0.8, seed=attempt)
            self.stats["generations"] += 1
            began = time.perf_counter()
            result = await self.link.run("complete", params, None, wait=False)
            if result is None:
                break
            self.last_latency_ms = round((time.perf_counter() - began) * 1000, 1)
            self.last_tokens_per_s = result.get("tokens_per_s")
            text = clean(result["text"], where)
            if text and text not in texts:
                texts.append(text)
        return texts

    def type_through(self, uri: str, cursor: Cursor, line_before: str) -> str | None:
        """While the user types what the suggestion says, the rest of the suggestion, with no model work."""
        last = self.documents[uri].shown if uri in self.documents else None
        if last is None or last.line != cursor.line or not line_before.startswith(last.line_before):
            return None
        typed = line_before[len(last.line_before) :]
        if typed and last.text.startswith(typed) and len(typed) < len(last.text):
            return last.text[len(typed) :]
        return None


SERVER = OssEdgeServer()


@SERVER.feature(types.INITIALIZE)
def initialize(ls: OssEdgeServer, params: types.InitializeParams) -> None:
    window_caps = params.capabilities.window
    ls.progress_supported = bool(window_caps and window_caps.work_done_progress)
    if params.workspace_folders:
        ls.root = unquote(urlparse(params.workspace_folders[0].uri).path)
    elif params.root_uri:
        ls.root = unquote(urlparse(params.root_uri).path)
    ls.settings, ls.pending_problems = parse_settings(params.initialization_options)
    ls.ready_for_requests = True


@SERVER.feature(types.INITIALIZED)
def initialized(ls: OssEdgeServer, params: types.InitializedParams) -> None:
    ls.apply_settings(None, ls.settings)
    if ls.pending_problems:
        ls.message("ignored invalid settings: " + "; ".join(ls.pending_problems))
    ls.start_runtime()


@SERVER.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: OssEdgeServer, params: types.DidChangeConfigurationParams) -> None:
    ls.apply_settings(params.settings, ls.settings)
    ls.start_runtime()


@SERVER.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: OssEdgeServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.documents[params.text_document.uri] = DocumentState(language=params.text_document.language_id)
    ls.remember(params.text_document.uri, 0)


@SERVER.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: OssEdgeServer, params: types.DidSaveTextDocumentParams) -> None:
    state = ls.documents.get(params.text_document.uri)
    ls.remember(params.text_document.uri, state.shown.line if state and state.shown else 0)


@SERVER.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: OssEdgeServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.documents.pop(uri, None)
    if ls.active_uri == uri:
        ls.active_uri = None


@SERVER.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(
    ls: OssEdgeServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList | None:
    invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
    info = params.context.selected_completion_info
    selected = (info.range, info.text) if info is not None else None
    outcome = await ls.suggest(
        params.text_document.uri, params.position, ls.settings.max_alternatives if invoked else 1, selected
    )
    if outcome is None:
        return None
    texts = outcome.texts
    here = outcome.client_position(outcome.cursor.line, outcome.cursor.column)
    if selected is not None:
        items = [
            types.InlineCompletionItem(
                insert_text=selected[1] + text, range=types.Range(start=selected[0].start, end=here)
            )
            for text in texts
        ]
    else:
        items = [
            types.InlineCompletionItem(insert_text=text, range=types.Range(start=here, end=here)) for text in texts
        ]
    return types.InlineCompletionList(items=items)


@SERVER.feature(WARM_NOTIFICATION)
async def warm(ls: OssEdgeServer, params: Any) -> None:
    """`ossEdge/warm` {textDocument: {uri}, position}: the cursor rests there; read its prompt into the cache."""
    try:
        raw = _mapping(params)
        uri = raw["textDocument"]["uri"]
        position = types.Position(line=int(raw["position"]["line"]), character=int(raw["position"]["character"]))
    except (KeyError, TypeError, ValueError, AttributeError):
        log.warning("ignored a malformed %s: %r", WARM_NOTIFICATION, params)
        return
    await ls.warm(uri, position)


@SERVER.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(resolve_provider=False))
async def completion(ls: OssEdgeServer, params: types.CompletionParams) -> types.CompletionList | None:
    context = params.context
    if context is not None and context.trigger_kind != types.CompletionTriggerKind.Invoked:
        return None
    outcome = await ls.suggest(params.text_document.uri, params.position, 1, None)
    if outcome is None:
        return None
    cursor, texts = outcome.cursor, outcome.texts
    word = WORD.search(outcome.lines[cursor.line][: cursor.column])
    typed = word.group(0) if word else ""
    start = outcome.client_position(cursor.line, cursor.column - len(typed))
    end = outcome.client_position(cursor.line, cursor.column)
    items = []
    for text in texts:
        first = text.split("\n", 1)[0]
        items.append(
            types.CompletionItem(
                label=(typed + first).strip()[:80] or text.strip()[:80],
                kind=types.CompletionItemKind.Text,
                detail="oss-edge",
                filter_text=typed + first,
                sort_text="0",
                text_edit=types.TextEdit(range=types.Range(start=start, end=end), new_text=typed + text),
                insert_text_format=types.InsertTextFormat.PlainText,
                documentation=types.MarkupContent(
                    kind=types.MarkupKind.Markdown,
                    value=f"```{ls.language(params.text_document.uri)}\n{typed + text}\n```",
                ),
            )
        )
    return types.CompletionList(is_incomplete=False, items=items)


@SERVER.feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.Empty], resolve_provider=False),
)
def code_action(ls: OssEdgeServer, params: types.CodeActionParams) -> list[types.CodeAction] | None:
    if params.range.start == params.range.end or ls.document(params.text_document.uri) is None:
        return None
    arguments = [{"uri": params.text_document.uri, "range": CONVERTER.unstructure(params.range)}]
    return [
        types.CodeAction(
            title="Explain selection (oss-edge)",
            kind=types.CodeActionKind.Empty,
            command=types.Command(title="Explain selection", command=EXPLAIN_COMMAND, arguments=arguments),
        )
    ]


@SERVER.command(EXPLAIN_COMMAND)
async def explain_selection(ls: OssEdgeServer, *args: Any) -> str | None:
    """Arguments: {"uri", "range", "reasoning"?} (or uri, range, reasoning as three values). Returns markdown."""
    uri, range_, effort = _explain_arguments(args)
    document = ls.document(uri)
    if document is None:
        raise JsonRpcInvalidParams.of(ValueError(f"{uri} is not open in the editor"))
    selected = selection(document, range_)
    if selected is None:
        return None
    return await Explanation(ls, uri).run(*selected, effort)


@SERVER.feature(STATUS_REQUEST)
def status(ls: OssEdgeServer, params: Any) -> dict[str, Any]:
    """For status bars: whether the model is loading, ready or failed, and the last suggestion's figures."""
    if ls.link.model_dir is None:
        state = "no-model"
    elif ls.link.ready:
        state = "ready"
    elif ls.link.connecting is not None and not ls.link.connecting.done():
        state = "loading"
    else:
        state = "error" if ls.link.last_error else "idle"
    server = ls.link.client.server if ls.link.ready and ls.link.client else {}
    return {
        "state": state,
        "model": str(ls.link.model_dir) if ls.link.model_dir else None,
        "provider": server.get("provider"),
        "error": ls.link.last_error,
        "lastLatencyMs": ls.last_latency_ms,
        "tokensPerSecond": ls.last_tokens_per_s,
        "requests": ls.stats["requests"],
        "typeThrough": ls.stats["type_through"],
        "warmed": ls.stats["warmed"],
        # the effective settings the editors act on themselves, so that they need not repeat the defaults
        "warmOnRestMs": ls.settings.warm_on_rest_ms,
    }


@SERVER.feature(types.SHUTDOWN)
async def shutdown(ls: OssEdgeServer, params: None) -> None:
    ls.shut_down = True  # nothing may be sent after shutdown: the client closes our stdout
    await ls.link.close()


def _server_position(cursor: Cursor) -> Any:
    return ServerTextPosition(cursor.line, cursor.column)


def _mapping(value: Any) -> Any:
    """A custom message's params as plain dicts (pygls hands them over as named tuples)."""
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, dict):
        return {key: _mapping(item) for key, item in value.items()}
    return value


def _explain_arguments(args: tuple[Any, ...]) -> tuple[str, types.Range, str | None]:
    values = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)
    if len(values) == 1 and isinstance(values[0], dict):
        spec = values[0]
        values = [spec.get("uri"), spec.get("range"), spec.get("reasoning")]
    if len(values) < 2 or not isinstance(values[0], str) or not isinstance(values[1], dict):
        raise JsonRpcInvalidParams.of(ValueError("explainSelection takes {uri, range, reasoning?}"))
    try:
        range_ = CONVERTER.structure(values[1], types.Range)
    except Exception as exc:
        raise JsonRpcInvalidParams.of(ValueError(f"not a range: {values[1]!r}")) from exc
    effort = values[2] if len(values) > 2 else None
    if effort is not None and effort not in REASONING_EFFORTS:
        raise JsonRpcInvalidParams.of(ValueError(f"reasoning must be one of {', '.join(REASONING_EFFORTS)}"))
    return values[0], range_, effort
