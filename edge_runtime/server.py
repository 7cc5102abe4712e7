"""`oss-edge serve`: the resident daemon. It owns the socket, the connections and the request methods.

One daemon per user and model: a lock file beside the socket says whether one already serves the model. The
socket lives in a folder only the user can enter (0700) and is itself 0600. TCP is opt-in, loopback only, and
needs the token written (0600) beside the socket. The daemon opens no other connection of any kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from edge_runtime import __version__
from edge_runtime.engine import DEFAULT_MAX_LENGTH, Engine, ModelFolder, Sampler, open_model_folder
from edge_runtime.errors import (
    InvalidParams,
    ProtocolMismatch,
    RuntimeFault,
    ShuttingDown,
    SocketError,
    Unauthorized,
    UnknownMethod,
)
from edge_runtime.harmony import (
    CompletionContext,
    ExplainContext,
    Neighbour,
    render_completion_prompt,
    render_explain_prompt,
)
from edge_runtime.paths import logs_dir, unsafe_folder
from edge_runtime.protocol import (
    MAX_FRAME_BYTES,
    NOTIFICATION,
    PROTOCOL_VERSION,
    REASONING_EFFORTS,
    REQUEST,
    FrameError,
    FrameReader,
    Message,
    notification,
    response,
)
from edge_runtime.scheduler import Job, Scheduler

log = logging.getLogger("oss_edge.server")

MAX_NEIGHBOURS = 8
# Unix socket paths are limited to about 104-108 bytes depending on the system.
MAX_SOCKET_PATH = 100
ANSWER_SHARE = 4  # explain: the last quarter of max_tokens is kept for the answer


def resident_split() -> dict[str, int]:
    """Anonymous and file-backed resident bytes (Linux): file-backed weight pages are the kernel's to reclaim."""
    try:
        status = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    keys = {"RssAnon:": "rss_anon_bytes", "RssFile:": "rss_file_bytes"}
    return {keys[f[0]]: int(f[1]) * 1024 for f in (line.split() for line in status) if f and f[0] in keys}


def tcp_info_path(socket_path: Path) -> Path:
    return socket_path.with_suffix(".tcp.json")


@dataclass
class ServeOptions:
    socket: Path
    tcp_port: int | None = None
    max_length: int = DEFAULT_MAX_LENGTH
    threads: int = 0
    slots: int = 2
    provider: str | None = None
    idle_exit_s: float = 900.0
    chunk_tokens: int = 0
    max_frame_bytes: int = MAX_FRAME_BYTES
    kernels: str = "auto"
    seed: int | None = None  # sampling without a request seed: derived from this and the prompt (reproducible)


