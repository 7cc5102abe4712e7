"""The real daemon process on the tiny synthetic model, over a real Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.client import RemoteError, RuntimeClient, connect, serve_command
from edge_runtime.errors import DaemonUnavailable, ExitCode
from edge_runtime.protocol import PROTOCOL_VERSION
from tests.conftest import oss_edge
from tests.waiting import until, wait_until

T = TypeVar("T")
LONG = {"prefix": "def walk(tree):\n    for node in tree:\n        ", "path": "long.py", "ignore_eos": True}


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    socket: Path
    home: Path
    env: dict[str, str]


def start_daemon(model: Path, home: Path, *extra: str) -> Daemon:
    env = {**os.environ, "OSS_EDGE_HOME": str(home)}
    sock = home / "run" / "d.sock"
    process = subprocess.Popen(
        serve_command(model, sock, ["--idle-exit", "0", *extra]),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(process.stderr.read().decode() if process.stderr else "daemon exited")
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(sock))
                return True
            except OSError:
                return False

    try:
        wait_until(listening, "the daemon to listen")
    except AssertionError:
        process.kill()
        raise
    return Daemon(process, sock, home, env)


def stop_daemon(daemon: Daemon) -> None:
    if daemon.process.poll() is None:
        daemon.process.terminate()
        daemon.process.wait(20)
    if daemon.process.stderr:
        daemon.process.stderr.close()


@pytest.fixture(scope="module")
def daemon(tiny_int4: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    running = start_daemon(tiny_int4, tmp_path_factory.mktemp("home"))
    yield running
    stop_daemon(running)


@pytest.fixture(scope="module")
def slow_daemon(slice1_int4: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon whose generations take seconds, so that a cancel, a newer request or a kill meets one mid-stream
    however fast or loaded the machine is (the tiny model writes 4000 tokens in under a second)."""
    running = start_daemon(slice1_int4, tmp_path_factory.mktemp("slow-home"))
    yield running
    stop_daemon(running)


def run(factory: Callable[[], Awaitable[T]], timeout: float = 120) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), timeout)

    return asyncio.run(bounded())


async def running_kind(client: RuntimeClient, kind: str | None = None) -> bool:
    """Whether the engine runs a job now (of `kind`, if given)."""
    running = (await client.call("status"))["queue"]["running"]
    return running is not None and (kind is None or running.get("kind") == kind)


async def client_of(daemon: Daemon) -> RuntimeClient:
    return await connect(daemon.socket, client="tests")


def test_hello_describes_the_model_and_the_protocol(daemon: Daemon, tiny_int4: Path) -> None:
    async def go() -> dict[str, Any]:
        client = await client_of(daemon)
        await client.close()
        return client.server

    hello = run(go)
    assert hello["protocol"] == PROTOCOL_VERSION
    assert hello["model_dir"] == str(tiny_int4)
    assert hello["provider"] == "cpu"
    assert hello["context_limit"] == 8192


