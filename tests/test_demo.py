"""`oss-edge demo`, the main job: the whole product driven from a terminal."""

from __future__ import annotations

import re
from pathlib import Path

from edge_runtime.errors import ExitCode
from tests.conftest import oss_edge


def test_demo_types_a_file_explains_it_and_prints_timings(stand_in_model: Path) -> None:
    result = oss_edge("demo", "--model", str(stand_in_model), timeout=300)
    try:
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "typing stats.py" in out and "explaining the whole file" in out
        suggestion_lines = [line for line in out.splitlines() if line.count("│") == 2 and line.endswith(" ms")]
        assert len(suggestion_lines) == 8  # one per non-empty line of the sample
        assert "prompt tokens served from the KV cache" in out and "[progress] model ready" in out
        # the trained stand-in suggests code and answers the explanation in the final channel
        shown = [line.split("│")[1] for line in suggestion_lines]
        assert sum("(none)" not in line for line in shown) >= 4
        explained = out.split("explaining the whole file", 1)[1].split("explanation took", 1)[0]
        assert "(no answer" not in explained and len(explained.split()) >= 6
        # the cursor rested in a second file: its first suggestion read only what was typed after the rest
        rested = next(line for line in out.splitlines() if "the model read the file in the background" in line)
        cached, prompt = (int(n) for n in re.search(r"\((\d+) of its (\d+) prompt tokens", rested).groups())
        assert prompt - 20 < cached < prompt
    finally:
        oss_edge("stop", "--model", str(stand_in_model))


def test_demo_without_a_model_says_what_to_run() -> None:
    result = oss_edge("demo")
    assert result.returncode == ExitCode.NO_MODEL
    assert "oss-edge export" in result.stderr and "make run SYNTHETIC=1" in result.stderr


def test_without_a_model_setting_the_newest_default_export_is_served(user_home: Path) -> None:
    import os

    from edge_runtime.paths import models_dir
    from lsp_server.config import Settings
    from lsp_server.runtime_link import find_model

    root = models_dir()
    for age, name in enumerate(("gpt-oss-20b-balanced-cpu", "gpt-oss-20b-fast-cpu", "my-finetune-int8-cpu")):
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")
        os.utime(folder, (1e9 + age, 1e9 + age))
    # the folders a plain `oss-edge export` makes come first (the newest of them), then any other export
    assert find_model(Settings()).name == "gpt-oss-20b-fast-cpu"
    for name in ("gpt-oss-20b-balanced-cpu", "gpt-oss-20b-fast-cpu"):
        (root / name / "manifest.json").unlink()
    assert find_model(Settings()).name == "my-finetune-int8-cpu"


def test_demo_with_a_folder_that_is_no_model_stops_at_once(tmp_path: Path) -> None:
    result = oss_edge("demo", "--model", str(tmp_path / "nothing-here"), timeout=60)
    assert result.returncode == ExitCode.NO_MODEL
    assert "is not a model folder" in result.stderr
