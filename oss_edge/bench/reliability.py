"""`oss-edge bench reliability`: hostile frames against the real daemon with an honest client measured alongside,
then a soak of keystroke-like requests typed through a real file. Counts, not timings, decide: crashes, tracebacks,
silent drops, the honest client's stalls, memory and latency per window."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import psutil
from lsprotocol import types

from edge_runtime.client import connect
from edge_runtime.protocol import FrameReader, notification, request
from lsp_server.config import Settings
from lsp_server.context import Cursor, allows_multiline, completion_request, window
from lsp_server.session import EditorSession
from oss_edge.bench.common import ensure_model, machine, oss_edge_command, percentile

STALL_S = 1.0  # an honest request slower than this is a stall
REPLY_WAIT_S = 2.0  # how long a hostile connection waits for the daemon's answer
HOSTILE_VALUES: list[Any] = [
    None,
    True,
    -1,
    -(2**63),
    2**64 - 1,
    1e308,
    float("nan"),
    float("inf"),
    "",
    "\x00\u202e\U0001f600" * 3,
    "x" * 100_000,
    b"\x00\xff",
    [],
    [1, "two", None],
    {},
    {"nested": {"deeper": [1, 2, 3]}},
]
BASE_PARAMS: dict[str, dict[str, Any]] = {
    "hello": {"protocol": 1, "client": "fuzz"},
    "complete": {"prefix": "def f(x):\n    return ", "path": "fuzz.py", "max_tokens": 4, "stop": ["\n"]},
    "explain": {"code": "x = 1", "max_tokens": 4, "reasoning": "low"},
    "cancel": {"id": 7},
    "status": {},
}
OPTIONAL_FIELDS = {
    "complete": [
        "suffix",
        "language",
        "document",
        "neighbours",
        "time_budget_ms",
        "temperature",
        "top_p",
        "seed",
        "warm",
        "ignore_eos",
    ],
    "explain": ["path", "language", "question", "context", "temperature", "top_p", "seed"],
}


@dataclass
class Tally:
    """What the daemon did with hostile input."""

    frames: int = 0
    error_replies: int = 0  # an error response, or a protocol_error notice before closing
    answered: int = 0  # a fuzzed request that happened to be valid got its result
    silent_drops: int = 0  # a well-formed request whose connection closed without any reply: a bug
    waiting: int = 0  # a truncated frame: the daemon rightly waits for the rest
    connections: int = 0
    examples: list[str] = field(default_factory=list)  # the first few silent drops, for the report

    def drop(self, what: str) -> None:
        self.silent_drops += 1
        if len(self.examples) < 8:
            self.examples.append(what[:200])


def run(
    shape: str,
    report_dir: Path,
    cache: Path,
    frames: int,
    connections: int,
    soak: int,
    seed: int,
    with_faults: bool = True,
) -> dict[str, Any]:
    report_dir.mkdir(parents=True, exist_ok=True)
    model_dir = ensure_model(shape, cache)
    with tempfile.TemporaryDirectory(prefix="oss-edge-reliability-") as home:
        daemon = _Daemon(model_dir, Path(home))
        daemon.start()
        try:
            print("reliability: the honest client alone", file=sys.stderr)
            alone = _Honest(daemon.socket, Path(home), 200).finish()
            print(f"reliability: {frames} hostile frames, {connections} dropped connections", file=sys.stderr)
            fuzz = asyncio.run(_fuzz(daemon.socket, Path(home), frames, connections, seed))
            crashed_in_fuzz = daemon.process.poll() is not None
            soaked = {} if crashed_in_fuzz or soak <= 0 else _soak(daemon, soak)
        finally:
            daemon.stop()
        tracebacks = daemon.tracebacks()
        print("reliability: faults (kill -9, SIGSTOP, a killed language server, racing daemons)", file=sys.stderr)
        faulted = faults(model_dir, Path(home)) if with_faults else {}
    report = {
        "benchmark": "reliability",
        "machine": machine(),
        "shape": shape,
        "honest_alone": alone,
        "fuzz": {**fuzz, "daemon_crashed": crashed_in_fuzz},
        "tracebacks": tracebacks,
        "soak": soaked,
        "faults": faulted,
        "command": f"oss-edge bench reliability --shape {shape} --frames {frames} --connections {connections} "
        f"--soak {soak} --seed {seed}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    report["bars"] = bars(report)
    (report_dir / "reliability.json").write_text(json.dumps(report, indent=2) + "\n")
    (report_dir / "reliability.md").write_text(markdown(report))
    plot(report, report_dir / "reliability.png")
    return report


class _Daemon:
    """`oss-edge serve` in a home of its own, its stderr kept in a file so that tracebacks can be counted."""

    def __init__(self, model_dir: Path, home: Path, stderr: Path | None = None) -> None:
        self.model_dir, self.home = model_dir, home
        self.socket = home / "run" / "reliability.sock"
        self.stderr = stderr or home / "serve.stderr"
        self.process: subprocess.Popen[bytes] = None  # type: ignore[assignment]

    def start(self) -> None:
        env = {**os.environ, "OSS_EDGE_HOME": str(self.home)}
        command = oss_edge_command("serve", "--model", str(self.model_dir), "--socket", str(self.socket))
        with open(self.stderr, "wb") as err:
            self.process = subprocess.Popen([*command, "--idle-exit", "0"], env=env, stdout=err, stderr=err)
        deadline = time.monotonic() + 300
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not start: {self.stderr.read_text()[-400:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def tracebacks(self) -> dict[str, Any]:
        """Tracebacks the daemon printed or logged: each one is an exception nobody handled."""
        texts = [self.stderr.read_text(errors="replace")]
        texts += [p.read_text(errors="replace") for p in (self.home / "state" / "logs").glob("serve-*.log")]
        found = [t for text in texts for t in text.split("Traceback (most recent call last):")[1:]]
        return {"count": len(found), "first": [t.strip().splitlines()[-1][:200] for t in found[:5]]}


_HONEST = """
import asyncio, json, sys, time
from pathlib import Path
from edge_runtime.client import connect