class DaemonLock:
    """An flock held for the daemon's lifetime; a second daemon for the same socket finds it taken."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        import fcntl  # noqa: PLC0415  (POSIX only: Windows has no fcntl)

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Connection:
    def __init__(self, number: int, writer: asyncio.StreamWriter, needs_token: bool) -> None:
        self.number = number
        self.writer = writer
        self.authorized = not needs_token
        self.closed = False
        self.refusal: bytes | None = None  # the unauthorized reply, sent after the guessing penalty

    def send(self, data: bytes) -> None:
        if not self.closed and not self.writer.is_closing():
            self.writer.write(data)


class Daemon:
    def __init__(self, folder: ModelFolder, engine: Engine, options: ServeOptions) -> None:
        self.folder = folder
        self.engine = engine
        self.options = options
        self.scheduler = Scheduler(engine)
        self.connections: dict[int, Connection] = {}
        self.started = time.monotonic()
        self.last_client = time.monotonic()
        self.token = secrets.token_urlsafe(32) if options.tcp_port is not None else None
        self.refusals: list[float] = []  # when wrong tokens were refused (the last minute's)
        self.stopped = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.next_connection = 1
        self.methods: dict[str, Callable[[Connection, int, dict[str, Any]], Any]] = {
            "hello": self.hello,
            "complete": self.complete,
            "explain": self.explain,
            "cancel": self.cancel,
            "status": self.status,
            "shutdown": self.shutdown,
        }

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopped.set)
        servers = [await self._listen_unix()]
        if self.options.tcp_port is not None:
            servers.append(await self._listen_tcp())
        self.scheduler.start()
        log.info("ready: %s on %s, socket %s", self.folder.path, self.engine.provider, self.options.socket)
        print(f"oss-edge: serving {self.folder.path} on {self.options.socket}", file=sys.stderr, flush=True)
        watcher = asyncio.create_task(self._idle_watch())
        await self.stopped.wait()
        log.info("stopping")
        watcher.cancel()
        for server in servers:
            server.close()
        await asyncio.to_thread(self.scheduler.stop)
        for conn in list(self.connections.values()):
            with contextlib.suppress(Exception):
                await conn.writer.drain()
            conn.writer.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        with contextlib.suppress(OSError):
            self.options.socket.unlink()
        with contextlib.suppress(OSError):
            tcp_info_path(self.options.socket).unlink()

    async def _listen_unix(self) -> asyncio.AbstractServer:
        path = self.options.socket
        if len(str(path)) > MAX_SOCKET_PATH:
            raise SocketError(f"socket path {path} is too long for a Unix socket; pass a shorter --socket")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket: the lock proves nobody serves it
        old = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._client, path=str(path), limit=2**16)
        except OSError as exc:
            raise SocketError(f"cannot listen on {path}: {exc.strerror or exc}") from exc
        finally:
            os.umask(old)
        path.chmod(0o600)
        return server

    async def _listen_tcp(self) -> asyncio.AbstractServer:
        try:
            server = await asyncio.start_server(self._client_tcp, host="127.0.0.1", port=self.options.tcp_port)
        except OSError as exc:
            raise SocketError(f"cannot listen on 127.0.0.1:{self.options.tcp_port}: {exc.strerror or exc}") from exc
        port = server.sockets[0].getsockname()[1]
        info = tcp_info_path(self.options.socket)
        fd = os.open(info, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"host": "127.0.0.1", "port": port, "token": self.token, "pid": os.getpid()}, handle)
        log.info("also listening on 127.0.0.1:%d (token in %s)", port, info)
        print(f"oss-edge: TCP on 127.0.0.1:{port}, token in {info}", file=sys.stderr, flush=True)
        return server

    async def _idle_watch(self) -> None:
        if self.options.idle_exit_s <= 0:
            return
        while True:
            await asyncio.sleep(min(1.0, self.options.idle_exit_s / 4))
            if not self.connections and time.monotonic() - self.last_client >= self.options.idle_exit_s:
                log.info("no client for %.0f s: exiting", self.options.idle_exit_s)
                self.stopped.set()
                return

    async def _client_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._client(reader, writer, needs_token=True)

    async def _client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, needs_token: bool = False
    ) -> None:
        conn = Connection(self.next_connection, writer, needs_token)
        self.next_connection += 1
        self.connections[conn.number] = conn
        frames = FrameReader(self.options.max_frame_bytes)
        log.info("client %d connected", conn.number)
        try:
            while not conn.closed:
                data = await reader.read(1 << 16)
                if not data:
                    break
                try:
                    messages = frames.feed(data)
                except FrameError as exc:
                    log.warning("client %d: %s; closing its connection", conn.number, exc)
                    conn.send(notification("protocol_error", [exc.to_wire()]))
                    break
                for message in messages:
                    self._dispatch(conn, message)
                    if conn.refusal is not None:
                        await self._refuse(conn)
                        break
        except (ConnectionError, OSError):
            pass
        finally:
            conn.closed = True
            self.connections.pop(conn.number, None)
            self.last_client = time.monotonic()
            cancelled = self.scheduler.cancel(conn.number, None, "disconnected")
            log.info("client %d left (%d requests cancelled)", conn.number, cancelled)
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()

    async def _refuse(self, conn: Connection) -> None:
        """A wrong or missing token: the reply waits longer the more refusals the last minute saw (0.2 s each,
        at most 5 s), so guessing the token over TCP gets slower with every try; then the connection closes."""
        now = time.monotonic()
        self.refusals = [t for t in self.refusals if now - t < 60] + [now]
        await asyncio.sleep(min(5.0, 0.2 * (len(self.refusals) - 1)))
        if conn.refusal:
            conn.send(conn.refusal)
        conn.closed = True

    def _dispatch(self, conn: Connection, message: Message) -> None:
        if message.kind not in (REQUEST, NOTIFICATION):
            return  # the daemon sends no requests, so responses from a client carry nothing for it
        method = message.method or ""
        try:
            params = _params(message.params)
            if not conn.authorized and method != "hello":
                raise Unauthorized("send hello with the token first")
            handler = self.methods.get(method)
            if handler is None:
                raise UnknownMethod(f"unknown method {method!r}; known: {', '.join(sorted(self.methods))}")
            if self.stopped.is_set():
                raise ShuttingDown("the daemon is shutting down")
            result = handler(conn, message.id if message.id is not None else -1, params)
        except RuntimeFault as exc:
            if message.kind == REQUEST and message.id is not None and not isinstance(exc, Unauthorized):
                conn.send(response(message.id, exc.to_wire(), None))
            if isinstance(exc, Unauthorized):
                conn.refusal = response(message.id, exc.to_wire(), None) if message.id is not None else b""
            return
        if message.kind == REQUEST and message.id is not None and result is not _DEFERRED:
            conn.send(response(message.id, None, result))

    # --- methods -------------------------------------------------------------------------------------------

    def hello(self, conn: Connection, msgid: int, params: dict[str, Any]) -> dict[str, Any]:
        version = _field(params, "protocol", int, PROTOCOL_VERSION)
        if self.token is not None and not conn.authorized:
            if not secrets.compare_digest(str(params.get("token", "")), self.token):
                raise Unauthorized("wrong or missing token")
            conn.authorized = True
        if version != PROTOCOL_VERSION:
            raise ProtocolMismatch(f"this daemon speaks protocol {PROTOCOL_VERSION}, the client {version}")
        log.info("client %d is %s", conn.number, _field(params, "client", str, "unnamed")[:200])
        return {
            "protocol": PROTOCOL_VERSION,
            "server": f"oss-edge {__version__}",
            "pid": os.getpid(),
            "model": self.folder.name,
            "model_dir": str(self.folder.path),
            "provider": self.engine.provider,
            "precision": self.folder.precision,
            "context_limit": self.engine.max_length,
        }

    def complete(self, conn: Connection, msgid: int, params: dict[str, Any]) -> object:
        max_tokens = _field(params, "max_tokens", int, 128, minimum=1, maximum=4096)
        neighbours = _field(params, "neighbours", list, [])
        if len(neighbours) > MAX_NEIGHBOURS or not all(
            isinstance(n, dict) and isinstance(n.get("path"), str) and isinstance(n.get("text"), str)
            for n in neighbours
        ):
            raise InvalidParams(f"neighbours must be at most {MAX_NEIGHBOURS} maps with string path and text")
        ctx = CompletionContext(
            prefix=_field(params, "prefix", str),
            suffix=_field(params, "suffix", str, ""),
            path=_field(params, "path", str, ""),
            language=_field(params, "language", str, ""),
            neighbours=[Neighbour(n["path"], n["text"]) for n in neighbours],
        )
        prompt = render_completion_prompt(
            self.engine.codec, ctx, self.engine.max_length - max_tokens - 1, date.today().isoformat()
        )
        ignore_eos = _field(params, "ignore_eos", bool, False)
        stops = [*([] if ignore_eos else ["\n```"]), *_strings(params, "stop")]
        # warm: read the prompt into the KV cache in the background and write nothing, so that the completion asked
        # for there later starts from the cache (an editor sends it when the cursor rests)
        warm = _field(params, "warm", bool, False)
        self._submit(
            conn,
            msgid,
            "warm" if warm else "complete",
            prompt,
            max_tokens,
            params,
            stops,
            document=_field(params, "document", str, ctx.path),
            temperature=0.0,
            lead=ctx.prefix or "\n",
        )
        return _DEFERRED

    def explain(self, conn: Connection, msgid: int, params: dict[str, Any]) -> object:
        max_tokens = _field(params, "max_tokens", int, 1024, minimum=1, maximum=32768)
        # the answer's share of the budget: reasoning past the rest is cut, and the model answers
        answer_after = _field(
            params, "analysis_max_tokens", int, max_tokens - max_tokens // ANSWER_SHARE, minimum=0, maximum=32768
        )
        reasoning = _field(params, "reasoning", str, "medium")
        if reasoning not in REASONING_EFFORTS:
            raise InvalidParams(f"reasoning must be one of {', '.join(REASONING_EFFORTS)}")
        ctx = ExplainContext(
            code=_field(params, "code", str),
            path=_field(params, "path", str, ""),
            language=_field(params, "language", str, ""),
            question=_field(params, "question", str, ""),
            context=_field(params, "context", str, ""),
            reasoning=reasoning,
        )
        prompt = render_explain_prompt(
            self.engine.codec, ctx, self.engine.max_length - max_tokens - 1, date.today().isoformat()
        )
        self._submit(
            conn,
            msgid,
            "explain",
            prompt,
            max_tokens,
            params,
            _strings(params, "stop"),
            temperature=self.folder.temperature,
            top_p=self.folder.top_p,
            answer_after=min(answer_after, max_tokens),
        )
        return _DEFERRED

    def _submit(
        self,
        conn: Connection,
        msgid: int,
        kind: str,
        prompt: Any,
        max_tokens: int,
        params: dict[str, Any],
        stops: list[str],
        *,
        temperature: float,
        top_p: float = 1.0,
        document: str | None = None,
        lead: str = "",
        answer_after: int | None = None,
    ) -> None:
        budget = _field(params, "time_budget_ms", int, None, minimum=1)
        ignore_eos = _field(params, "ignore_eos", bool, False)
        sampler = Sampler(
            _field(params, "temperature", float, temperature, minimum=0.0, maximum=2.0),
            _field(params, "top_p", float, top_p, minimum=0.0, maximum=1.0),
            _field(params, "seed", int, None, minimum=0, maximum=2**64 - 1)
            if "seed" in params or self.options.seed is None
            else prompt_seed(self.options.seed, prompt.ids),
        )
        loop = self.loop
        assert loop is not None

        def emit(channel: str, text: str) -> None:
            data = notification("chunk", [{"id": msgid, "channel": channel, "text": text}])
            loop.call_soon_threadsafe(conn.send, data)

        def done(outcome: dict[str, Any] | RuntimeFault) -> None:
            if isinstance(outcome, RuntimeFault):
                data = response(msgid, outcome.to_wire(), None)
            else:
                data = response(msgid, None, outcome)
                log.info("client %d %s %d: %s", conn.number, kind, msgid, _summary(outcome))
            loop.call_soon_threadsafe(conn.send, data)

        job = Job(
            kind=kind,
            client=conn.number,
            request_id=msgid,
            prompt=prompt,
            max_new_tokens=max_tokens,
            time_budget_s=budget / 1000 if budget else None,
            sampler=sampler,
            stops=stops,
            emit=emit,
            done=done,
            document=document,
            lead=lead,
            ignore_eos=ignore_eos,
            answer_after=answer_after,
        )
        self.scheduler.submit(job)

    def cancel(self, conn: Connection, msgid: int, params: dict[str, Any]) -> dict[str, Any]:
        target = _field(params, "id", int)
        return {"cancelled": self.scheduler.cancel(conn.number, target)}

    def status(self, conn: Connection, msgid: int, params: dict[str, Any]) -> dict[str, Any]:
        process = psutil.Process()
        return {
            "state": "ready",
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "model": self.folder.name,
            "model_dir": str(self.folder.path),
            "provider": self.engine.provider,
            "threads": self.engine.threads,
            "context_limit": self.engine.max_length,
            "clients": len(self.connections),
            "load_s": round(self.engine.load_seconds, 2),
            "kernels": self.engine.kernels,
            "memory": {
                "rss_bytes": process.memory_info().rss,
                **resident_split(),
                "available_bytes": psutil.virtual_memory().available,
                "weight_bytes": self.folder.weight_bytes,
            },
            **self.scheduler.status(),
        }

    def shutdown(self, conn: Connection, msgid: int, params: dict[str, Any]) -> dict[str, Any]:
        assert self.loop is not None
        self.loop.call_soon(self.stopped.set)
        return {"ok": True}


def prompt_seed(seed: int, prompt: list[int]) -> int:
    """The sampling seed of a request sent without one, under `serve --seed`: the same prompt samples the same."""
    digest = hashlib.sha256((seed % 2**64).to_bytes(8, "little") + np.asarray(prompt, dtype=np.int64).tobytes())
    return int.from_bytes(digest.digest()[:8], "little")


_DEFERRED = object()
_REQUIRED = object()


def _params(raw: Any) -> dict[str, Any]:
    """Params are one map, sent bare or (as msgpack-rpc libraries do) as a one-element array."""
    if raw is None:
        return {}
    if isinstance(raw, list) and len(raw) <= 1:
        raw = raw[0] if raw else {}
    if not isinstance(raw, dict):
        raise InvalidParams("params must be a map (or an array holding one map)")
    return raw


def _field(
    params: dict[str, Any],
    name: str,
    kind: type[Any],
    default: Any = _REQUIRED,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    value: Any = params.get(name, default)
    if value is _REQUIRED:
        raise InvalidParams(f"{name} is required")
    if value is None and default is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidParams(f"{name} must be of type {kind.__name__}, not {type(value).__name__}")
    if kind is float and not math.isfinite(value):
        raise InvalidParams(f"{name} must be a finite number")
    if minimum is not None and value < minimum:
        raise InvalidParams(f"{name} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidParams(f"{name} must be at most {maximum}")
    return value


def _strings(params: dict[str, Any], name: str) -> list[str]:
    values = _field(params, name, list, [])
    if len(values) > 8 or not all(isinstance(v, str) and 0 < len(v) <= 200 for v in values):
        raise InvalidParams(f"{name} must be at most 8 non-empty strings of at most 200 characters")
    return list(values)


def _summary(result: dict[str, Any]) -> str:
    keys = ("finish_reason", "prompt_tokens", "cached_tokens", "generated_tokens", "ttft_ms", "tokens_per_s")
    return " ".join(f"{k}={result.get(k)}" for k in keys)


class LogFile(logging.FileHandler):
    """The daemon's log. A write that fails (the disk is full) pauses logging for a minute with one line on stderr
    instead of a traceback per record: serving goes on, and the log resumes once there is room."""

    PAUSE_S = 60.0

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.paused_until = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if time.monotonic() < self.paused_until:
            return
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        self.paused_until = time.monotonic() + self.PAUSE_S
        with contextlib.suppress(Exception):
            print(f"oss-edge: cannot write the log {self.baseFilename} ({error.strerror}); "
                  f"logging paused for {self.PAUSE_S:.0f} s, serving goes on", file=sys.stderr, flush=True)  # fmt: skip


def configure_logging(log_file: Path) -> None:
    handler = LogFile(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("oss_edge")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def serve(model_dir: Path, options: ServeOptions) -> int:
    """Run the daemon in the foreground until shutdown, SIGTERM, Ctrl-C or the idle timeout."""
    folder = open_model_folder(model_dir)
    problem = unsafe_folder(options.socket.parent)
    if problem:
        raise SocketError(f"refusing to listen on {options.socket}: {problem}")
    options.socket.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = DaemonLock(options.socket.with_suffix(".lock"))
    if not lock.acquire():
        print(
            f"oss-edge: a daemon (pid {lock.holder()}) already serves {options.socket}; nothing to do",
            file=sys.stderr,
        )
        return 0
    log_file = logs_dir() / f"serve-{options.socket.stem}.log"
    configure_logging(log_file)
    try:
        log.info("oss-edge %s loading %s (pid %d)", __version__, folder.path, os.getpid())
        print(f"oss-edge: loading {folder.path} (log: {log_file})", file=sys.stderr, flush=True)
        began = time.perf_counter()
        engine = Engine(
            folder,
            max_length=options.max_length,
            threads=options.threads,
            slots=options.slots,
            provider=options.provider,
            chunk_tokens=options.chunk_tokens,
            kernels=options.kernels,
        )
        engine.load_seconds = time.perf_counter() - began
        log.info(
            "loaded in %.1f s: provider %s, %s kernels, %d threads, %d slots of %d tokens; %.1f GB of loading's "
            "file pages released",
            engine.load_seconds,
            engine.provider,
            engine.kernels,
            engine.threads,
            len(engine.slots),
            engine.max_length,
            engine.released_bytes / 1e9,
        )
        if engine.provider != (options.provider or folder.provider):
            print(f"oss-edge: {folder.provider} is not available here; running on CPU", file=sys.stderr)
        asyncio.run(Daemon(folder, engine, options).run())
    finally:
        lock.release()
    return 0
