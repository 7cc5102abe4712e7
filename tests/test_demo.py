"""`oss-edge demo`, the main job: the whole product driven from a terminal."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import oss_edge


def test_demo_types_a_file_explains_it_and_prints_timings(tiny_int4: Path) -> None:
    result = oss_edge("demo", "--model", str(tiny_int4), timeout=300)
    try:
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "typing stats.py" in out and "explaining the whole file" in out
        suggestion_lines = [line for line in out.splitlines() if "│" in line]
        assert len(suggestion_lines) == 8  # one per non-empty line of the sample
        assert all(line.rstrip().endswith("ms") for line in suggestion_lines)
        assert "prompt tokens served from the KV cache" in out and "[progress] model ready" in out
    finally:
        oss_edge("stop", "--model", str(tiny_int4))


def test_demo_without_a_model_says_what_to_run() -> None:
    result = oss_edge("demo")
    assert result.returncode == 2
    assert "oss-edge export" in result.stderr and "make run SYNTHETIC=1" in result.stderr