def test_socket_and_its_folder_are_private_to_the_user(daemon: Daemon) -> None:
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(daemon.socket.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("unsafe", ["symlink", "group-writable", "another-user"])
def test_a_socket_folder_others_could_tamper_with_is_refused(unsafe: str, tiny_int4: Path, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    folder = real
    if unsafe == "symlink":
        folder = tmp_path / "link"
        folder.symlink_to(real)
    elif unsafe == "group-writable":
        real.chmod(0o770)
    else:
        if os.getuid() != 0:
            pytest.skip("giving a folder to another user needs root")
        os.chown(real, 65534, 65534)  # nobody
    result = oss_edge("serve", "--model", str(tiny_int4), "--socket", str(folder / "d.sock"), "--idle-exit", "1")
    assert result.returncode == ExitCode.SOCKET_UNAVAILABLE, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    expected = {"symlink": "symbolic link", "group-writable": "written by others", "another-user": "another user"}
    assert message.startswith("oss-edge: refusing to listen") and expected[unsafe] in message
    assert not (real / "d.sock").exists()


def test_a_client_never_talks_to_another_users_socket(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("giving a socket to another user needs root")
    path = tmp_path / "impostor.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        os.chown(path, 65534, 65534)
        with pytest.raises(DaemonUnavailable, match="belongs to another user"):
            asyncio.run(RuntimeClient.connect_unix(path))


def test_completion_streams_chunks_that_add_up_to_the_result(daemon: Daemon) -> None:
    async def go() -> tuple[dict[str, Any], list[tuple[str, str]]]:
        client = await client_of(daemon)
        chunks: list[tuple[str, str]] = []
        params = {"prefix": "import os\n\ndef main():\n    ", "suffix": "\n", "path": "s.py", "max_tokens": 24}
        result = await client.call("complete", params, on_chunk=lambda c, t: chunks.append((c, t)))
        await client.close()
        return result, chunks

    result, chunks = run(go)
    assert len(chunks) >= 2
    assert {channel for channel, _ in chunks} == {"final"}
    assert "".join(text for _, text in chunks) == result["text"]
    assert result["generated_tokens"] >= len(chunks)
    assert result["prompt_tokens"] > 100
    assert result["finish_reason"] in ("length", "stop", "stop_string")
    assert result["ttft_ms"] is not None and result["tokens_per_s"] > 0


def test_the_next_keystroke_reuses_the_cache_and_a_repeat_gives_the_same_text(daemon: Daemon) -> None:
    base = {"suffix": "\n", "path": "k.py", "language": "python", "max_tokens": 16}

    async def go() -> list[dict[str, Any]]:
        client = await client_of(daemon)
        results = []
        for prefix in (
            "class Point:\n    def norm(self",
            "class Point:\n    def norm(self)",
            "class Point:\n    def norm(self",
        ):
            results.append(await client.call("complete", {**base, "prefix": prefix}))
        await client.close()
        return results

    first, typed, again = run(go)
    assert typed["cached_tokens"] >= typed["prompt_tokens"] - 3
    assert again["cached_tokens"] >= again["prompt_tokens"] - 3
    assert again["text"] == first["text"]


def test_long_generation_is_cancelled_at_once(slow_daemon: Daemon) -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        client = await client_of(slow_daemon)
        head = await client.call("complete", {**LONG, "max_tokens": 48})
        first_chunk = asyncio.Event()
        call = await client.start("complete", {**LONG, "max_tokens": 4000}, on_chunk=lambda c, t: first_chunk.set())
        await first_chunk.wait()
        await client.cancel(call)
        cancelled = await call.future
        await client.close()
        return head, cancelled

    head, cancelled = run(go)
    assert head["finish_reason"] == "length", "the synthetic model should run on for this prompt"
    assert cancelled["finish_reason"] == "cancelled"
    assert 0 < cancelled["generated_tokens"] < 4000
    # the daemon stops at the next decode step: far sooner than the rest of 4000 tokens
    assert cancelled["cancel_latency_ms"] < 1000
    shared = min(len(head["text"]), len(cancelled["text"]))
    assert shared > 0 and cancelled["text"][:shared] == head["text"][:shared]


def test_a_newer_completion_for_the_same_document_supersedes_the_older(slow_daemon: Daemon) -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        client = await client_of(slow_daemon)
        started = asyncio.Event()
        old = await client.start("complete", {**LONG, "max_tokens": 4000}, on_chunk=lambda c, t: started.set())
        other = await client.start("complete", {**LONG, "path": "other.py", "max_tokens": 4})
        await started.wait()
        new = await client.call("complete", {**LONG, "prefix": LONG["prefix"] + "x", "max_tokens": 4})
        result = await old.future, await other.future, new
        await client.close()
        return result

    old, other, new = run(go)
    assert old["finish_reason"] == "superseded"
    assert other["finish_reason"] == "length"  # another document is left alone
    assert new["finish_reason"] == "length"


def test_a_completion_preempts_a_long_explanation_which_then_carries_on(slow_daemon: Daemon) -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any], bool]:
        client = await client_of(slow_daemon)
        explain = await client.start(
            "explain", {"code": "x = [i * i for i in range(10)]", "max_tokens": 240, "ignore_eos": True}
        )
        await until(lambda: running_kind(client), "the explanation to run", interval=0.001)
        completion = await client.call("complete", {"prefix": "y = ", "path": "p.py", "max_tokens": 8})
        explain_done_first = explain.future.done()
        result = await explain.future
        await client.close()
        return completion, result, explain_done_first

    completion, explanation, explain_done_first = run(go)
    assert not explain_done_first
    assert completion["generated_tokens"] == 8
    assert explanation["preemptions"] >= 1
    assert explanation["generated_tokens"] == 240
    assert explanation["finish_reason"] == "length"


def test_two_clients_stream_at_the_same_time_and_get_what_they_would_alone(daemon: Daemon) -> None:
    requests = [
        {"prefix": "def alpha():\n    ", "path": "a.py", "max_tokens": 40},
        {"prefix": "def beta(x):\n    return ", "path": "b.py", "max_tokens": 40},
    ]

    async def alone() -> list[str]:
        client = await client_of(daemon)
        texts = [(await client.call("complete", r))["text"] for r in requests]
        await client.close()
        return texts

    async def together() -> list[tuple[str, str]]:
        clients = [await client_of(daemon), await client_of(daemon)]
        streamed: list[list[str]] = [[], []]
        calls = [
            await c.start("complete", r, on_chunk=lambda ch, t, i=i: streamed[i].append(t))
            for i, (c, r) in enumerate(zip(clients, requests, strict=True))
        ]
        results = [await call.future for call in calls]
        for c in clients:
            await c.close()
        return [(r["text"], "".join(s)) for r, s in zip(results, streamed, strict=True)]

    expected = run(alone)
    got = run(together)
    assert [text for text, _ in got] == expected
    assert [streamed for _, streamed in got] == expected


def test_a_client_that_vanishes_mid_stream_is_cleaned_up(slow_daemon: Daemon) -> None:
    async def go() -> dict[str, Any]:
        quitter = await client_of(slow_daemon)
        started = asyncio.Event()
        await quitter.start("complete", {**LONG, "max_tokens": 4000}, on_chunk=lambda c, t: started.set())
        await started.wait()
        observer = await client_of(slow_daemon)
        before = await observer.call("status")
        quitter.writer.transport.abort()

        async def idle() -> dict[str, Any] | None:
            status = await observer.call("status")
            return status if status["queue"]["running"] is None else None

        status = await until(idle, "the abandoned job to end")
        after = await observer.call("complete", {"prefix": "z = ", "path": "z.py", "max_tokens": 2})
        await observer.close()
        return {"before": before, "status": status, "after": after}

    outcome = run(go)
    assert outcome["status"]["queue"] == {"complete": 0, "explain": 0, "warm": 0, "running": None}
    assert outcome["before"]["queue"]["running"] is not None
    # ended by the hang-up, not by running out of tokens
    disconnected = [outcome[k]["finish_reasons"].get("disconnected", 0) for k in ("before", "status")]
    assert disconnected[1] == disconnected[0] + 1
    assert outcome["after"]["generated_tokens"] == 2


def test_bad_params_and_unknown_methods_get_errors_and_the_connection_stays(daemon: Daemon) -> None:
    async def go() -> list[str]:
        client = await client_of(daemon)
        codes = []
        for method, params in [
            ("nonsense", {}),
            ("complete", {}),
            ("complete", {"prefix": 12}),
            ("complete", {"prefix": "x", "max_tokens": -1}),
            ("complete", {"prefix": "x", "neighbours": [{"path": 1}]}),
            ("explain", {"code": "x", "reasoning": "extreme"}),
            ("explain", {"code": "x = 1\n" * 6000}),
            ("cancel", {"id": "seven"}),
            ("explain", {"code": "x", "seed": -1}),  # found by a fuzzer: numpy raised inside the dispatch
            ("complete", {"prefix": "x", "temperature": float("nan")}),
            ("complete", {"prefix": "x", "top_p": float("inf")}),
        ]:
            try:
                await client.call(method, params)
                codes.append("ok")
            except RemoteError as exc:
                codes.append(exc.code)
        codes.append((await client.call("complete", {"prefix": "ok = ", "max_tokens": 1}))["finish_reason"])
        await client.close()
        return codes

    assert run(go) == [
        "unknown_method",
        "invalid_params",
        "invalid_params",
        "invalid_params",
        "invalid_params",
        "invalid_params",
        "prompt_too_long",
        "invalid_params",
        "invalid_params",
        "invalid_params",
        "invalid_params",
        "length",
    ]


def test_a_huge_prefix_is_cut_from_the_front_and_the_result_says_so(daemon: Daemon) -> None:
    prefix = "".join(f"line_{i} = {i}\n" for i in range(20000)) + "answer = "

    async def go() -> dict[str, Any]:
        client = await client_of(daemon)
        result = await client.call("complete", {"prefix": prefix, "path": "huge.py", "max_tokens": 4})
        await client.close()
        return result

    result = run(go)
    assert result["truncated"]["prefix_lines"] > 0
    assert result["prompt_tokens"] <= 8192 - 4


def raw_exchange(daemon: Daemon, payload: bytes) -> list[Any]:
    """Send raw bytes on a fresh connection; return every message the daemon sends until it closes or goes quiet."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(daemon.socket))
        sock.settimeout(5)
        with contextlib.suppress(BrokenPipeError):
            sock.sendall(payload)
        unpacker = msgpack.Unpacker(raw=False)
        sock.settimeout(0.5)
        messages: list[Any] = []
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:  # closed while our bytes were still unread
                data = b""
            if not data:
                messages.append("closed")
                break
            unpacker.feed(data)
            messages.extend(unpacker)
        return messages


def test_an_oversized_frame_gets_an_error_and_only_that_connection_closes(daemon: Daemon) -> None:
    payload = msgpack.packb([0, 1, "complete", [{"prefix": "x" * (17 * 1024 * 1024)}]])
    messages = raw_exchange(daemon, payload)
    assert messages[0][:2] == [2, "protocol_error"]
    assert messages[0][2][0]["code"] == "frame_too_large"
    assert messages[-1] == "closed"
    assert run(lambda: _status(daemon))["state"] == "ready"


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Everything but shutdown, which a well-formed frame may legitimately ask for.
METHODS = st.sampled_from(["hello", "complete", "explain", "cancel", "status", "nonsense", ""])
FRAMES = st.one_of(
    st.binary(min_size=1, max_size=300),
    VALUES.map(msgpack.packb),
    st.tuples(st.integers(-1, 3), st.integers(-5, 2**33), METHODS, VALUES).map(lambda t: msgpack.packb(list(t))),
    st.tuples(st.just(2), METHODS, VALUES).map(lambda t: msgpack.packb(list(t))),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=FRAMES)
def test_malformed_frames_never_take_the_daemon_down(daemon: Daemon, garbage: bytes) -> None:
    messages = raw_exchange(daemon, garbage)
    for message in messages:
        if message == "closed":
            continue
        assert message[0] in (1, 2)
        if message[0] == 2:
            assert message[1] == "protocol_error"
            assert messages[-1] == "closed"
    assert daemon.process.poll() is None
    assert run(lambda: _status(daemon))["state"] == "ready"


async def _status(daemon: Daemon) -> dict[str, Any]:
    client = await client_of(daemon)
    status: dict[str, Any] = await client.call("status")
    await client.close()
    return status


def test_status_reports_memory_cache_and_throughput(daemon: Daemon) -> None:
    status = run(lambda: _status(daemon))
    assert status["memory"]["rss_bytes"] > status["memory"]["weight_bytes"] > 0
    assert status["cache"]["requests"] > 0 and 0 < status["cache"]["reuse_ratio"] < 1
    assert status["throughput"]["decode_tokens_per_s"] > 0
    assert status["clients"] == 1


def test_the_expert_kernels_can_be_chosen_and_loading_pages_are_given_back(tiny_int4: Path, tmp_path: Path) -> None:
    for kernels in ("compact", "fast"):
        daemon = start_daemon(tiny_int4, tmp_path / kernels, "--kernels", kernels)
        try:
            status = run(lambda d=daemon: _status(d))  # type: ignore[misc]
            assert status["kernels"] == kernels
            assert status["load_s"] > 0
            assert status["memory"]["rss_anon_bytes"] > 0 and "rss_file_bytes" in status["memory"]
            log = (tmp_path / kernels / "state" / "logs").glob("serve-*.log")
            assert any(f"{kernels} kernels" in p.read_text() and "file pages released" in p.read_text() for p in log)
        finally:
            stop_daemon(daemon)


def test_a_second_serve_for_the_same_socket_exits_cleanly(daemon: Daemon, tiny_int4: Path) -> None:
    second = subprocess.run(
        serve_command(tiny_int4, daemon.socket), env=daemon.env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 0
    assert f"pid {daemon.process.pid}" in second.stderr and "already serves" in second.stderr
    assert run(lambda: _status(daemon))["state"] == "ready"


def test_a_killed_daemon_gives_clients_a_clean_error_and_can_be_started_again(
    slice1_int4: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "h"
    sock = home / "run" / "k.sock"
    monkeypatch.setenv("OSS_EDGE_HOME", str(home))  # the daemons the client starts inherit it

    async def go() -> tuple[str, dict[str, Any]]:
        client = await connect(sock, model_dir=slice1_int4, start=True, serve_args=["--idle-exit", "30"])
        started = asyncio.Event()
        call = await client.start("complete", {**LONG, "max_tokens": 4000}, on_chunk=lambda c, t: started.set())
        await started.wait()
        os.kill(client.server["pid"], signal.SIGKILL)
        with pytest.raises(DaemonUnavailable) as failure:
            await call.future
        await client.close()
        again = await connect(sock, model_dir=slice1_int4, start=True, serve_args=["--idle-exit", "30"])
        result = await again.call("complete", {"prefix": "a = ", "max_tokens": 2})
        await again.call("shutdown")
        await again.close()
        return str(failure.value), result

    message, result = run(go)
    assert "closed the connection" in message
    assert result["generated_tokens"] == 2


def test_an_explanation_that_reasons_too_long_is_made_to_answer(daemon: Daemon) -> None:
    """Past `analysis_max_tokens` the daemon closes the analysis and opens the final channel itself."""
    code = {"code": "def f(x):\n    return x * 2", "ignore_eos": True, "max_tokens": 40}

    async def go() -> list[dict[str, Any]]:
        client = await client_of(daemon)
        cut = await client.call("explain", {**code, "analysis_max_tokens": 10})
        straight = await client.call("explain", {**code, "analysis_max_tokens": 0})
        never = await client.call("explain", {**code, "analysis_max_tokens": 40})
        await client.close()
        return [cut, straight, never]

    cut, straight, never = run(go)
    assert cut["analysis_cut"] and cut["analysis"] and cut["text"]
    assert cut["generated_tokens"] == 40 and cut["finish_reason"] == "length"
    assert straight["analysis_cut"] and straight["analysis"] == "" and straight["text"]
    assert not never["analysis_cut"] and never["text"] == "" and never["analysis"]


def test_serve_seed_samples_the_same_prompt_the_same_way(tiny_int4: Path, daemon: Daemon, tmp_path: Path) -> None:
    seeded = start_daemon(tiny_int4, tmp_path / "seeded", "--seed", "3")
    params = {"code": "x = 1", "max_tokens": 16, "ignore_eos": True, "analysis_max_tokens": 16}

    async def twice(where: Daemon) -> list[str]:
        client = await client_of(where)
        texts = [(await client.call("explain", params))["analysis"] for _ in range(2)]
        other = await client.call("explain", {**params, "code": "x = 2"})
        await client.close()
        return [*texts, other["analysis"]]

    try:
        first, second, other = run(lambda: twice(seeded))
    finally:
        stop_daemon(seeded)
    assert first == second and first != other
    unseeded = run(lambda: twice(daemon))
    assert unseeded[0] != unseeded[1]  # a fresh seed per request, at the model's temperature


def test_the_daemon_exits_when_idle_and_removes_its_socket(tiny_int4: Path, tmp_path: Path) -> None:
    idle = start_daemon(tiny_int4, tmp_path / "idle", "--idle-exit", "1")

    async def touch() -> None:
        client = await client_of(idle)
        await client.close()

    run(touch)
    assert idle.process.wait(20) == 0
    assert not idle.socket.exists()


def test_shutdown_stops_the_daemon(tiny_int4: Path, tmp_path: Path) -> None:
    daemon = start_daemon(tiny_int4, tmp_path / "s")

    async def go() -> Any:
        client = await client_of(daemon)
        reply = await client.call("shutdown")
        await client.close()
        return reply

    assert run(go) == {"ok": True}
    assert daemon.process.wait(20) == 0
    assert not daemon.socket.exists()


def test_tcp_is_loopback_only_and_needs_the_token(tiny_int4: Path, tmp_path: Path) -> None:
    daemon = start_daemon(tiny_int4, tmp_path / "t", "--tcp", "0")
    info_file = daemon.socket.with_suffix(".tcp.json")
    try:
        assert stat.S_IMODE(info_file.stat().st_mode) == 0o600
        info = __import__("json").loads(info_file.read_text())
        assert info["host"] == "127.0.0.1"

        async def guess(token: str) -> float:
            began = time.perf_counter()
            intruder = await RuntimeClient.connect_tcp("127.0.0.1", info["port"])
            with pytest.raises(RemoteError, match="token"):
                await intruder.hello("guesser", token=token)
            await intruder.close()
            return time.perf_counter() - began

        async def go() -> tuple[str, list[float], dict[str, Any]]:
            intruder = await RuntimeClient.connect_tcp("127.0.0.1", info["port"])
            with pytest.raises(RemoteError) as refused:
                await intruder.call("status")
            await intruder.close()
            guesses = [await guess(f"guess-{n}") for n in range(6)]
            client = await RuntimeClient.connect_tcp("127.0.0.1", info["port"])
            await client.hello("tests", token=info["token"])
            status: dict[str, Any] = await client.call("status")
            await client.close()
            return refused.value.code, guesses, status

        code, guesses, status = run(go)
        assert code == "unauthorized"
        # each wrong token is refused later than the one before: the sixth waits a second or more
        assert guesses[-1] >= 1.0 and guesses[-1] > guesses[0]
        assert status["state"] == "ready"  # the right token still gets in at once
    finally:
        stop_daemon(daemon)


@pytest.mark.parametrize("damage", ["missing", "not-a-model", "truncated", "corrupt-graph"])
def test_a_bad_model_folder_is_refused_at_start(tiny_int4: Path, tmp_path: Path, damage: str) -> None:
    folder = tmp_path / "model"
    if damage != "missing":
        folder.mkdir()
        if damage != "not-a-model":
            for file in tiny_int4.iterdir():
                (folder / file.name).write_bytes(file.read_bytes())
        if damage == "truncated":
            data = folder / "model.onnx.data"
            data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
        if damage == "corrupt-graph":
            graph = folder / "model.onnx"
            graph.write_bytes(b"\x00garbage" * (graph.stat().st_size // 8) + b"\x00" * (graph.stat().st_size % 8))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "oss_edge",
            "serve",
            "--model",
            str(folder),
            "--socket",
            str(tmp_path / "b.sock"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == ExitCode.BAD_MODEL_FOLDER
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("oss-edge: ")
    assert str(folder) in message
    assert "Traceback" not in result.stderr


WARM_SOURCE = "".join(f"value_{i} = compute({i}, scale={i % 7}) + offset_{i % 13}\n" for i in range(500))


def test_warming_reads_the_prompt_into_the_cache_and_writes_nothing(slow_daemon: Daemon) -> None:
    params = {"prefix": "import os\n\ndef main(argv):\n    ", "suffix": "\n", "path": "warm.py", "max_tokens": 8}

    async def go() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        client = await client_of(slow_daemon)
        # the cursor rested in another file first: the newer rest replaces that warming, whatever its document
        elsewhere = await client.start("complete", {"prefix": WARM_SOURCE, "path": "elsewhere.py", "warm": True})
        warmed = await client.call("complete", {**params, "warm": True})
        done = await client.call("complete", params)
        replaced = await elsewhere.future
        await client.close()
        return warmed, done, replaced

    warmed, done, replaced = run(go)
    assert replaced["finish_reason"] == "superseded"
    assert warmed["finish_reason"] == "warmed"
    assert warmed["generated_tokens"] == 0 and warmed["text"] == ""
    assert done["prompt_tokens"] == warmed["prompt_tokens"]
    assert done["cached_tokens"] == done["prompt_tokens"] - 1  # all but the last token, which runs for its logits


def test_warming_gives_way_to_completions_and_never_cancels_one(slow_daemon: Daemon) -> None:
    long_a = {"prefix": WARM_SOURCE, "path": "a.py", "max_tokens": 8}

    async def go() -> dict[str, Any]:
        client = await client_of(slow_daemon)
        warm = await client.start("complete", {**long_a, "warm": True})
        await until(lambda: running_kind(client, "warm"), "the warming to run", interval=0.001)
        # another document's completion runs between two chunks of the warming
        other = await client.call("complete", {"prefix": "x = ", "path": "b.py", "max_tokens": 4})
        other_done_first = not warm.future.done()
        warmed = await warm.future
        # a completion for the same document replaces a warming...
        long_c = {**long_a, "prefix": "# another file\n" + WARM_SOURCE, "path": "c.py"}
        again = await client.start("complete", {**long_c, "warm": True})
        await until(lambda: running_kind(client, "warm"), "the warming to run", interval=0.001)
        completion = await client.call("complete", long_c)
        superseded = await again.future
        # ...but a warming never replaces the completion the user waits for
        started = asyncio.Event()
        running = await client.start(
            "complete", {**long_a, "max_tokens": 4000, "ignore_eos": True}, on_chunk=lambda c, t: started.set()
        )
        await started.wait()
        late = await client.start("complete", {**long_a, "warm": True})
        still_running = not running.future.done()
        await client.cancel(running)
        await client.cancel(late)
        kept, late_result = await running.future, await late.future
        await client.close()
        return {
            "other": other,
            "other_done_first": other_done_first,
            "warmed": warmed,
            "superseded": superseded,
            "completion": completion,
            "still_running": still_running,
            "kept": kept,
            "late": late_result,
        }

    r = run(go)
    assert r["other"]["generated_tokens"] == 4 and r["other_done_first"]
    assert r["warmed"]["finish_reason"] == "warmed" and r["warmed"]["preemptions"] >= 1
    assert r["superseded"]["finish_reason"] == "superseded"
    assert r["completion"]["generated_tokens"] > 0
    assert r["still_running"] and r["kept"]["finish_reason"] == "cancelled" and r["kept"]["generated_tokens"] > 0
    assert r["late"]["finish_reason"] in ("cancelled", "warmed")


def test_doctor_says_which_model_is_served_and_whether_its_daemon_runs(
    daemon: Daemon, tiny_int4: Path, tmp_path: Path
) -> None:
    served = oss_edge("doctor", "--json", "--model", str(tiny_int4), "--socket", str(daemon.socket), env=daemon.env)
    assert served.returncode == ExitCode.OK, served.stderr
    report = json.loads(served.stdout)
    assert report["model"]["path"] == str(tiny_int4) and report["model"]["chosen"] == "configured"
    assert report["model"]["problem"] is None and report["model"]["bytes"] > 0
    assert report["daemon"]["running"] and report["daemon"]["status"]["pid"] == daemon.process.pid

    empty = {"OSS_EDGE_HOME": str(tmp_path / "empty-home")}
    idle = oss_edge("doctor", "--model", str(tiny_int4), env=empty)
    assert idle.returncode == ExitCode.OK and "daemon: not running" in idle.stdout
    none = oss_edge("doctor", env=empty)
    assert none.returncode == ExitCode.NO_MODEL and "oss-edge export" in none.stdout
    wrong = oss_edge("doctor", "--json", "--model", str(tmp_path), env=empty)
    assert wrong.returncode == ExitCode.BAD_MODEL_FOLDER
    assert "not an exported model folder" in json.loads(wrong.stdout)["model"]["problem"]


def test_a_client_with_one_request_is_not_queued_behind_another_clients_many(slow_daemon: Daemon) -> None:
    async def go() -> list[str]:
        busy, one = await client_of(slow_daemon), await client_of(slow_daemon)
        finished: list[str] = []

        async def tracked(client: RuntimeClient, name: str) -> None:
            params = {"prefix": f"# {name}\nx = ", "path": f"{name}.py", "max_tokens": 32, "ignore_eos": True}
            await client.call("complete", params, timeout=120)
            finished.append(name)

        many = [asyncio.ensure_future(tracked(busy, f"busy{i}")) for i in range(5)]
        await until(lambda: running_kind(busy), "the busy client's first completion to run", interval=0.001)
        await tracked(one, "one")
        await asyncio.gather(*many)
        await busy.close()
        await one.close()
        return finished

    finished = run(go)
    # round-robin between clients: the other client's single completion runs right after the one running when it
    # arrived (second, or third if a loaded machine let that one end before it was sent), not after all five
    assert finished.index("one") <= 2, finished


def test_a_full_disk_under_the_log_pauses_logging_and_serving_goes_on(tiny_int4: Path, tmp_path: Path) -> None:
    home = tmp_path / "small-disk"
    home.mkdir(mode=0o700)
    options = "size=2m,mode=0700"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(home)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        daemon = start_daemon(tiny_int4, home)
        try:
            with open(home / "filler", "wb") as filler, contextlib.suppress(OSError):
                while True:  # fill the disk the log is on
                    filler.write(b"\0" * 65536)
                    filler.flush()

            async def go() -> list[dict[str, Any]]:
                client = await client_of(daemon)
                done = [
                    await client.call("complete", {"prefix": f"x{i} = ", "path": f"f{i}.py", "max_tokens": 4})
                    for i in range(30)
                ]
                await client.close()
                return done

            served = run(go)
        finally:
            daemon.process.terminate()
            _, err = daemon.process.communicate(timeout=30)
        assert len(served) == 30 and all(r["finish_reason"] for r in served)
        stderr = err.decode(errors="replace")
        assert "Traceback" not in stderr and "Logging error" not in stderr, stderr[-2000:]
        assert stderr.count("logging paused") == 1
    finally:
        subprocess.run(["umount", str(home)], check=False)
