"""No process of oss-edge opens a network connection: export verification, the daemon, the language server, a
completion, an explanation and status, traced through every process they start (strace where installed, else
the inet sockets each process holds, sampled from /proc)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, oss_edge

INET = re.compile(r"socket\((AF_INET6?|PF_INET6?)\b|sa_family=AF_INET6?\b")


def _traced(command: list[str], env: dict[str, str], log: Path) -> subprocess.CompletedProcess[str]:
    strace = shutil.which("strace")
    assert strace
    traced = [strace, "-f", "-qq", "-e", "trace=socket,connect,bind,sendto", "-o", str(log), *command]
    return subprocess.run(traced, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


def _sampled(command: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Without strace: every 20 ms, the inet sockets of the command's whole process tree."""
    seen: list[str] = []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    done = threading.Event()

    def watch() -> None:
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            for member in tree:
                with contextlib.suppress(psutil.Error):
                    seen.extend(f"{member.pid} {c.laddr} -> {c.raddr}" for c in member.net_connections(kind="inet"))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = process.communicate(timeout=600)
    done.set()
    watcher.join()
    return subprocess.CompletedProcess(command, process.returncode, out, err), seen


def test_no_process_of_oss_edge_opens_a_network_socket(stand_in_model: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OSS_EDGE_HOME": str(tmp_path / "home")}
    # export verification, then the demo: the language server starts the daemon, which completes, explains and
    # reports its status; the daemon is stopped at the end so that every traced process has exited
    script = (
        f"{sys.executable} -m oss_edge verify {stand_in_model} --skip-hashes && "
        f"{sys.executable} -m oss_edge demo --model {stand_in_model}; status=$?; "
        f"{sys.executable} -m oss_edge status --model {stand_in_model} >/dev/null; "
        f"{sys.executable} -m oss_edge stop --model {stand_in_model}; exit $status"
    )
    command = ["bash", "-c", script]
    try:
        if shutil.which("strace"):
            log = tmp_path / "strace.log"
            result = _traced(command, env, log)
            calls = log.read_text(errors="replace").splitlines()
            assert any("AF_UNIX" in line for line in calls), "the trace saw no socket at all: strace did not follow"
            found = [line for line in calls if INET.search(line)]
        else:
            result, found = _sampled(command, env)
    finally:
        oss_edge("stop", "--model", str(stand_in_model), env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "explaining the whole file" in result.stdout
    assert not found, "network sockets:\n" + "\n".join(found[:20])


@pytest.mark.skipif(not shutil.which("strace"), reason="needs strace to see a short-lived socket")
def test_the_trace_would_see_a_network_socket(tmp_path: Path) -> None:
    # the detector itself: a process that only creates an inet socket (and connects nowhere) is caught
    log = tmp_path / "strace.log"
    command = [sys.executable, "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()"]
    result = _traced(command, dict(os.environ), log)
    assert result.returncode == 0
    assert any(INET.search(line) for line in log.read_text().splitlines())
