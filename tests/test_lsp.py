"""The language server end to end: a real LSP session (pytest-lsp) with the real daemon and the tiny model.

Every test runs twice, with the recorded client capabilities of Neovim 0.11 and of VS Code.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from edge_runtime.client import connect
from tests.conftest import keep_engine_busy, shutdown_daemon_async
from tests.waiting import until

SERVER = [sys.executable, "-m", "oss_edge", "lsp"]
SOURCE = (
    'import math\n\n\ndef area(radius):\n    """The area of a circle."""\n    return math.pi * radius ** 2\n\n\n'
    "def circumference(radius):\n    "
)
URI = "file:///work/circle.py"


def end_of(text: str) -> types.Position:
    lines = text.split("\n")
    return types.Position(line=len(lines) - 1, character=len(lines[-1]))


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER), params=["neovim", "visual_studio_code"])
async def client(request: pytest.FixtureRequest, lsp_client: LanguageClient, tiny_int4: Path, user_home: Path) -> Any:
    options: dict[str, Any] = {
        "modelDir": str(tiny_int4),
        "runtimeSocket": str(user_home / "run" / "lsp.sock"),
        "runtimeIdleExit": 60,
        "debounceMs": 0,
        "maxTokens": 12,
        "explainMaxTokens": 24,
    }
    marker = request.node.get_closest_marker("lsp_options")
    if marker:
        options.update(marker.kwargs)
    explanations: list[dict[str, Any]] = []
    lsp_client.explanations = explanations  # type: ignore[attr-defined]

    @lsp_client.feature("ossEdge/explanation")
    def on_explanation(params: Any) -> None:
        explanations.append(params if isinstance(params, dict) else params._asdict())  # pygls: a namedtuple

    result = await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities(request.param),
            initialization_options=options,
            workspace_folders=[types.WorkspaceFolder(uri="file:///work", name="work")],
        )
    )
    lsp_client.server_capabilities = result.capabilities  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()
    await shutdown_daemon_async(user_home / "run" / "lsp.sock")


async def runtime_status(home: Path) -> dict[str, Any]:
    runtime = await connect(home / "run" / "lsp.sock")
    status: dict[str, Any] = await runtime.call("status")
    await runtime.close()
    return status


def open_document(client: LanguageClient, uri: str, text: str, language: str = "python") -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language, version=0, text=text)
        )
    )


def change_document(client: LanguageClient, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


async def inline(
    client: LanguageClient, uri: str, position: types.Position, invoked: bool = False
) -> types.InlineCompletionList | None:
    kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    return await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=position,
            context=types.InlineCompletionContext(trigger_kind=kind),
        )
    )


async def ready(client: LanguageClient, timeout: float = 60) -> None:
    """Completion answers nothing while the model loads: wait until a probe document gets a suggestion."""
    probe = "file:///work/probe.py"
    open_document(client, probe, "total = ")
    await until(lambda: inline(client, probe, types.Position(line=0, character=8)), "the model", timeout, 0.05)


async def test_server_advertises_inline_completion_completion_and_explain(client: LanguageClient) -> None:
    capabilities = client.server_capabilities  # type: ignore[attr-defined]
    assert capabilities.inline_completion_provider is not None
    assert capabilities.completion_provider is not None
    assert not capabilities.completion_provider.trigger_characters
    assert capabilities.code_action_provider is not None
    assert "ossEdge.explainSelection" in capabilities.execute_command_provider.commands


async def test_model_load_shows_progress_then_inline_completion_answers(client: LanguageClient) -> None:
    await ready(client)
    open_document(client, URI, SOURCE)
    result = await inline(client, URI, end_of(SOURCE))
    assert result is not None and len(result.items) == 1
    item = result.items[0]
    assert isinstance(item.insert_text, str) and item.insert_text.strip()
    assert all(line == line.rstrip() for line in item.insert_text.split("\n"))
    assert item.range is not None and item.range.start == end_of(SOURCE) == item.range.end
    loads = [reports for reports in client.progress_reports.values() if reports]
    assert loads, "loading the model showed no progress"
    assert isinstance(loads[0][0], types.WorkDoneProgressBegin)
    assert isinstance(loads[0][-1], types.WorkDoneProgressEnd) and loads[0][-1].message == "model ready"


async def test_invoked_inline_completion_offers_distinct_alternatives(client: LanguageClient) -> None:
    await ready(client)
    open_document(client, URI, SOURCE)
    result = await inline(client, URI, end_of(SOURCE), invoked=True)
    assert result is not None and 1 <= len(result.items) <= 3
    texts = [item.insert_text for item in result.items]
    assert len(set(texts)) == len(texts)


async def test_plain_completion_only_when_invoked_with_a_text_edit_on_the_line(client: LanguageClient) -> None:
    await ready(client)
    text = SOURCE + "return 2 * math.p"
    open_document(client, URI, text)
    position = end_of(text)

    async def complete(kind: types.CompletionTriggerKind) -> types.CompletionList | None:
        return await client.text_document_completion_async(  # type: ignore[return-value]
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=URI),
                position=position,
                context=types.CompletionContext(trigger_kind=kind, trigger_character="." if kind == 2 else None),
            )
        )

    assert await complete(types.CompletionTriggerKind.TriggerCharacter) is None
    result = await complete(types.CompletionTriggerKind.Invoked)
    assert result is not None and len(result.items) == 1
    item = result.items[0]
    edit = item.text_edit
    assert isinstance(edit, types.TextEdit)
    assert edit.range.start == types.Position(line=position.line, character=position.character - 1)
    assert edit.range.end == position
    assert edit.new_text.startswith("p") and item.filter_text and item.filter_text.startswith("p")


async def test_typing_what_the_suggestion_says_needs_no_model_work(client: LanguageClient, user_home: Path) -> None:
    await ready(client)
    open_document(client, URI, SOURCE)
    first = await inline(client, URI, end_of(SOURCE))
    assert first is not None
    suggestion = first.items[0].insert_text
    assert isinstance(suggestion, str)
    line = suggestion.split("\n", 1)[0]
    assert len(line) >= 2, f"the model's greedy first line here is {line!r}: choose a SOURCE it runs on from"
    before = (await runtime_status(user_home))["cache"]["requests"]
    typed = SOURCE + line[0]
    change_document(client, URI, 1, typed)
    second = await inline(client, URI, end_of(typed))
    assert second is not None and second.items[0].insert_text == suggestion[1:]
    assert (await runtime_status(user_home))["cache"]["requests"] == before


@pytest.mark.lsp_options(debounceMs=300)
async def test_a_newer_request_supersedes_the_older_during_debounce(client: LanguageClient, user_home: Path) -> None:
    await ready(client)
    open_document(client, URI, SOURCE)
    before = (await runtime_status(user_home))["cache"]["requests"]
    older = asyncio.ensure_future(inline(client, URI, end_of(SOURCE)))
    await asyncio.sleep(0.05)
    newer = await inline(client, URI, end_of(SOURCE))
    assert await older is None
    assert newer is not None
    assert (await runtime_status(user_home))["cache"]["requests"] == before + 1


@pytest.mark.lsp_options(maxTokens=800, timeBudgetMs=60000, debounceMs=0)
async def test_cancel_request_stops_the_completion_in_the_runtime(client: LanguageClient, user_home: Path) -> None:
    await ready(client)
    text = "def walk(tree):\n    for node in tree:\n        "
    open_document(client, URI, text)
    # Long completions from another client keep the engine busy, so the editor's request is still in the daemon
    # when the cancel comes, whatever the synthetic model would have written.
    other = await connect(user_home / "run" / "lsp.sock")
    busy = await keep_engine_busy(other)
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI),
        position=end_of(text),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
    )
    request = asyncio.ensure_future(
        client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="to-cancel")
    )

    def editor_waiting(status: dict[str, Any]) -> bool:
        return any(job["document"] == URI for job in status["waiting"])

    async def waiting() -> bool:
        return editor_waiting(await runtime_status(user_home))

    await until(waiting, "the editor's request to queue", interval=0.005)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="to-cancel"))
    with pytest.raises(Exception, match=r"[Cc]ancel"):
        await request

    async def gone() -> dict[str, Any] | None:  # the server cancels in the daemon right after answering the client
        status = await runtime_status(user_home)
        return None if editor_waiting(status) else status

    status = await until(gone, "the request to leave the daemon's queue")
    assert status["finish_reasons"].get("cancelled") == 1
    assert not busy[-1].future.done()  # it left the queue while the engine was still busy: cancelled, not run
    for call in busy:
        await other.cancel(call)
    await asyncio.gather(*(call.future for call in busy))
    await other.close()


async def test_explanation_streams_and_the_answer_holds_no_reasoning(client: LanguageClient) -> None:
    await ready(client)
    open_document(client, URI, SOURCE)
    selection = {"start": {"line": 3, "character": 0}, "end": {"line": 5, "character": 32}}
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            range=types.Range(start=types.Position(line=3, character=0), end=types.Position(line=5, character=32)),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    assert actions and actions[0].title == "Explain selection (oss-edge)"
    # lsprotocol's client side reads any code action that carries a command as a bare Command (its union hook only
    # looks for the key), leaving our command object as its string form: read it back.
    action = actions[0]
    spec = ast.literal_eval(action.command) if isinstance(action, types.Command) else vars(action.command)
    assert spec["command"] == "ossEdge.explainSelection"
    assert spec["arguments"][0]["range"] == selection
    markdown = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=spec["command"], arguments=spec["arguments"])
    )
    notes: list[dict[str, Any]] = client.explanations  # type: ignore[attr-defined]
    assert notes and notes[-1]["done"] is True and notes[-1]["markdown"] == markdown
    deltas = [n for n in notes if not n["done"]]
    assert deltas, "nothing streamed"
    assert "".join(n["delta"] for n in deltas if n["channel"] == "final").strip() == (markdown or "")
    reasoning = "".join(n["delta"] for n in deltas if n["channel"] == "analysis")
    if reasoning.strip():
        assert reasoning.strip() not in (markdown or "")


async def test_no_code_action_without_a_selection(client: LanguageClient) -> None:
    open_document(client, URI, SOURCE)
    here = types.Position(line=1, character=0)
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            range=types.Range(start=here, end=here),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    assert not actions


@pytest.mark.lsp_options(maxTokens=5000, multiline="sometimes", languages="python", bogus=1)
async def test_invalid_settings_fall_back_with_one_message(client: LanguageClient) -> None:
    await until(lambda: client.messages, "a message", interval=0.02)
    settings_messages = [m.message for m in client.messages if "invalid settings" in m.message]
    assert len(settings_messages) == 1
    text = settings_messages[0]
    assert "maxTokens" in text and "multiline" in text and "languages" in text and "bogus" in text
    await ready(client)  # the defaults work


async def test_configuration_changes_take_effect(client: LanguageClient) -> None:
    await ready(client)
    open_document(client, "file:///work/notes.md", "Some notes ", language="markdown")
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"ossEdge": {"languages": ["python"]}})
    )
    await asyncio.sleep(0.1)
    assert await inline(client, "file:///work/notes.md", types.Position(line=0, character=11)) is None
    open_document(client, URI, SOURCE)
    assert await inline(client, URI, end_of(SOURCE)) is not None


async def test_bad_positions_documents_and_uris_get_sensible_answers(client: LanguageClient, user_home: Path) -> None:
    await ready(client)

    async def asked_the_model(uri: str, position: types.Position) -> bool:
        """The server completed there: it sent the model a request (whatever the random model then wrote), and
        answered with suggestions or nothing, never an error."""
        before = (await runtime_status(user_home))["cache"]["requests"]
        result = await inline(client, uri, position)
        assert result is None or isinstance(result, types.InlineCompletionList)

        async def counted() -> bool:  # a job counts when it ends, which may be just after the answer
            return (await runtime_status(user_home))["cache"]["requests"] == before + 1

        try:
            await until(counted, f"a model request for {uri}", timeout=10)
        except AssertionError:
            return False
        return True

    async def refused(uri: str, position: types.Position) -> bool:
        before = (await runtime_status(user_home))["cache"]["requests"]
        result = await inline(client, uri, position)
        return result is None and (await runtime_status(user_home))["cache"]["requests"] == before

    assert await refused("file:///work/never-opened.py", types.Position(line=0, character=0))
    open_document(client, URI, SOURCE)
    assert await asked_the_model(URI, types.Position(line=3, character=500))  # clamped to the line's end
    assert await asked_the_model(URI, types.Position(line=900, character=3))  # clamped to the last line
    open_document(client, "file:///work/emoji.py", 'label = "😀😀" + ')
    # 10 UTF-16 units is inside the second emoji's surrogate pair
    assert await asked_the_model("file:///work/emoji.py", types.Position(line=0, character=10))
    open_document(client, "file:///work/blob.bin", "\x00\x01binary\x00" * 100, language="plaintext")
    assert await refused("file:///work/blob.bin", types.Position(line=0, character=5))
    huge = "x = 1\n" * 1_800_000  # about 10 MB
    open_document(client, "file:///work/huge.py", huge + "y = ")
    started = asyncio.get_running_loop().time()
    # the window around the cursor, not the whole file
    assert await asked_the_model("file:///work/huge.py", types.Position(line=1_800_000, character=4))
    assert asyncio.get_running_loop().time() - started < 30
    cell = "vscode-notebook-cell:/work/analysis.ipynb#W0sZmlsZQ%3D%3D"  # escaped: pygls keys it unescaped
    open_document(client, cell, "import math\nmath.")
    assert await asked_the_model(cell, types.Position(line=1, character=5))


async def test_a_dead_daemon_is_restarted_by_the_next_requests(client: LanguageClient, user_home: Path) -> None:
    await ready(client)
    status = await runtime_status(user_home)
    os.kill(status["pid"], signal.SIGKILL)
    await asyncio.sleep(0.2)
    open_document(client, URI, SOURCE)
    await ready(client)
    assert (await runtime_status(user_home))["pid"] != status["pid"]


@pytest.mark.lsp_options(timeBudgetMs=800)
async def test_a_stopped_daemon_never_hangs_the_editor(client: LanguageClient, user_home: Path) -> None:
    await ready(client)
    open_document(client, URI, SOURCE)
    pid = (await runtime_status(user_home))["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        began = asyncio.get_running_loop().time()
        answers = [await inline(client, URI, end_of(SOURCE)) for _ in range(2)]
        waited = asyncio.get_running_loop().time() - began
    finally:
        os.kill(pid, signal.SIGCONT)
    # each request gave up within its time budget (a liveness check at its end), with nothing shown
    assert answers == [None, None] and waited < 2 * 0.8 + 2.0
    assert not client.messages  # nothing the user did wrong: no warning
    # the daemon carries on once it runs again, and serves the same connection
    await ready(client)
    assert (await runtime_status(user_home))["pid"] == pid


@pytest.mark.lsp_options(modelDir="")
async def test_without_a_model_one_message_says_what_to_run(client: LanguageClient) -> None:
    await until(lambda: client.messages, "a message", interval=0.02)
    assert len(client.messages) == 1
    assert "oss-edge export" in client.messages[0].message
    open_document(client, URI, SOURCE)
    assert await inline(client, URI, end_of(SOURCE)) is None


def lsp_exchange(messages: list[dict[str, Any]], expect: int) -> list[dict[str, Any]]:
    """Raw JSON-RPC over the server's stdio: send the messages, read `expect` messages back."""

    process = subprocess.Popen(SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdin is not None and process.stdout is not None
    for message in messages:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    process.stdin.flush()
    replies = []
    watchdog = threading.Timer(30, process.kill)  # a missing reply fails the test instead of hanging it
    watchdog.start()
    try:
        while len(replies) < expect:
            length = 0
            while (header := process.stdout.readline().strip()) != b"":
                if header.lower().startswith(b"content-length:"):
                    length = int(header.split(b":")[1])
            replies.append(json.loads(process.stdout.read(length)))
    finally:
        watchdog.cancel()
        process.kill()
        process.wait(10)
    return replies


def test_requests_before_initialize_and_after_shutdown_get_errors() -> None:
    completion = {
        "method": "textDocument/inlineCompletion",
        "params": {
            "textDocument": {"uri": URI},
            "position": {"line": 0, "character": 0},
            "context": {"triggerKind": 1},
        },
    }
    before = lsp_exchange([{"id": 1, **completion}], expect=1)
    assert before[0]["id"] == 1 and before[0]["error"]["code"] == -32002  # ServerNotInitialized
    replies = lsp_exchange(
        [
            {
                "id": 1,
                "method": "initialize",
                "params": {"capabilities": {}, "initializationOptions": {"modelDir": ""}},
            },
            {"method": "initialized", "params": {}},
            {"id": 2, "method": "shutdown"},
            {"id": 3, **completion},
        ],
        expect=4,
    )
    by_id = {r.get("id"): r for r in replies if "id" in r}
    assert "result" in by_id[1] and by_id[2]["result"] is None
    assert by_id[3]["error"]["code"] == -32600  # InvalidRequest after shutdown


async def test_a_selected_popup_item_is_continued_and_covered_by_the_range(client: LanguageClient) -> None:
    await ready(client)
    text = SOURCE + "return 2 * math.p"
    open_document(client, URI, text)
    here = end_of(text)
    word = types.Range(start=types.Position(line=here.line, character=here.character - 1), end=here)
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            position=here,
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic,
                selected_completion_info=types.SelectedCompletionInfo(range=word, text="pi"),
            ),
        )
    )
    assert result is not None and result.items
    item = result.items[0]
    assert isinstance(item.insert_text, str) and item.insert_text.startswith("pi") and len(item.insert_text) > 2
    assert item.range == types.Range(start=word.start, end=here)


