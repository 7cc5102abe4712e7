"""What every benchmark shares: the report folder and cache options, the machine, the synthetic models it measures."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from export.pipeline import tool_versions
from export.synth import generate
from export.training.fixture import stand_in_checkpoint


def add_bench_options(bench: argparse.ArgumentParser) -> None:
    """The report folder and model cache that every `oss-edge bench` target takes."""
    bench.add_argument("--report", type=Path, default=Path("bench-results"), help="report folder")
    bench.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "oss-edge" / "bench",
        help="where the synthetic checkpoints and exports are kept between runs",
    )


def oss_edge_command(*args: str) -> list[str]:
    """`oss-edge ARGS` as a child process of this interpreter, as a user would run it."""
    return [sys.executable, "-m", "oss_edge", *args]


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "processor": platform.processor() or platform.machine(),
        "tools": tool_versions(),
    }


STAND_IN, STAND_IN_RANDOM = "stand-in", "stand-in-random"


def ensure_checkpoint(shape: str, cache: Path) -> Path:
    """The checkpoint a benchmark shape names: the committed trained stand-in, or a synthetic MXFP4 checkpoint
    generated once into the benchmark cache (`stand-in-random`: the stand-in's shape with random weights)."""
    if shape == STAND_IN:
        return stand_in_checkpoint()
    if shape == STAND_IN_RANDOM:
        shape = STAND_IN
    checkpoint = cache / f"{shape.replace(':', '')}-mxfp4"
    if not (checkpoint / "config.json").exists():
        print(f"generating synthetic {shape} checkpoint in {checkpoint}", file=sys.stderr)
        generate(checkpoint, shape, "mxfp4", 0)
    return checkpoint


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def ensure_model(shape: str, cache: Path, quality: str = "fast") -> Path:
    """The export of a synthetic shape with a quality preset, made once into the benchmark cache."""
    out = cache / f"{shape.replace(':', '')}-{'int4' if quality == 'fast' else quality}-onnx"
    if (out / "manifest.json").exists():
        return out
    checkpoint = ensure_checkpoint(shape, cache)
    print(f"exporting {shape} ({quality}) to {out}", file=sys.stderr)
    command = oss_edge_command("export", str(checkpoint), "--out", str(out), "--force", "--quality", quality)
    subprocess.run(command, check=True)
    return out
