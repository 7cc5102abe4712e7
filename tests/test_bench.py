"""`oss-edge bench` writes one report a person can read: JSON with every figure and the machine, tables, charts."""

from __future__ import annotations

import json
from pathlib import Path

import psutil

from tests.conftest import oss_edge
from tests.waiting import wait_until

PNG = b"\x89PNG\r\n\x1a\n"


def test_bench_all_writes_one_report_folder(tmp_path: Path) -> None:
    report = tmp_path / "report"
    cache = tmp_path / "c"
    result = oss_edge(
        "bench", "all", "--shape", "tiny", "--export-shape", "tiny", "--chars", "30",
        "--report", str(report), "--cache", str(cache),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    combined = json.loads((report / "report.json").read_text())
    assert set(combined) == {"machine", "export", "runtime", "lsp"}
    assert combined["machine"]["memory_bytes"] > 0 and combined["machine"]["tools"]["onnxruntime-genai"]
    text = (report / "report.md").read_text()
    for heading in ("## Export benchmark", "## Runtime benchmark", "## LSP benchmark"):
        assert heading in text
    for chart in ("export_memory.png", "runtime.png", "lsp_latency.png"):
        assert (report / chart).read_bytes()[:8] == PNG, chart
        assert f"({chart})" in text

    (export,) = combined["export"]["results"]
    assert export["shape"] == "tiny" and export["method"] == "streaming" and export["wall_seconds"] > 0
    assert export["convert_peak_rss_bytes"] > 100e6  # torch, transformers and the builder are loaded
    assert export["verify_peak_rss_bytes"] > 0
    assert len(export["memory_samples"]) >= 2 and export["output_bytes"] > export["checkpoint_bytes"]
    assert "oss-edge export" in export["command"]
    assert "| tiny | int4 | streaming |" in text

    runtime = combined["runtime"]
    assert runtime["machine"]["read_bandwidth_bytes_per_s"] == max(runtime["machine"]["read_bandwidth_samples"])
    (run,) = runtime["results"]
    daemon, raw = run["daemon"], run["raw"]
    assert run["kernels"] in ("fast", "compact")
    assert daemon["prompt_tokens"] > 1500  # the keystroke test runs on a long context
    assert daemon["warm_reused_share"] > 0.99
    assert daemon["ttft_warm_ms"] < daemon["ttft_cold_ms"]
    # warmed while the cursor rested: the first key there reads only itself, like any keystroke
    assert daemon["after_rest_reused_share"] > 0.99 and daemon["ttft_after_rest_ms"] < daemon["ttft_cold_ms"]
    assert run["decode_vs_raw"] == round(daemon["decode_tokens_per_s"] / raw["decode_tokens_per_s"], 3)
    assert 0 < run["bytes"]["active"] < run["bytes"]["weights"] <= run["model_bytes"]
    assert daemon["context_limit"] == 8192 and daemon["rss_anon_bytes"] > 0
    for length in ("512", "2048"):
        prefill = daemon["prefill"][length]
        assert abs(prefill["prompt_tokens"] - int(length)) < 0.1 * int(length)
        assert 0 < prefill["tokens_read"] <= prefill["prompt_tokens"] and prefill["tokens_per_s"] > 0
    assert not list(cache.glob("*/.*partial*"))

    (typing,) = combined["lsp"]["results"]
    assert typing["requests_sent"] == 30
    assert typing["suggestions_shown"] + typing["requests_cancelled_by_client"] + typing["empty_answers"] <= 30
    assert typing["suggestions_shown"] == len(typing["lsp_latency_samples_ms"]) > 0
    assert typing["raw_latency_ms"]["p50"] > 0 and typing["cached_share"] > 0.9
    assert typing["rss_bytes"]["lsp_server"] > 0 and typing["rss_bytes"]["daemon"] > 0

    # a part re-run on its own is folded into the same report
    (report / "report.md").unlink()
    again = oss_edge("bench", "report", "--report", str(report))
    assert again.returncode == 0, again.stderr
    assert (report / "report.md").read_text() == text


def test_bench_report_on_an_empty_folder_says_so(tmp_path: Path) -> None:
    result = oss_edge("bench", "report", "--report", str(tmp_path))
    assert result.returncode != 0
    assert "holds no benchmark results" in result.stderr


def test_bench_quality_measures_each_preset(tmp_path: Path) -> None:
    report, cache = tmp_path / "report", tmp_path / "c"
    result = oss_edge(
        "bench", "quality", "--shape", "tiny", "--variant", "fast", "--variant", "fast (int4-fitted)",
        "--variant", "balanced", "--report", str(report), "--cache", str(cache),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    quality = json.loads((report / "quality.json").read_text())
    rows = {r["variant"]: r for r in quality["results"]}
    assert set(rows) == {"fast", "fast (int4-fitted)", "balanced"}
    for row in rows.values():
        assert row["bytes"] > 0 and row["decode_tokens_per_s"] > 0 and row["prefill_tokens_per_s"] > 0
        assert 0 <= row["mean_kl"] < 0.05 and 0.8 < row["mean_cosine"] <= 1
    assert rows["balanced"]["options"] == {**rows["balanced"]["options"], "precision": "int8", "experts": "int4"}
    # int8 outside the experts is closer to the checkpoint than int4 everywhere
    assert rows["balanced"]["mean_kl"] < rows["fast"]["mean_kl"]
    assert not list(cache.glob("tiny-quality-*"))  # each export deleted once measured
    assert (report / "quality.png").read_bytes()[:8] == PNG
    assert "| tiny | balanced |" in (report / "quality.md").read_text()


def test_bench_quality_refuses_an_unknown_variant(tmp_path: Path) -> None:
    result = oss_edge("bench", "quality", "--variant", "best", "--report", str(tmp_path))
    assert result.returncode != 0 and "unknown variant 'best'" in result.stderr


def test_bench_runtime_measures_each_preset_side_by_side(tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = oss_edge(
        "bench", "runtime", "--shape", "tiny", "--quality", "fast", "--quality", "balanced", "--prefill", "512",
        "--report", str(report), "--cache", str(tmp_path / "c"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runtime = json.loads((report / "runtime.json").read_text())
    fast, balanced = runtime["results"]
    assert (fast["quality"], balanced["quality"]) == ("fast", "balanced")
    assert balanced["model_bytes"] > fast["model_bytes"]  # int8 outside the experts
    assert balanced["bytes"]["active"] > fast["bytes"]["active"]
    for run in (fast, balanced):
        assert run["daemon"]["decode_tokens_per_s"] > 0 and run["raw"]["decode_tokens_per_s"] > 0
    assert "--quality fast --quality balanced" in runtime["command"]
    text = (report / "runtime.md").read_text()
    assert "| tiny fast (" in text and "| tiny balanced (" in text
    assert (report / "runtime.png").read_bytes()[:8] == PNG


def test_bench_reliability_fuzzes_and_soaks_the_real_daemon(tmp_path: Path) -> None:
    report_dir = tmp_path / "report"
    result = oss_edge(
        "bench", "reliability", "--frames", "400", "--connections", "50", "--soak", "2100",
        "--report", str(report_dir), "--cache", str(tmp_path / "c"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((report_dir / "reliability.json").read_text())
    fuzz = report["fuzz"]
    assert fuzz["frames"] >= 400 and fuzz["connections"] >= 50
    assert fuzz["error_replies"] > fuzz["frames"] / 2  # most hostile frames get a wire error, not silence
    assert fuzz["silent_drops"] == 0 and not fuzz["daemon_crashed"] and report["tracebacks"]["count"] == 0
    assert fuzz["honest"]["requests"] > 0 and fuzz["honest"]["errors"] == 0
    windows = report["soak"]["windows"]
    assert [w["requests"] for w in windows] == [1000, 2000, 2100] and report["soak"]["errors"] == 0
    # typing through a file, cancelling every other request: the cache serves nearly all of each prompt
    assert all(w["cached_share"] > 0.98 for w in windows)
    assert windows[-1]["fds"] == windows[0]["fds"]
    disk = report["faults"]["disk_full"]
    if disk["measured"]:  # root only: a 2 MB tmpfs under the daemon's log, filled while it serves
        assert disk["after"]["served"] == disk["after"]["requests"] and disk["tracebacks"] == 0
        assert disk["pause_notices"] == 1 and disk["daemon_alive"]
    text = (report_dir / "reliability.md").read_text()
    assert "| no silent drop of a request | yes |" in text and "oss-edge bench reliability" in text
    assert "| the disk full under the daemon's log" in text

    def left_running() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])]

    wait_until(lambda: not left_running(), "the daemons the benchmark started to exit")
    assert (report_dir / "reliability.png").read_bytes()[:8] == PNG
