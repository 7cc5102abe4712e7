"""`oss-edge bench export`: wall time and memory of exports of synthetic checkpoints, as JSON, markdown and a chart.

Each export runs as its own `oss-edge export` process, as a user would run it; its resident memory (the whole
process tree) is sampled while it runs, and the kernel's peak RSS for it is read when it ends.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from oss_edge.bench.common import ensure_checkpoint, machine, oss_edge_command

SAMPLE_SECONDS = 0.2


def _tree_rss(process: psutil.Process) -> int:
    try:
        members = [process, *process.children(recursive=True)]
        return sum(p.memory_info().rss for p in members)
    except psutil.Error:
        return 0


def measure_export(checkpoint: Path, out: Path, precision: str, in_memory: bool = False) -> dict[str, Any]:
    command = oss_edge_command(
        "export",
        str(checkpoint),
        "--out",
        str(out),
        "--force",
        "--precision",
        precision,
        *(["--in-memory"] if in_memory else []),
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(child.pid)
    samples: list[tuple[float, int]] = []
    while child.poll() is None:
        samples.append((time.perf_counter() - start, _tree_rss(watched)))
        time.sleep(SAMPLE_SECONDS)
    wall = time.perf_counter() - start
    _, stderr = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"export of {checkpoint} failed: {stderr.strip()}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    manifest = json.loads((out / "manifest.json").read_text())
    conversion = manifest.get("conversion", {})
    return {
        "checkpoint": str(checkpoint),
        "precision": precision,
        "method": conversion.get("method", "builder in memory"),
        "convert_peak_rss_bytes": conversion.get("convert_peak_rss_bytes"),
        "verify_peak_rss_bytes": conversion.get("verify_peak_rss_bytes"),
        "wall_seconds": round(wall, 2),
        "build_seconds": manifest["build_seconds"],
        # ru_maxrss is the largest child so far, in KiB on Linux; only trust it when this child raised it.
        "peak_rss_bytes": max(peak_kb * 1024 if peak_kb > before else 0, max((s[1] for s in samples), default=0)),
        "output_bytes": sum(f["size"] for f in manifest["files"]),
        "checkpoint_bytes": sum(f["size"] for f in manifest["source"]["files"]),
        "memory_samples": [[round(t, 2), rss] for t, rss in samples],
        "command": " ".join(["oss-edge", *command[3:]]),
    }


def run(
    shapes: list[str], report_dir: Path, cache: Path, precision: str, builder_shapes: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Export each shape as a user would (streaming); the shapes in builder_shapes also with --in-memory."""
    report_dir.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    results = []
    for shape in shapes:
        checkpoint = ensure_checkpoint(shape, cache)
        for in_memory in (False, True) if shape in builder_shapes else (False,):
            print(f"exporting {shape} ({precision}{', in memory' if in_memory else ''})", file=sys.stderr)
            suffix = "-in-memory" if in_memory else ""
            out = cache / f"{shape.replace(':', '')}-{precision}-onnx{suffix}"
            result = measure_export(checkpoint, out, precision, in_memory)
            result["shape"] = shape
            results.append(result)
    report = {
        "benchmark": "export",
        "machine": machine(),
        "results": results,
        "command": f"oss-edge bench export {' '.join('--shape ' + s for s in shapes)} --precision {precision}"
        + "".join(f" --compare-builder {s}" for s in builder_shapes),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (report_dir / "export.json").write_text(json.dumps(report, indent=2) + "\n")
    (report_dir / "export.md").write_text(markdown(report))
    plot(report, report_dir / "export_memory.png")
    return report


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Export benchmark: {m['cpu_count']} CPUs, {m['memory_bytes'] / 2**30:.0f} GiB, onnxruntime-genai "
        f"{m['tools']['onnxruntime-genai']}, torch {m['tools']['torch']}",
        "",
        "| shape | precision | conversion | wall time | conversion peak RSS | ÷ checkpoint size | verification run "
        "peak RSS | checkpoint | output |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        convert = r.get("convert_peak_rss_bytes") or r["peak_rss_bytes"]
        verify = r.get("verify_peak_rss_bytes")
        lines.append(
            f"| {r['shape']} | {r['precision']} | {r.get('method', 'builder in memory')} | {r['wall_seconds']:.1f} s | "
            f"{convert / 1e9:.2f} GB | {convert / r['checkpoint_bytes']:.2f}× | "
            f"{f'{verify / 1e9:.2f} GB' if verify else 'n/a'} | {r['checkpoint_bytes'] / 1e9:.2f} GB | "
            f"{r['output_bytes'] / 1e9:.2f} GB |"
        )
    lines += [
        "",
        "Conversion peak: the export process itself (the kernel's high-water mark). Verification: the real run of "
        "the finished folder, in a process of its own after the conversion has ended (it loads the model as the "
        "runtime does).",
        "",
        "![memory over time during export](export_memory.png)",
        "",
        "Commands:",
        "",
    ] + [f"    {r['command']}" for r in report["results"]]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # bench extra only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for r in report["results"]:
        samples = r["memory_samples"]
        label = f"{r['shape']} {r['precision']}, {r.get('method', 'builder in memory')}"
        axis.plot([s[0] for s in samples], [s[1] / 1e9 for s in samples], label=label)
    axis.axhline(report["machine"]["memory_bytes"] / 1e9, color="grey", linestyle="--", label="machine memory")
    axis.set_xlabel("seconds since the export started")
    axis.set_ylabel("resident memory (GB)")
    axis.set_title("Memory over time during oss-edge export (conversion, then the verification run)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