async def test_an_explanation_can_be_cancelled_by_the_client(client: LanguageClient, user_home: Path) -> None:
    await ready(client)
    open_document(client, URI, SOURCE)
    # Keep the engine busy with long completions from another client, so that the explanation waits in the queue
    # (completions go first) and the cancel meets it there, whatever the synthetic model would have written.
    other = await connect(user_home / "run" / "lsp.sock")
    busy = await keep_engine_busy(other)
    arguments = [{"uri": URI, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 6, "character": 0}}}]
    request = asyncio.ensure_future(
        client.protocol.send_request_async(
            types.WORKSPACE_EXECUTE_COMMAND,
            types.ExecuteCommandParams(command="ossEdge.explainSelection", arguments=arguments),
            msg_id="explain-to-cancel",
        )
    )

    async def queued() -> int:
        return (await runtime_status(user_home))["queue"]["explain"]

    await until(queued, "the explanation to queue", interval=0.002)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="explain-to-cancel"))
    with pytest.raises(Exception, match=r"[Cc]ancel"):
        await request

    async def left() -> dict[str, Any] | None:  # the server cancels in the daemon right after answering the client
        status = await runtime_status(user_home)
        return None if status["queue"]["explain"] else status

    status = await until(left, "the explanation to leave the queue")
    assert status["finish_reasons"].get("cancelled") == 1
    assert not busy[-1].future.done()  # the explanation left the queue while the engine was still busy
    for call in busy:
        await other.cancel(call)
    await asyncio.gather(*(call.future for call in busy))
    await other.close()


