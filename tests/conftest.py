"""Shared fixtures: synthetic checkpoints and exports, each built once per test session.

Generated models live outside the repository: in OSS_EDGE_TEST_CACHE when set (CI points it at a temp
dir), else in a pytest temp dir. Every test runs with OSS_EDGE_HOME in a temp dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from export.synth import SYNTH_FORMAT_VERSION, generate

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("OSS_EDGE_TEST_CACHE")
    path = Path(root) / f"v{SYNTH_FORMAT_VERSION}" if root else tmp_path_factory.mktemp("models")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "oss-edge-home"
    monkeypatch.setenv("OSS_EDGE_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return home


def _checkpoint(cache: Path, shape: str, fmt: str, seed: int = 0) -> Path:
    path = cache / f"ckpt-{shape.replace(':', '')}-{fmt}-s{seed}"
    if not path.exists():
        generate(path, shape, fmt, seed)
    return path


@pytest.fixture(scope="session")
def tiny_mxfp4(model_cache: Path) -> Path:
    return _checkpoint(model_cache, "tiny", "mxfp4")


@pytest.fixture(scope="session")
def tiny_bf16(model_cache: Path) -> Path:
    return _checkpoint(model_cache, "tiny", "bf16")


@pytest.fixture(scope="session")
def tiny_other_seed(model_cache: Path) -> Path:
    return _checkpoint(model_cache, "tiny", "mxfp4", seed=1)


@pytest.fixture(scope="session")
def tiny_120b(model_cache: Path) -> Path:
    return _checkpoint(model_cache, "tiny-120b", "mxfp4")


def oss_edge(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "oss_edge", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


# slice:1 at int4: the streaming test exports it as f"{SLICE1_INT4}-streaming" (and "-in-memory"); the slow-daemon
# tests serve that same streaming folder
SLICE1_INT4 = "stream-slice1-int4"
SLICE1_OPTIONS = ("--quality", "fast")


def _export(cache: Path, source: Path, name: str, *options: str) -> Path:
    out = cache / name
    if not (out / "manifest.json").exists():
        result = oss_edge("export", str(source), "--out", str(out), *options)
        assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def tiny_int4(model_cache: Path, tiny_mxfp4: Path) -> Path:
    return _export(model_cache, tiny_mxfp4, "onnx-tiny-mxfp4-int4", "--quality", "fast", "--parity")


@pytest.fixture(scope="session")
def slice1_int4(model_cache: Path) -> Path:
    """Every width of gpt-oss-20b, one layer: ~90 tokens/s here, the pace of the real model on a laptop. Tests that
    need a generation to still be running when something happens use it: the tiny model writes 4000 tokens in <1 s."""
    source = _checkpoint(model_cache, "slice:1", "mxfp4")
    return _export(model_cache, source, f"{SLICE1_INT4}-streaming", *SLICE1_OPTIONS)


@pytest.fixture(scope="session")
def stand_in_model(model_cache: Path) -> Path:
    """The committed stand-in (models/stand-in), exported with the default preset, once per version of its files."""
    from export.training.fixture import STAND_IN_DIR, SUMS_FILE, file_sha256, stand_in_checkpoint

    version = file_sha256(STAND_IN_DIR / SUMS_FILE)[:12]
    return _export(model_cache, stand_in_checkpoint(), f"onnx-stand-in-{version}", "--parity")


@pytest.fixture(scope="session")
def tiny_fp32(model_cache: Path, tiny_mxfp4: Path) -> Path:
    return _export(model_cache, tiny_mxfp4, "onnx-tiny-mxfp4-fp32", "--precision", "fp32", "--parity")


BUSY_JOBS = 16


async def keep_engine_busy(client: Any) -> list[Any]:
    """Queue long completions that keep the engine busy for seconds (the tiny model writes 4000 tokens in under one),
    each for its own document so that none supersedes another. End them with `client.cancel` each."""
    params = {"prefix": "x = ", "max_tokens": 4000, "ignore_eos": True}
    return [await client.start("complete", {**params, "path": f"busy{i}.py"}) for i in range(BUSY_JOBS)]


async def shutdown_daemon_async(socket: Path) -> None:
    """Stop whatever daemon serves `socket`, if any: tests leave no model loaded behind them."""
    from edge_runtime.client import connect

    try:
        runtime = await connect(socket)
    except Exception:
        return
    await runtime.call("shutdown")
    await runtime.close()


def shutdown_daemon(socket: Path) -> None:
    import asyncio

    asyncio.run(shutdown_daemon_async(socket))


# Three speeds. `slow`: the benchmarks, the streaming byte-identity exports, and every test that needs a
# real-width model (slice:1) or a real editor. `model`: every test that needs a generated checkpoint, an export, a
# daemon or a language server on a model (all of them reach the model cache). `make test-fast` runs neither: the
# logic of every part (harmony, clean-up, context, settings, samples, corpus, shapes, layout) in well under two
# minutes; `make test` runs everything.
SLOW_FILES = {"test_bench.py", "test_streaming.py", "test_neovim.py", "test_nvim_plugin.py"}
SLOW_FIXTURES = {"slice1_int4"}
MODEL_FIXTURES = {"model_cache", "client"}  # pytest-lsp's client fixture hides its own


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.name in SLOW_FILES or fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if fixtures & MODEL_FIXTURES:
            item.add_marker(pytest.mark.model)
