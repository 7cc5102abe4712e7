"""The LSP server's connection to the runtime daemon: found or started on demand, restarted when it dies.

Only the documented msgpack-RPC protocol crosses this line (through `edge_runtime.client`, which imports no model
code). Completions never wait for a daemon that is still starting: they answer nothing until it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edge_runtime.client import ChunkHandler, PendingCall, RuntimeClient, connect
from edge_runtime.errors import DaemonUnavailable, NoModel, RuntimeFault
from edge_runtime.paths import default_model_folder, default_socket
from lsp_server.config import Settings

log = logging.getLogger("oss_edge.lsp.runtime")

START_TIMEOUT_S = 900.0


def find_model(settings: Settings) -> Path:
    """The configured model folder, else the one `oss-edge export` made (the newest default export, else the newest)."""
    if settings.model_dir:
        path = Path(settings.model_dir).expanduser()
        if not (path / "genai_config.json").is_file():
            raise NoModel(f"ossEdge.modelDir {path} is not a model folder; export one with `oss-edge export`")
        return path
    found = default_model_folder()
    if found is None:
        raise NoModel(
            "oss-edge has no model yet: run `oss-edge export` (downloads and converts gpt-oss-20b), "
            "or set ossEdge.modelDir to an exported model folder"
        )
    return found


Reporter = Callable[[str, str | None, int | None], Awaitable[None]]  # phase ("begin"/"report"/"end"), text, percent


class RuntimeLink:
    def __init__(self) -> None:
        self.client: RuntimeClient | None = None
        self.model_dir: Path | None = None
        self.socket: Path | None = None
        self.connecting: asyncio.Task[RuntimeClient | None] | None = None
        self.last_error: str | None = None
        self.idle_exit = 900

    def configure(self, settings: Settings) -> None:
        """Point at the model the settings name; a change drops the current connection."""
        model = find_model(settings)
        socket = Path(settings.runtime_socket).expanduser() if settings.runtime_socket else default_socket(model)
        self.idle_exit = settings.runtime_idle_exit
        if (model, socket) != (self.model_dir, self.socket):
            self.model_dir, self.socket = model, socket
            self.drop()

    def drop(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            task = asyncio.get_event_loop().create_task(client.close())
            task.add_done_callback(lambda _: None)

    @property
    def ready(self) -> bool:
        return self.client is not None and self.client.closed_reason is None

    def start(self, report: Reporter | None = None) -> asyncio.Task[RuntimeClient | None]:
        """Connect in the background (starting the daemon if needed); at most one attempt at a time."""
        if self.connecting is None or self.connecting.done():
            self.connecting = asyncio.get_event_loop().create_task(self._connect(report))
        return self.connecting

    async def _connect(self, report: Reporter | None) -> RuntimeClient | None:
        if self.model_dir is None or self.socket is None:
            return None
        began = time.monotonic()
        ticker = None
        if report:
            await report("begin", f"connecting to the model in {self.model_dir.name}", 0)
            ticker = asyncio.get_event_loop().create_task(self._tick(report, began))
        try:
            self.client = await connect(
                self.socket,
                model_dir=self.model_dir,
                start=True,
                timeout=START_TIMEOUT_S,
                serve_args=["--idle-exit", str(self.idle_exit)],
                client="oss-edge lsp",
            )
            self.last_error = None
            log.info("runtime ready after %.1f s: %s", time.monotonic() - began, self.client.server)
            return self.client
        except RuntimeFault as exc:
            self.last_error = str(exc)
            log.warning("runtime unavailable: %s", exc)
            return None
        finally:
            if ticker:
                ticker.cancel()
            if report:
                await report("end", "model ready" if self.ready else f"model unavailable: {self.last_error}", None)

    async def _tick(self, report: Reporter, began: float) -> None:
        size = _weight_bytes(self.model_dir) if self.model_dir else 0
        while True:
            await asyncio.sleep(1.0)
            elapsed = time.monotonic() - began
            # Loading reads the weights once; at a conservative 0.5 GB/s that bounds the percentage shown.
            percent = min(95, int(100 * elapsed / max(1.0, size / 0.5e9))) if size else None
            await report("report", f"loading the model ({elapsed:.0f} s)", percent)

    async def get(self, wait: bool) -> RuntimeClient | None:
        """The connected client; without `wait`, None while the daemon is still starting."""
        if self.ready:
            return self.client
        self.client = None
        task = self.start()
        if not wait:
            return None
        return await task

    async def run(
        self, method: str, params: dict[str, Any], on_chunk: ChunkHandler | None, wait: bool
    ) -> dict[str, Any] | None:
        """One request; cancelled in the daemon when the caller is cancelled. None when no daemon is there."""
        for attempt in range(2):
            client = await self.get(wait)
            if client is None:
                return None
            try:
                pending = await client.start(method, params, on_chunk)
                return await _await_or_cancel(client, pending, _patience(params))
            except DaemonStalled as exc:
                self.last_error = str(exc)
                log.warning("%s; the %s request gets no answer", exc, method)
                return None
            except DaemonUnavailable as exc:
                log.warning("runtime went away (%s); %s", exc, "restarting it" if attempt == 0 else "giving up")
                self.client = None
                if not wait:
                    self.start()
                    return None
        return None

    async def close(self) -> None:
        if self.connecting and not self.connecting.done():
            self.connecting.cancel()
        if self.client is not None:
            await self.client.close()
            self.client = None


class DaemonStalled(DaemonUnavailable):
    """The daemon holds its connection open but answers nothing, not even `status` (stopped, or hung)."""


PING_TIMEOUT_S = 1.0
EXPLAIN_PATIENCE_S = 5.0


def _patience(params: dict[str, Any]) -> tuple[float, float]:
    """How long a request may go unanswered before the daemon is asked whether it still lives, and how long that
    check may take: together a completion's own time budget (a slow prefill on a live daemon passes the check
    and goes on); an explanation has none, and gets a few seconds."""
    budget = params.get("time_budget_ms")
    if not isinstance(budget, (int, float)) or budget <= 0:
        return EXPLAIN_PATIENCE_S, PING_TIMEOUT_S
    ping = min(PING_TIMEOUT_S, budget / 2000)
    return budget / 1000 - ping, ping


async def _await_or_cancel(
    client: RuntimeClient, pending: PendingCall, patience: tuple[float, float]
) -> dict[str, Any]:
    """The request's answer; each time `patience[0]` passes without it, `status` must answer within `patience[1]`
    (the daemon's loop answers it even while the engine works), or the request gives up: an editor never hangs
    on a stopped daemon."""
    wait, ping = patience
    try:
        while True:
            done, _ = await asyncio.wait({asyncio.shield(pending.future)}, timeout=wait)
            if done:
                result: dict[str, Any] = done.pop().result()
                return result
            try:
                await client.call("status", timeout=ping)
            except asyncio.TimeoutError:
                _cancel_later(client, pending)
                raise DaemonStalled(f"the daemon has not answered for {wait + ping:.1f} s") from None
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.cancel(pending), 2.0)
        raise


def _cancel_later(client: RuntimeClient, pending: PendingCall) -> None:
    """Ask the daemon to drop the abandoned request whenever it runs again; nobody waits for the reply."""
    task = asyncio.get_event_loop().create_task(client.cancel(pending))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _weight_bytes(model_dir: Path) -> int:
    try:
        manifest = json.loads((model_dir / "manifest.json").read_text())
        return sum(f["size"] for f in manifest.get("files", []))
    except (OSError, ValueError, KeyError, TypeError):
        return 0
