"""An asyncio client for the daemon: requests, streamed chunks, cancellation, and starting the daemon on demand.

It imports no model code: the LSP server and the benchmarks use it to talk to `oss-edge serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.errors import DaemonUnavailable, RuntimeFault
from edge_runtime.paths import logs_dir
from edge_runtime.protocol import (
    MAX_FRAME_BYTES,
    NOTIFICATION,
    PROTOCOL_VERSION,
    RESPONSE,
    FrameError,
    FrameReader,
    request,
)

ChunkHandler = Callable[[str, str], None]


class RemoteError(RuntimeFault):
    """An error the daemon answered with; `code` is its wire code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class PendingCall:
    id: int
    future: asyncio.Future[Any]
    on_chunk: ChunkHandler | None = None
    chunks: list[tuple[str, str]] = field(default_factory=list)


class RuntimeClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.ids = itertools.count(1)
        self.pending: dict[int, PendingCall] = {}
        self.notifications: list[tuple[str, Any]] = []
        self.closed_reason: str | None = None
        self.server: dict[str, Any] = {}
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def connect_unix(cls, path: Path, timeout: float = 5.0) -> RuntimeClient:
        owner = _socket_owner(path)
        if owner is not None and hasattr(os, "getuid") and owner != os.getuid():
            # another user's daemon would read the code sent to it: never talk to one
            raise DaemonUnavailable(f"{path} belongs to another user (uid {owner}); not connecting to it")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise DaemonUnavailable(f"no daemon answers on {path} ({exc.__class__.__name__})") from exc
        return cls(reader, writer)

    @classmethod
    async def connect_tcp(cls, host: str, port: int, timeout: float = 5.0) -> RuntimeClient:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise DaemonUnavailable(f"no daemon answers on {host}:{port} ({exc.__class__.__name__})") from exc
        return cls(reader, writer)

    async def hello(self, client: str = "oss-edge client", token: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "client": client}
        if token:
            params["token"] = token
        self.server = await self.call("hello", params)
        return self.server

    async def start(
        self, method: str, params: dict[str, Any] | None = None, on_chunk: ChunkHandler | None = None
    ) -> PendingCall:
        """Send a request; the returned call's future resolves to its result (or raises RemoteError)."""
        if self.closed_reason:
            raise DaemonUnavailable(self.closed_reason)
        msgid = next(self.ids)
        call = PendingCall(msgid, asyncio.get_running_loop().create_future(), on_chunk)
        self.pending[msgid] = call
        self.writer.write(request(msgid, method, [params or {}]))
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            self.pending.pop(msgid, None)
            raise DaemonUnavailable(f"the daemon went away ({exc})") from exc
        return call

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        on_chunk: ChunkHandler | None = None,
        timeout: float | None = None,
    ) -> Any:
        pending = await self.start(method, params, on_chunk)
        return await asyncio.wait_for(asyncio.shield(pending.future), timeout)

    async def cancel(self, call: PendingCall) -> None:
        with contextlib.suppress(RuntimeFault):
            await self.call("cancel", {"id": call.id})

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task

    async def _read(self) -> None:
        frames = FrameReader(MAX_FRAME_BYTES)
        reason = "the daemon closed the connection"
        try:
            while True:
                data = await self.reader.read(1 << 16)
                if not data:
                    break
                for message in frames.feed(data):
                    if message.kind == RESPONSE:
                        self._resolve(message.id, message.error, message.result)
                    elif message.kind == NOTIFICATION:
                        self._notify(message.method or "", message.params)
        except FrameError as exc:
            reason = f"the daemon sent something unreadable ({exc})"
        except (ConnectionError, OSError) as exc:
            reason = f"the connection to the daemon broke ({exc})"
        self.closed_reason = reason
        for call in self.pending.values():
            if not call.future.done():
                call.future.set_exception(DaemonUnavailable(reason))
        self.pending.clear()

    def _resolve(self, msgid: int | None, error: Any, result: Any) -> None:
        call = self.pending.pop(msgid, None) if msgid is not None else None
        if call is None or call.future.done():
            return
        if error is not None:
            code = error.get("code", "error") if isinstance(error, dict) else "error"
            text = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            call.future.set_exception(RemoteError(code, text))
        else:
            call.future.set_result(result)

    def _notify(self, method: str, params: Any) -> None:
        if method == "chunk" and isinstance(params, list) and params and isinstance(params[0], dict):
            chunk = params[0]
            call = self.pending.get(chunk.get("id"))  # type: ignore[arg-type]
            if call is not None:
                call.chunks.append((chunk.get("channel", ""), chunk.get("text", "")))
                if call.on_chunk:
                    call.on_chunk(chunk.get("channel", ""), chunk.get("text", ""))
            return
        self.notifications.append((method, params))


def serve_command(model_dir: Path, socket: Path, serve_args: Sequence[str] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "edge_runtime",
        "serve",
        "--model",
        str(model_dir),
        "--socket",
        str(socket),
        *serve_args,
    ]


async def connect(
    socket: Path,
    *,
    model_dir: Path | None = None,
    start: bool = False,
    timeout: float = 300.0,
    serve_args: Sequence[str] = (),
    client: str = "oss-edge client",
) -> RuntimeClient:
    """Connect to the daemon on `socket` and say hello; with `start`, start it for `model_dir` and wait for it."""
    try:
        return await _hello(await RuntimeClient.connect_unix(socket), client)
    except DaemonUnavailable:
        # Nobody listens, or a dying daemon accepted the connection and then went away: start a fresh one.
        if not start or model_dir is None:
            raise
    return await _hello(await _start_and_connect(model_dir, socket, timeout, serve_args), client)


async def _hello(conn: RuntimeClient, client: str) -> RuntimeClient:
    try:
        await conn.hello(client)
    except BaseException:
        await conn.close()
        raise
    return conn


async def _start_and_connect(model_dir: Path, socket: Path, timeout: float, serve_args: Sequence[str]) -> RuntimeClient:
    errors = logs_dir() / f"start-{socket.stem}.err"
    with errors.open("wb") as err:
        process = subprocess.Popen(
            serve_command(model_dir, socket, serve_args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # the daemon outlives the client that started it
            env={**os.environ},
        )
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await RuntimeClient.connect_unix(socket, timeout=1.0)
        except DaemonUnavailable:
            pass
        code = process.poll()
        if code not in (None, 0):
            message = errors.read_text(errors="replace").strip().splitlines()
            raise DaemonUnavailable(message[-1] if message else f"the daemon exited with status {code}")
        if time.monotonic() > deadline:
            raise DaemonUnavailable(f"the daemon did not become ready within {timeout:.0f} s (see {errors})")
        await asyncio.sleep(0.05)


def read_tcp_info(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _socket_owner(path: Path) -> int | None:
    try:
        return os.stat(path).st_uid
    except OSError:
        return None