async def test_bad_command_arguments_get_invalid_params(client: LanguageClient) -> None:
    open_document(client, URI, SOURCE)
    selection = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
    for command, arguments in [
        ("ossEdge.explainSelection", [{"uri": URI}]),
        ("ossEdge.explainSelection", [{"uri": URI, "range": {"start": 3}}]),
        ("ossEdge.explainSelection", [{"uri": URI, "range": selection, "reasoning": "extreme"}]),
        ("ossEdge.explainSelection", [{"uri": "file:///work/closed.py", "range": selection}]),
        ("ossEdge.noSuchCommand", []),
    ]:
        with pytest.raises(Exception, match=r"-32602|[Ii]nvalid"):
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command=command, arguments=arguments)
            )


async def test_status_request_feeds_status_bars(client: LanguageClient) -> None:
    await ready(client)
    open_document(client, URI, SOURCE)
    await inline(client, URI, end_of(SOURCE))
    status = await client.protocol.send_request_async("ossEdge/status", None)
    status = status if isinstance(status, dict) else status._asdict()
    assert status["state"] == "ready" and status["provider"] == "cpu"
    assert status["lastLatencyMs"] > 0 and status["requests"] >= 2
    # the editors take the settings they act on themselves from here: the server's default, then the user's value
    from lsp_server.config import Settings

    assert status["warmOnRestMs"] == Settings().warm_on_rest_ms
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"ossEdge": {"warmOnRestMs": 1234}})
    )

    async def changed() -> bool:
        answer = await client.protocol.send_request_async("ossEdge/status", None)
        return (answer if isinstance(answer, dict) else answer._asdict())["warmOnRestMs"] == 1234

    await until(changed, "the new warmOnRestMs in ossEdge/status")