async def main(socket, count, stop, out):
    client = await connect(Path(socket), client="honest")
    params = {"prefix": "def area(radius):\\n    return ", "path": "honest.py", "max_tokens": 4}
    samples, index = [], 0
    await client.call("complete", params, timeout=120)  # its prompt in the cache, as in an editor at work
    Path(out + ".ready").touch()
    while (count == 0 or index < count) and not Path(stop).exists():
        began = time.perf_counter()
        try:
            if index % 2:
                await client.call("complete", params, timeout=30)
            else:
                await client.call("status", timeout=30)
            samples.append(time.perf_counter() - began)
        except Exception as exc:
            samples.append(f"{exc.__class__.__name__}: {exc}")
        index += 1
        await asyncio.sleep(0.005)
    await client.close()
    Path(out).write_text(json.dumps(samples))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
"""


class _Honest:
    """An honest client in a process of its own (so that the fuzzer's own work never delays it): it alternates
    `status` and a short completion, as an editor does, and keeps each latency or the error it met."""

    def __init__(self, socket: Path, work: Path, count: int = 0) -> None:
        self.out, self.stop_file = work / f"honest-{count}.json", work / f"honest-{count}.stop"
        self.stop_file.unlink(missing_ok=True)
        args = [str(socket), str(count), str(self.stop_file), str(self.out)]
        self.process = subprocess.Popen([sys.executable, "-c", _HONEST, *args])
        while not Path(f"{self.out}.ready").exists():
            if self.process.poll() is not None:
                raise RuntimeError("the honest client did not start")
            time.sleep(0.05)

    def finish(self) -> dict[str, Any]:
        self.stop_file.touch()
        self.process.wait(120)
        return _latency_figures(json.loads(self.out.read_text()))


def _latency_figures(samples: list[Any]) -> dict[str, Any]:
    times = [s for s in samples if isinstance(s, float)]
    errors = [s for s in samples if isinstance(s, str)]
    return {
        "requests": len(samples),
        "errors": len(errors),
        "first_errors": errors[:3],
        "stalls": sum(t > STALL_S for t in times),
        "p50_ms": round(statistics.median(times) * 1000, 2) if times else None,
        "p95_ms": round(percentile(times, 0.95) * 1000, 2) if times else None,
        "worst_ms": round(max(times) * 1000, 1) if times else None,
    }


async def _fuzz(socket: Path, work: Path, frames: int, connections: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    tally = Tally()
    honest = _Honest(socket, work)
    began = time.perf_counter()
    try:
        sent, next_report = 0, 1000
        while sent < frames:
            kind = rng.choice(["requests", "bytes", "truncated", "nesting", "oversized", "shapes", "trickle"],
                              p=[0.62, 0.12, 0.08, 0.04, 0.02, 0.1, 0.02])  # fmt: skip
            sent += await _FUZZERS[str(kind)](socket, rng, tally)
            if sent >= next_report:
                print(f"reliability: {sent}/{frames} frames", file=sys.stderr, flush=True)
                next_report += 1000
        for _ in range(connections):
            await _open_and_drop(socket, rng, tally)
    finally:
        honest_figures = honest.finish()
    return {
        "frames": tally.frames,
        "connections": tally.connections,
        "error_replies": tally.error_replies,
        "answered": tally.answered,
        "silent_drops": tally.silent_drops,
        "silent_drop_examples": tally.examples,
        "waiting_for_the_rest": tally.waiting,
        "seconds": round(time.perf_counter() - began, 1),
        "honest": honest_figures,
    }


async def _exchange(
    socket: Path, payload: bytes, expect: int, tally: Tally, trickle: bool = False, wait: float = REPLY_WAIT_S
) -> None:
    """Send `payload` on a fresh connection and read until `expect` replies, EOF or `wait` seconds of silence."""
    tally.connections += 1
    reader, writer = await asyncio.open_unix_connection(str(socket), limit=2**24)
    frames = FrameReader(max_bytes=2**26)
    replies: list[Any] = []
    closed = False
    try:
        if trickle:
            for i in range(len(payload)):
                writer.write(payload[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.001)
        else:
            writer.write(payload)
            await writer.drain()
        while len(replies) < expect:
            data = await asyncio.wait_for(reader.read(1 << 16), wait)
            if not data:
                closed = True
                break
            replies += [m for m in frames.feed(data) if m.kind == 1 or m.method == "protocol_error"]
    except (asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
        with _suppressed():
            await writer.wait_closed()
    for reply in replies:
        if reply.kind == 1 and reply.error is None:
            tally.answered += 1
        else:
            tally.error_replies += 1
    missing = expect - len(replies)
    if missing > 0 and expect > 0:
        if closed:
            for _ in range(missing):
                tally.drop(repr(payload[:120]))
        else:
            tally.waiting += missing


class _suppressed:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> bool:
        return exc[0] is not None and issubclass(exc[0], (ConnectionError, OSError))


def _hostile_request(rng: np.random.Generator, msgid: int) -> bytes:
    method = str(rng.choice([*BASE_PARAMS, "no_such_method", "x" * 5000, ""]))
    params: Any = dict(BASE_PARAMS.get(method, {}))
    mutation = int(rng.integers(6))
    fields = [*params, *OPTIONAL_FIELDS.get(method, [])]
    if mutation == 0 or not fields:
        params = HOSTILE_VALUES[int(rng.integers(len(HOSTILE_VALUES)))]  # params not a map at all
    elif mutation == 1 and params:
        params.pop(str(rng.choice(list(params))))  # a required field missing
    elif mutation == 2:
        params[f"unknown_{int(rng.integers(100))}"] = 1
    else:  # one field, required or optional, of a hostile type or value
        params[str(rng.choice(fields))] = HOSTILE_VALUES[int(rng.integers(len(HOSTILE_VALUES)))]
    if rng.random() < 0.2:
        params = [params]  # msgpack-RPC libraries that wrap params in an array
    return request(msgid, method, params)


async def _requests(socket: Path, rng: np.random.Generator, tally: Tally) -> int:
    """Well-formed frames with hostile parameters, many on one connection: each must get an answer."""
    count = int(rng.integers(10, 60))
    payload = b"".join(_hostile_request(rng, i) for i in range(count))
    tally.frames += count
    await _exchange(socket, payload, count, tally)
    return count


async def _bytes(socket: Path, rng: np.random.Generator, tally: Tally) -> int:
    tally.frames += 1
    payload = rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
    # most random bytes are not msgpack (a protocol_error, then the close); some are the start of a long value
    await _exchange(socket, payload, 1, tally, wait=0.2)
    return 1


async def _truncated(socket: Path, rng: np.random.Generator, tally: Tally) -> int:
    tally.frames += 1
    whole = request(1, "complete", BASE_PARAMS["complete"])
    await _exchange(socket, whole[: int(rng.integers(1, len(whole)))], 1, tally, wait=0.1)
    return 1


async def _nesting(socket: Path, rng: np.random.Generator, tally: Tally) -> int:
    tally.frames += 1
    depth = int(rng.integers(600, 5000))
    payload = b"\x94\x00\x01\xa6status" + b"\x91" * depth + b"\xc0"  # params nested thousands deep
    await _exchange(socket, payload, 1, tally)
    return 1


async def _oversized(socket: Path, rng: np.random.Generator, tally: Tally) -> int:
    tally.frames += 1
    size = int(rng.integers(17, 64)) << 20
    head = b"\x94\x00\x01\xa8complete\x81\xa6prefix\xdb" + struct.pack(">I", size)
    await _exchange(socket, head + b"a" * (1 << 20), 1, tally)  # says it is huge; a MiB of it is enough
    return 1


async def _shapes(socket: Path, rng: np.random.Generator, tally: Tally) -> int:
    """Messages that are msgpack but not requests: bad ids, types, lengths; responses and notifications sent to
    the daemon."""
    tally.frames += 1
    choices: list[Any] = [
        [0, -1, "status", {}],
        [0, 2**40, "status", {}],
        [0, "id", "status", {}],
        [0, 1.5, "status", {}],
        [0, 1, 42, {}],
        [0, 1, "status"],
        [3, 1, "status", {}],
        [1, 1, None, None],
        [],
        {"not": "an array"},
        "a string",
    ]
    message = choices[int(rng.integers(len(choices)))]
    expect = 0 if message == [1, 1, None, None] else 1  # a stray response is ignored: nothing to answer
    roll = rng.random()
    if roll < 0.3:
        payload = notification("cancel", {"id": "not an id"})
        expect = 0
    elif roll < 0.4:
        payload = b"\x94\x00\x01\xa6status\x81\xa1a\xa2\xff\xfe"  # a string that is not UTF-8
    else:
        payload = msgpack.packb(message, use_bin_type=True)
    await _exchange(socket, payload, expect, tally)
    return 1


async def _trickle(socket: Path, rng: np.random.Generator, tally: Tally) -> int:
    tally.frames += 1
    await _exchange(socket, request(1, "status", {}), 1, tally, trickle=True)
    return 1


_FUZZERS = {
    "requests": _requests,
    "bytes": _bytes,
    "truncated": _truncated,
    "nesting": _nesting,
    "oversized": _oversized,
    "shapes": _shapes,
    "trickle": _trickle,
}


async def _open_and_drop(socket: Path, rng: np.random.Generator, tally: Tally) -> None:
    tally.connections += 1
    _, writer = await asyncio.open_unix_connection(str(socket))
    if rng.random() < 0.5:
        writer.write(request(1, "complete", BASE_PARAMS["complete"])[: int(rng.integers(1, 20))])
    writer.close()
    with _suppressed():
        await writer.wait_closed()


def _soak(daemon: _Daemon, count: int) -> dict[str, Any]:
    print(f"reliability: soak, {count} keystroke requests from two clients", file=sys.stderr)
    return asyncio.run(_soak_async(daemon, count))


async def _soak_async(daemon: _Daemon, count: int) -> dict[str, Any]:
    settings = Settings()
    text = (Path(statistics.__file__).read_text() * 4)[: count + 2000]
    clients = [await connect(daemon.socket, client=f"soak-{i}") for i in range(2)]
    process = psutil.Process(daemon.process.pid)
    windows: list[dict[str, Any]] = []
    latencies: list[float] = []
    before = await clients[0].call("status")
    mark = before
    errors = 0
    for index in range(count):
        cut = 1000 + index  # typing through the file, one character per request
        lines = text[:cut].splitlines(keepends=True) or [""]
        if text[:cut].endswith("\n"):
            lines.append("")
        view = window(lines, Cursor(len(lines) - 1, len(lines[-1])), settings.prefix_tokens, 0, settings.chunk_lines)
        params = completion_request(
            view,
            view.prefix,
            uri="soak.py",
            path="soak.py",
            language="python",
            neighbours=[],
            multiline=allows_multiline(settings.multiline, view),
            max_tokens=8,
            time_budget_ms=settings.time_budget_ms,
        )
        client = clients[index % 2]
        began = time.perf_counter()
        try:
            call = await client.start("complete", params)
            if index % 2:  # typed through: the next key came before the answer
                await client.cancel(call)
                await call.future
            else:
                await call.future
                latencies.append(time.perf_counter() - began)
        except Exception:
            errors += 1
        if (index + 1) % 1000 == 0 or index + 1 == count:
            status = await clients[0].call("status")
            prompt = status["cache"]["prompt_tokens"] - mark["cache"]["prompt_tokens"]
            cached = status["cache"]["cached_tokens"] - mark["cache"]["cached_tokens"]
            windows.append(
                {
                    "requests": index + 1,
                    "rss_bytes": process.memory_info().rss,
                    "fds": process.num_fds(),
                    "threads": process.num_threads(),
                    "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
                    "p95_ms": round(percentile(latencies, 0.95) * 1000, 2) if latencies else None,
                    "cached_share": round(cached / prompt, 4) if prompt else None,
                }
            )
            print(f"reliability: soak {index + 1}/{count}: {windows[-1]}", file=sys.stderr, flush=True)
            mark, latencies = status, []
    for client in clients:
        await client.close()
    return {"requests": count, "errors": errors, "windows": windows}


def bars(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's bars, each with the figures it compares."""
    fuzz, alone, soak = report["fuzz"], report["honest_alone"], report["soak"]
    out: dict[str, Any] = {
        "no crash": not fuzz["daemon_crashed"],
        "no unhandled traceback": report["tracebacks"]["count"] == 0,
        "no silent drop of a request": fuzz["silent_drops"] == 0,
        "honest p95 during the fuzz within 2x alone": (
            fuzz["honest"]["p95_ms"] is not None and fuzz["honest"]["p95_ms"] <= 2 * alone["p95_ms"]
        ),
    }
    windows = soak.get("windows", []) if soak else []
    if len(windows) >= 3:
        second, last = windows[1], windows[-1]
        out["soak RSS growth after warm-up < 5%"] = last["rss_bytes"] <= 1.05 * second["rss_bytes"]
        out["soak p95 flat (last <= 1.2x second)"] = last["p95_ms"] <= 1.2 * second["p95_ms"]
        shares = [w["cached_share"] for w in windows[1:] if w["cached_share"] is not None]
        out["soak cache serves >= 98%"] = bool(shares) and min(shares) >= 0.98
        out["soak fds flat"] = last["fds"] <= second["fds"]
    out.update(_fault_bars(report.get("faults") or {}))
    return out


def _fault_bars(f: dict[str, Any]) -> dict[str, bool]:
    if not f:
        return {}
    one_load = f["first_load_s"] + 2.0  # one more daemon start, not several, nor a wait for a timeout
    stopped = f["stopped_daemon"]
    return {
        "kill -9 mid-explanation: the editor is answered": f["kill_mid_explanation"]["editor_got"] != "hung",
        "kill -9 mid-stream: the client is answered": f["kill_mid_completion"]["client_got"] != "hung",
        "after kill -9 the next request is served within one model load": all(
            f[k]["recovered_s"] <= one_load and f[k]["new_pid"] for k in ("kill_mid_explanation", "kill_mid_completion")
        ),
        "a stopped daemon: every request answered (null) within its time budget": stopped["all_null"]
        and stopped["worst_s"] <= stopped["time_budget_s"] + 0.5,
        "a killed language server leaves the daemon serving": f["killed_language_server"]["daemon_kept"],
        "exactly one of two racing daemons serves": f["racing_daemons"]["serving"] == 1
        and f["racing_daemons"]["socket_answers_the_survivor"],
        **_disk_bar(f.get("disk_full") or {}),
    }


def _disk_bar(disk: dict[str, Any]) -> dict[str, bool]:
    if not disk.get("measured"):
        return {}
    after = disk["after"]
    return {
        "the disk full under the log: every request served, no traceback": disk["daemon_alive"]
        and after["served"] == after["requests"]
        and disk["tracebacks"] == 0
    }


def markdown(report: dict[str, Any]) -> str:
    fuzz, alone, soak = report["fuzz"], report["honest_alone"], report["soak"]
    honest = fuzz["honest"]
    lines = [
        f"Reliability: the daemon on `{report['shape']}` under hostile input, then a soak",
        "",
        "| figure | value |",
        "|---|---|",
        f"| hostile frames / connections | {fuzz['frames']} / {fuzz['connections']} |",
        f"| error replies / answered / silent drops | {fuzz['error_replies']} / {fuzz['answered']} / "
        f"{fuzz['silent_drops']} |",
        f"| truncated frames left waiting (closed by the client) | {fuzz['waiting_for_the_rest']} |",
        f"| daemon crashed | {'yes' if fuzz['daemon_crashed'] else 'no'} |",
        f"| unhandled tracebacks | {report['tracebacks']['count']} |",
        f"| honest client alone: p50 / p95 / worst | {alone['p50_ms']} / {alone['p95_ms']} / {alone['worst_ms']} ms |",
        f"| honest client during the fuzz: p50 / p95 / worst | {honest['p50_ms']} / {honest['p95_ms']} / "
        f"{honest['worst_ms']} ms ({honest['requests']} requests, {honest['errors']} errors, "
        f"{honest['stalls']} over {STALL_S:g} s) |",
        "",
    ]
    if soak:
        lines += [
            f"Soak: {soak['requests']} keystroke requests typing through a standard-library file, two clients, "
            f"every other one cancelled; {soak['errors']} errors.",
            "",
            "| requests | RSS | fds | threads | p50 | p95 | prompt tokens from the cache |",
            "|---|---|---|---|---|---|---|",
        ]
        for w in soak["windows"]:
            lines.append(
                f"| {w['requests']} | {w['rss_bytes'] / 1e6:.1f} MB | {w['fds']} | {w['threads']} | {w['p50_ms']} ms | "
                f"{w['p95_ms']} ms | {w['cached_share']} |"
            )
        lines.append("")
    lines += _fault_lines(report.get("faults") or {})
    lines += ["| bar | kept |", "|---|---|"]
    lines += [f"| {name} | {'yes' if kept else '**no**'} |" for name, kept in report["bars"].items()]
    lines += [
        "",
        "![soak: memory and latency per window](reliability.png)",
        "",
        "Command:",
        "",
        f"    {report['command']}",
    ]
    return "\n".join(lines) + "\n"


def _fault_lines(f: dict[str, Any]) -> list[str]:
    if not f:
        return []
    explain, stream, stopped = f["kill_mid_explanation"], f["kill_mid_completion"], f["stopped_daemon"]
    lsp, race = f["killed_language_server"], f["racing_daemons"]
    return [
        f"Faults, under a real `oss-edge lsp` (the first model start took {f['first_load_s']} s):",
        "",
        "| fault | what happened |",
        "|---|---|",
        f"| kill -9 of the daemon mid-explanation | the editor got {explain['editor_got']!r} after "
        f"{explain['after_s']} s; the next suggestion came {explain['recovered_s']} s later from a new daemon "
        f"(its load: {explain['new_daemon_load_s']} s) |",
        f"| kill -9 mid-stream (a 4000-token completion) | the client got {stream['client_got']!r} after "
        f"{stream['after_s']} s; the editor was served again after {stream['recovered_s']} s |",
        f"| SIGSTOP of the daemon for 10 s | {stopped['requests']} editor requests, "
        f"{'all' if stopped['all_null'] else 'not all'} answered null, the slowest in {stopped['worst_s']} s "
        f"(time budget {stopped['time_budget_s']} s); the same daemon served after SIGCONT: "
        f"{'yes' if stopped['same_daemon_after'] else 'no'} |",
        f"| kill -9 of the language server | the daemon {'stayed' if lsp['daemon_kept'] else 'did not stay'}; the "
        f"next editor window was served after {lsp['next_window_served_s']} s |",
        f"| two daemons started at once | {race['serving']} serving, {race['exited_cleanly']} exited with status 0 |",
        _disk_line(f.get("disk_full") or {}),
        f"| messages shown in the editor | {len(f['editor_messages'])}: {f['editor_messages'][:3]} |",
        "",
    ]


def _disk_line(disk: dict[str, Any]) -> str:
    if not disk.get("measured"):
        return f"| the disk full under the daemon's log | not measured: {disk.get('why', 'not run')} |"
    before, after = disk["before"], disk["after"]
    return (
        f"| the disk full under the daemon's log (2 MB tmpfs, filled) | {after['served']} of {after['requests']} "
        f"requests served after ({after['errors']} errors; p95 {after['p95_ms']} ms against {before['p95_ms']} ms "
        f"before), {disk['tracebacks']} tracebacks, {disk['pause_notices']} notice(s) that logging paused |"
    )


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # bench extra only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = (report["soak"] or {}).get("windows", [])
    figure, (memory, latency) = plt.subplots(1, 2, figsize=(11, 4))
    x = [w["requests"] for w in windows]
    memory.plot(x, [w["rss_bytes"] / 1e6 for w in windows], "o-")
    memory.set_title("Daemon RSS during the soak")
    memory.set_xlabel("keystroke requests")
    memory.set_ylabel("MB")
    memory.set_ylim(bottom=0)
    latency.plot(x, [w["p50_ms"] for w in windows], "o-", label="p50")
    latency.plot(x, [w["p95_ms"] for w in windows], "s-", label="p95")
    latency.set_title("Completed requests' latency per 1000")
    latency.set_xlabel("keystroke requests")
    latency.set_ylabel("ms")
    latency.set_ylim(bottom=0)
    latency.legend()
    for axis in (memory, latency):
        axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def faults(model_dir: Path, home: Path) -> dict[str, Any]:
    """Kill -9 and SIGSTOP the daemon under a real `oss-edge lsp`, kill the language server, race two daemons,
    fill the disk under the daemon's log."""
    try:
        out = asyncio.run(_faults(model_dir, home))
    finally:  # the daemon the language server started: not left loaded for its idle timeout
        asyncio.run(_shut_down(home / "run" / "faults.sock"))
    out["racing_daemons"] = _racing_daemons(model_dir, home / "run" / "race.sock")
    out["disk_full"] = _disk_full(model_dir, home)
    return out


DISK_FULL_REQUESTS = 200


def _disk_full(model_dir: Path, home: Path) -> dict[str, Any]:
    """A daemon whose home (its log, its socket) is on a 2 MB tmpfs, filled once it serves: requests before and
    after, and what it printed."""
    disk = home / "small-disk"
    disk.mkdir(mode=0o700)
    mount = ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(disk)]
    mounted = subprocess.run(mount, capture_output=True)
    if mounted.returncode != 0:
        return {"measured": False, "why": "cannot mount a small tmpfs here (needs root)"}
    daemon = _Daemon(model_dir, disk, stderr=home / "disk-full.stderr")
    try:
        daemon.start()
        before = asyncio.run(_completions(daemon.socket, DISK_FULL_REQUESTS // 4, "before"))
        with open(disk / "filler", "wb") as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        after = asyncio.run(_completions(daemon.socket, DISK_FULL_REQUESTS, "after"))
        alive = daemon.process.poll() is None
    finally:
        daemon.stop()
        subprocess.run(["umount", str(disk)], check=False, capture_output=True)
    printed = daemon.stderr.read_text(errors="replace")
    return {
        "measured": True,
        "before": before,
        "after": after,
        "daemon_alive": alive,
        "tracebacks": printed.count("Traceback (most recent call last):") + printed.count("Logging error"),
        "pause_notices": printed.count("logging paused"),
    }


async def _completions(socket: Path, count: int, name: str) -> dict[str, Any]:
    client = await connect(socket, client=f"disk-full-{name}")
    served, errors, latencies = 0, 0, []
    try:
        for i in range(count):
            began = time.perf_counter()
            try:
                result = await client.call("complete", {"prefix": f"x{i} = ", "path": f"{name}{i}.py", "max_tokens": 4})
                served += bool(result.get("finish_reason"))
            except Exception:
                errors += 1
            latencies.append((time.perf_counter() - began) * 1000)
    finally:
        await client.close()
    return {"requests": count, "served": served, "errors": errors, "p95_ms": round(percentile(latencies, 95), 1)}


async def _faults(model_dir: Path, home: Path) -> dict[str, Any]:
    socket = home / "run" / "faults.sock"
    options = {"modelDir": str(model_dir), "runtimeSocket": str(socket), "debounceMs": 0, "explainMaxTokens": 4000}
    messages: list[str] = []
    session = EditorSession(options, on_message=messages.append)
    await session.start()
    uri = session.open(home / "faults.py", "import os\n\n\ndef main(argv):\n    ", "python")
    out: dict[str, Any] = {"first_load_s": round(await session.wait_ready(uri, 300), 2)}
    try:
        out["kill_mid_explanation"] = await _kill_mid_explanation(session, uri, socket)
        out["kill_mid_completion"] = await _kill_mid_completion(session, uri, socket)
        out["stopped_daemon"] = await _stopped_daemon(session, uri, socket)
    finally:
        await session.stop()
    out["killed_language_server"] = await _killed_language_server(options, home, socket)
    out["editor_messages"] = messages
    return out


async def _shut_down(socket: Path) -> None:
    with contextlib.suppress(Exception):
        client = await connect(socket, client="faults")
        await client.call("shutdown", timeout=10)
        await client.close()


async def _pid(socket: Path) -> int:
    client = await connect(socket, client="faults")
    try:
        return int((await client.call("status", timeout=10))["pid"])
    finally:
        await client.close()


async def _recovery(session: EditorSession, uri: str, socket: Path, killed: int) -> dict[str, Any]:
    """After the daemon died: how long until the editor's next suggestion, against the new daemon's own load."""
    began = time.perf_counter()
    await session.wait_ready(uri, 300)
    seconds = time.perf_counter() - began
    client = await connect(socket, client="faults")
    status = await client.call("status", timeout=10)
    await client.close()
    return {
        "recovered_s": round(seconds, 2),
        "new_daemon_load_s": status["load_s"],
        "new_pid": status["pid"] != killed,
    }


async def _kill_mid_explanation(session: EditorSession, uri: str, socket: Path) -> dict[str, Any]:
    pid = await _pid(socket)
    streaming = asyncio.Event()
    session.on_explanation = lambda note: streaming.set()
    end = types.Position(line=4, character=0)
    explain = asyncio.ensure_future(session.explain(uri, types.Position(line=0, character=0), end, "high"))
    await asyncio.wait_for(streaming.wait(), 60)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.perf_counter()
    try:
        await asyncio.wait_for(explain, 30)
        outcome = "answered"
    except asyncio.TimeoutError:
        outcome = "hung"
    except Exception as exc:  # the editor gets an error it can show: the model went away
        outcome = f"error: {str(exc)[:120]}"
    session.on_explanation = None
    return {"editor_got": outcome, "after_s": round(time.perf_counter() - killed_at, 2)} | await _recovery(
        session, uri, socket, pid
    )


async def _kill_mid_completion(session: EditorSession, uri: str, socket: Path) -> dict[str, Any]:
    """A completion streaming straight from the daemon (4000 tokens, end of text ignored) when it is killed."""
    pid = await _pid(socket)
    client = await connect(socket, client="faults")
    started = asyncio.Event()
    call = await client.start(
        "complete",
        {"prefix": "x = ", "path": "long.py", "max_tokens": 4000, "ignore_eos": True},
        on_chunk=lambda c, t: started.set(),
    )
    await asyncio.wait_for(started.wait(), 60)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.perf_counter()
    try:
        await asyncio.wait_for(call.future, 30)
        outcome = "answered"
    except asyncio.TimeoutError:
        outcome = "hung"
    except Exception as exc:
        outcome = f"error: {exc.__class__.__name__}"
    await client.close()
    return {"client_got": outcome, "after_s": round(time.perf_counter() - killed_at, 2)} | await _recovery(
        session, uri, socket, pid
    )


async def _stopped_daemon(session: EditorSession, uri: str, socket: Path) -> dict[str, Any]:
    """SIGSTOP for 10 s with editor requests pending: each is answered (null) within its time budget."""
    pid = await _pid(socket)
    budget = Settings().time_budget_ms / 1000
    os.kill(pid, signal.SIGSTOP)
    answers: list[tuple[float, bool]] = []
    began = time.perf_counter()
    try:
        while time.perf_counter() - began < 10:
            timed = await session.inline(uri)
            answers.append((timed.seconds, timed.result is None))
    finally:
        os.kill(pid, signal.SIGCONT)
    await session.wait_ready(uri, 60)
    return {
        "requests": len(answers),
        "all_null": all(null for _, null in answers),
        "worst_s": round(max(s for s, _ in answers), 2),
        "time_budget_s": budget,
        "same_daemon_after": await _pid(socket) == pid,
    }


async def _killed_language_server(options: dict[str, Any], home: Path, socket: Path) -> dict[str, Any]:
    """kill -9 of `oss-edge lsp`: the daemon stays, and the next editor window is served by it at once."""
    pid = await _pid(socket)
    first = EditorSession(options, on_message=lambda m: None)
    await first.start()
    uri = first.open(home / "lsp-killed.py", "import sys\n\n\ndef run():\n    ", "python")
    await first.wait_ready(uri, 60)
    server = first.client._server
    assert server is not None
    server.kill()
    second = EditorSession(options, on_message=lambda m: None)
    await second.start()
    uri = second.open(home / "lsp-killed.py", "import sys\n\n\ndef run():\n    ", "python")
    seconds = await second.wait_ready(uri, 60)
    await second.stop()
    return {"daemon_kept": await _pid(socket) == pid, "next_window_served_s": round(seconds, 2)}


def _racing_daemons(model_dir: Path, socket: Path) -> dict[str, Any]:
    """Two `oss-edge serve` for one model started at the same moment: exactly one serves."""
    command = [*oss_edge_command("serve", "--model", str(model_dir), "--socket", str(socket)), "--idle-exit", "5"]
    racers = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    deadline = time.monotonic() + 120
    while not socket.exists() and time.monotonic() < deadline and any(r.poll() is None for r in racers):
        time.sleep(0.1)
    time.sleep(1.0)  # the loser, if any, has had time to find the lock taken
    running = [r for r in racers if r.poll() is None]
    exited = [r for r in racers if r.poll() is not None]
    served = socket.exists() and asyncio.run(_pid(socket)) in {r.pid for r in running}
    for racer in racers:
        if racer.poll() is None:
            racer.terminate()
            racer.wait(20)
    return {
        "serving": len(running),
        "exited_cleanly": sum(r.returncode == 0 for r in exited),
        "socket_answers_the_survivor": served,
    }
