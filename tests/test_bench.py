"""`oss-edge bench export` writes a report a person can read: JSON with every figure, a table and a chart."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import oss_edge


def test_export_benchmark_writes_json_markdown_and_chart(tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = oss_edge("bench", "export", "--shape", "tiny", "--report", str(report), "--cache", str(tmp_path / "c"))
    assert result.returncode == 0, result.stderr
    data = json.loads((report / "export.json").read_text())
    assert data["machine"]["memory_bytes"] > 0 and data["machine"]["tools"]["onnxruntime-genai"]
    (run,) = data["results"]
    assert run["shape"] == "tiny" and run["wall_seconds"] > 0
    assert run["peak_rss_bytes"] > 100e6  # torch, transformers and the builder are loaded
    assert len(run["memory_samples"]) >= 2 and run["output_bytes"] > run["checkpoint_bytes"]
    assert "oss-edge export" in run["command"]
    assert "| tiny | int4 |" in (report / "export.md").read_text()
    assert (report / "export_memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runtime_benchmark_measures_the_daemon_against_the_raw_engine(tmp_path: Path) -> None:
    report = tmp_path / "report"
    cache = tmp_path / "c"
    result = oss_edge("bench", "runtime", "--shape", "tiny", "--report", str(report), "--cache", str(cache))
    assert result.returncode == 0, result.stderr
    data = json.loads((report / "runtime.json").read_text())
    assert data["machine"]["read_bandwidth_bytes_per_s"] == max(data["machine"]["read_bandwidth_samples"])
    (run,) = data["results"]
    daemon, raw = run["daemon"], run["raw"]
    assert daemon["prompt_tokens"] > 1500  # the keystroke test runs on a long context
    assert daemon["warm_reused_share"] > 0.99
    assert daemon["ttft_warm_ms"] < daemon["ttft_cold_ms"]
    assert run["decode_vs_raw"] == round(daemon["decode_tokens_per_s"] / raw["decode_tokens_per_s"], 3)
    assert 0 < run["bytes"]["active"] < run["bytes"]["weights"]
    assert "| tiny |" in (report / "runtime.md").read_text()
    assert (report / "runtime.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(cache.glob("*/.*partial*"))


def test_lsp_benchmark_types_a_file_and_replays_it_on_the_raw_runtime(tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = oss_edge(
        "bench", "lsp", "--shape", "tiny", "--chars", "30", "--report", str(report), "--cache", str(tmp_path / "c")
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((report / "lsp.json").read_text())
    (run,) = data["results"]
    assert data["source"].endswith("textwrap.py")
    assert run["requests_sent"] == 30
    assert run["suggestions_shown"] + run["requests_cancelled_by_client"] + run["empty_answers"] <= 30
    assert run["suggestions_shown"] > 0 and run["raw_latency_ms"]["p50"] > 0
    assert run["cached_share"] > 0.9
    assert run["rss_bytes"]["lsp_server"] > 0 and run["rss_bytes"]["daemon"] > 0
    assert "| tiny |" in (report / "lsp.md").read_text()