async def test_a_resting_cursor_warms_the_cache_for_its_completion(client: LanguageClient, user_home: Path) -> None:
    await ready(client)
    # the user worked in another file first: leaving it puts it among the neighbour snippets, which the warming
    # must already see, or the completion's prompt would differ from the warmed one early on
    other = "file:///work/geometry.py"
    shapes = "".join(f"def area_{n}(side):\n    return side * {n}\n\n\n" for n in range(20))
    open_document(client, other, shapes + "def cube(side):\n    ")
    assert await inline(client, other, end_of(shapes + "def cube(side):\n    ")) is not None
    text = SOURCE + "\n\ndef diameter(radius):\n    "
    open_document(client, URI, text)
    before = await runtime_status(user_home)
    position = end_of(text)
    where = {"line": position.line, "character": position.character}
    client.protocol.notify("ossEdge/warm", {"textDocument": {"uri": URI}, "position": where})
    client.protocol.notify("ossEdge/warm", {"textDocument": {"uri": URI}})  # malformed: ignored, nothing breaks

    async def warmed_once() -> dict[str, Any] | None:
        status = await runtime_status(user_home)
        return status if status["finish_reasons"].get("warmed", 0) > before["finish_reasons"].get("warmed", 0) else None

    warmed = await until(warmed_once, "the warming to finish")
    assert warmed["finish_reasons"].get("warmed", 0) == before["finish_reasons"].get("warmed", 0) + 1
    assert await inline(client, URI, position) is not None
    after = await runtime_status(user_home)
    prompt = after["cache"]["prompt_tokens"] - warmed["cache"]["prompt_tokens"]
    cached = after["cache"]["cached_tokens"] - warmed["cache"]["cached_tokens"]
    assert cached == prompt - 1  # the completion found its whole prompt in the cache but the last token
    status = await client.protocol.send_request_async("ossEdge/status", None)
    assert (status["warmed"] if isinstance(status, dict) else status.warmed) == 1
