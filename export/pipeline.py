"""The export command's work: checkpoint -> verified model folder, assembled aside and moved in atomically.

The folder is built in a hidden sibling `.NAME.partial-*` with a pid file; only a complete, verified
folder is renamed to NAME. Ctrl-C, SIGTERM and a full disk clean up at once; a SIGKILL leaves the
partial folder, which the next export into the same place removes before it starts.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import platform
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from edge_runtime.paths import DEFAULT_EXPORT_PRESETS, export_folder
from export.checkpoint import Checkpoint, file_digest, resolve_source
from export.errors import CheckpointError, DiskFullError, ExportError, OutOfMemoryError, OutputExistsError
from export.model_builder import BuildOptions, BuildProgress, run_builder, uses_streaming
from export.presets import AUTO, QUALITIES
from export.progress import Progress
from export.verify import parity_label, run_checks_in_child, runtime_env

MANIFEST_VERSION = 1
PARTIAL_MARK = ".partial-"
TOOLS = (
    "oss-edge",
    "onnxruntime-genai",
    "onnxruntime",
    "onnx",
    "onnx-ir",
    "torch",
    "transformers",
    "safetensors",
    "tokenizers",
    "accelerate",
    "huggingface-hub",
    "numpy",
)


@dataclass(frozen=True)
class ExportRequest:
    source: str
    out: Path | None  # None: a folder under the models folder, named after the source and what was built
    precision: str = "int4"
    provider: str = "cpu"
    experts: str | None = None
    quality: str | None = None
    revision: str | None = None
    force: bool = False
    parity: bool = False
    download_dir: Path | None = None
    skip_memory_check: bool = False
    skip_disk_check: bool = False
    in_memory: bool = False
    quality_reason: str | None = None  # why `auto` took the preset it took


# Room the machine keeps beside the daemon for the system, the editor and the rest of the user's work.
ROOM_BESIDE_THE_MODEL = 4 * 2**30
# The daemon's KV cache (an 8k context: 0.8 GB at 20b) and runtime beside the weights.
RUNTIME_BYTES = 1.0e9


def default_out(source: str, variant: str, provider: str, experts: str | None = None) -> Path:
    """The folder `oss-edge export` makes when --out is not given."""
    if experts and experts != variant and variant not in QUALITIES:
        variant = f"{variant}-{experts.replace('-', '')}experts"
    return export_folder(source, variant, provider)


def choose_quality(checkpoint: Checkpoint, total_memory: int, provider: str = "cpu") -> tuple[str, str]:
    """The `auto` preset: balanced (int8 outside the experts, 3-6x less logit error than fast at the same speed)
    where this machine holds its daemon with the fast kernels beside the system and an editor, else fast.
    gpt-oss-20b: balanced needs ~21 GB (a 24 GiB machine has it), fast on a 16 GiB machine. GPU builds: fast (the
    device's memory is not known here, and balanced was measured on the CPU only). Returns (preset, why)."""
    from edge_runtime.engine import FAST_KERNEL_OVERHEAD

    if provider != "cpu":
        return "fast", f"built for {provider}: the smallest; balanced is measured and chosen for the CPU only"

    weights = _estimate_output_bytes(checkpoint, BuildOptions("int8", "cpu", "int4"))
    daemon = FAST_KERNEL_OVERHEAD * weights + RUNTIME_BYTES
    needed = daemon + ROOM_BESIDE_THE_MODEL
    memory = f"{total_memory / 2**30:.0f} GiB of memory"
    if total_memory >= needed:
        return "balanced", f"{memory}; its daemon takes about {daemon / 1e9:.0f} GB"
    return "fast", f"{memory}; balanced needs {needed / 2**30:.0f} GiB: its daemon, the system and an editor"


def build_options(request: ExportRequest) -> BuildOptions:
    """The builder's options: a quality preset, or precision and experts as given."""
    if request.quality == AUTO:
        raise ValueError("choose the quality (choose_quality) before the build options")
    if request.quality is None:
        return BuildOptions(request.precision, request.provider, request.experts)
    preset = QUALITIES[request.quality]
    return BuildOptions(preset.precision, request.provider, preset.experts)


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove partial folders of earlier exports into out whose process is gone (killed, crashed)."""
    removed = []
    for candidate in out.parent.glob(f".{out.name}{PARTIAL_MARK}*"):
        try:
            pid = int((candidate / "pid").read_text().strip())
        except (OSError, ValueError):
            pid = -1
        if pid <= 0 or not _pid_alive(pid):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


class _Interrupts:
    """Ctrl-C and SIGTERM unwind as KeyboardInterrupt, and are remembered: a C extension interrupted
    mid-import (torch) reports a generic error instead, which must still count as an interruption."""

    def __init__(self) -> None:
        self.received: int | None = None

    @contextmanager
    def installed(self) -> Iterator[None]:
        def handler(signum: int, frame: Any) -> None:
            self.received = signum
            raise KeyboardInterrupt(f"signal {signum}")

        if not _main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _is_disk_full(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return True
        if "No space left on device" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _parameter_counts(checkpoint: Checkpoint) -> tuple[int, int]:
    """(expert weights, every other parameter) of a checkpoint, from its tensor headers (MXFP4 or dense experts)."""
    experts = others = 0
    for name, info in checkpoint.tensors.items():
        size = info.end - info.begin
        if name.endswith("_blocks"):
            experts += 2 * size  # two FP4 codes a byte
        elif name.endswith("_scales"):
            continue
        elif ".mlp.experts." in name and not name.endswith("_bias"):
            experts += size // 2  # dense bf16 experts
        else:
            others += size // (4 if info.dtype == "F32" else 2)
    return experts, others


def _estimate_output_bytes(checkpoint: Checkpoint, options: BuildOptions) -> int:
    """The model folder's size: parameters counted from the checkpoint, times the bytes each takes once built.

    Experts: int4 blocks of 32 with an fp16 scale (0.5625 bytes a weight), int8 (1.0625) or dense fp32 (4); the
    rest: MatMulNBits int4 or int8 with fp32 scales (0.625, 1.125) or fp32 (4). 10% for the graph and the rounding.
    Measured: slice:2 fast 1.79 GB (estimate 1.82), balanced 2.39 (2.49), exact 6.67 (7.2).
    """
    experts, others = _parameter_counts(checkpoint)
    expert_encoding = options.experts or options.precision
    per_expert = {"int4": 0.5625, "int4-fitted": 0.5625, "int8": 1.0625}.get(expert_encoding, 4.0)
    per_other = {"int4": 0.625, "int8": 1.125}.get(options.precision, 4.0)
    return int(1.1 * (experts * per_expert + others * per_other))


def estimate_peak_memory(checkpoint: Checkpoint, streaming: bool) -> int:
    """Peak RSS of the conversion, fitted to measurements.

    The builder on its own holds the whole model in fp32: slice:2 measured 15.0 GB and slice:4 18 GB, about 3.6x
    the bytes of each layer's weights, 4.6x those of the embedding and lm_head, plus 0.5 GB of libraries.
    Streaming holds one unit at a time; the largest is the embedding or the lm_head, in bf16 and in fp32 at once
    while it is quantized: about 3.5x its bf16 bytes plus 1 GB of libraries, whatever the depth.
    """
    outer = {"model.embed_tokens.weight", "lm_head.weight"}
    outer_sizes = [t.end - t.begin for name, t in checkpoint.tensors.items() if name in outer]
    if streaming:
        return int(1.0e9 + 3.5 * max(outer_sizes, default=0))
    layer_bytes = sum(t.end - t.begin for name, t in checkpoint.tensors.items() if name not in outer)
    if checkpoint.format == "bf16":
        layer_bytes //= 4  # dense bf16 experts take ~4x the bytes of MXFP4 for the same fp32 working set
    return int(0.5e9 + 3.6 * layer_bytes + 4.6 * sum(outer_sizes))


def check_memory(checkpoint: Checkpoint, available: int, streaming: bool) -> None:
    needed = estimate_peak_memory(checkpoint, streaming)
    if needed > available:
        how = "converting layer by layer" if streaming else "the model builder holds the whole model in fp32"
        raise OutOfMemoryError(
            f"this export needs about {needed / 1e9:.0f} GB of memory while converting ({how}) and "
            f"{available / 1e9:.0f} GB are available; it would be killed part way. "
            "Run it on a machine with more memory, or pass --skip-memory-check to try anyway"
        )


def estimate_parity_memory(checkpoint: Checkpoint) -> int:
    """Peak RSS of the parity reference (export/verify.py: load_reference): the experts in bf16, the rest widened to
    fp32, and the loading's transients; slice:2 measured 11.7 GB against 11.5 estimated."""
    experts, others = _parameter_counts(checkpoint)
    return int(1.0e9 + 1.3 * (2 * experts + 4 * others))


def check_parity_memory(checkpoint: Checkpoint, available: int) -> None:
    needed = estimate_parity_memory(checkpoint)
    if needed > available:
        raise OutOfMemoryError(
            f"--parity runs the checkpoint through transformers, which needs about {needed / 1e9:.0f} GB here and "
            f"{available / 1e9:.0f} GB are available. Export without --parity (the real run still verifies the "
            "folder), compare a smaller slice of the checkpoint, or pass --skip-memory-check to try anyway"
        )


def _check_out(out: Path, force: bool, progress: Progress) -> None:
    """Refuse to replace a folder without --force, make sure the parent is writable, clear stale partials."""
    if out.exists() and not force:
        what = "a model folder" if (out / "manifest.json").exists() else "something"
        raise OutputExistsError(f"{out} already holds {what}; pass --force to replace it or choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.probe-"):
            pass
    except OSError as exc:
        raise ExportError(f"cannot write to {out.parent}: {exc.strerror or exc}; choose another --out") from exc
    for stale in remove_stale_partials(out):
        progress.note(f"removed an interrupted earlier export: {stale.name}")


def run_export(request: ExportRequest, progress: Progress) -> dict[str, Any]:
    """Export and verify; returns the manifest. Raises ExportError subclasses with user-facing messages."""
    request, options, checkpoint = _plan(request, progress)
    assert request.out is not None
    out = request.out.expanduser().resolve()
    streaming = not request.in_memory and uses_streaming(options)
    _check_room(request, options, checkpoint, out, streaming)

    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}{PARTIAL_MARK}", dir=out.parent))
    (staging / "pid").write_text(str(os.getpid()))
    model_dir, work_dir = staging / "model", staging / "work"
    model_dir.mkdir()
    work_dir.mkdir()
    started = time.perf_counter()
    interrupts = _Interrupts()
    try:
        with interrupts.installed():
            source_files = _hash(checkpoint.files, checkpoint.path, "hash source", progress)
            extra = _build(checkpoint, model_dir, work_dir, options, request.provider, streaming, interrupts, progress)
            carry_sampling(checkpoint.path, model_dir)
            build_seconds = time.perf_counter() - started
            memory = _conversion_memory(work_dir)
            verification = _verify(request, options, checkpoint, model_dir, work_dir / "builder.log", progress)
            memory["verify_peak_rss_bytes"] = verification.pop("peak_rss_bytes", None)
            run_here = request.provider == "cpu"
            manifest = _manifest(
                request, options, checkpoint, source_files, extra, verification, build_seconds, run_here
            )
            manifest["conversion"] = {"method": "streaming" if streaming else "builder in memory", **memory}
            outputs = sorted(p for p in model_dir.rglob("*") if p.is_file())
            manifest["files"] = _hash(outputs, model_dir, "hash output", progress)
            (model_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            os.chmod(model_dir, 0o755)
            _move_into_place(model_dir, out, request.force)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if _is_disk_full(exc):
            raise DiskFullError(
                f"the disk filled up while writing the export to {out.parent}; nothing was left behind. "
                "Free space and run the same command again"
            ) from exc
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _plan(request: ExportRequest, progress: Progress) -> tuple[ExportRequest, BuildOptions, Checkpoint]:
    """Check what can be checked before reading the checkpoint, read it, and settle the preset and the output."""
    # `auto` is resolved once the checkpoint is read; anything else is checked before a byte is downloaded
    options = None if request.quality == AUTO else build_options(request)
    if options is not None:
        options.check()
    if request.out is not None:
        _check_out(request.out.expanduser().resolve(), request.force, progress)
    elif request.quality == AUTO and not request.force:
        # which preset `auto` takes is known only once the checkpoint is read: an earlier default export of this
        # source, whichever preset it took, is reported before anything is downloaded or read
        for preset in (*QUALITIES, *DEFAULT_EXPORT_PRESETS):
            earlier = default_out(request.source, preset, request.provider)
            if (earlier / "manifest.json").exists():
                raise OutputExistsError(
                    f"{earlier} already holds a model folder; pass --force to replace it or choose another --out"
                )

    progress.stage("checking the checkpoint")
    checkpoint = resolve_source(request.source, request.revision, request.download_dir, quiet=not progress.interactive)
    if request.quality == AUTO:
        quality, why = choose_quality(checkpoint, psutil.virtual_memory().total, request.provider)
        progress.stage(f"quality: {quality} ({why}; --quality chooses another)")
        request = replace(request, quality=quality, quality_reason=f"auto: {why}")
        options = build_options(request)
    assert options is not None
    if request.out is None:
        variant = request.quality or request.precision
        request = replace(request, out=default_out(request.source, variant, request.provider, request.experts))
        assert request.out is not None
        _check_out(request.out, request.force, progress)
    return request, options, checkpoint


def _check_room(
    request: ExportRequest, options: BuildOptions, checkpoint: Checkpoint, out: Path, streaming: bool
) -> None:
    """Refuse, before writing anything, an export that memory or the disk cannot hold."""
    if not request.skip_memory_check:
        check_memory(checkpoint, psutil.virtual_memory().available, streaming)
        if request.parity and request.provider == "cpu":
            check_parity_memory(checkpoint, psutil.virtual_memory().available)
    needed = _estimate_output_bytes(checkpoint, options)
    if streaming:
        # the spill holds the converted weights until the folder is written (about the output's size), and a
        # scratch file the largest weight in fp32 while it is quantized (twice its bf16 bytes)
        largest = max((t.end - t.begin for t in checkpoint.tensors.values()), default=0)
        needed += needed + 2 * largest
    free = shutil.disk_usage(out.parent).free
    if needed > free and not request.skip_disk_check:
        raise DiskFullError(
            f"{out.parent} has {free / 1e9:.1f} GB free; this export needs about {needed / 1e9:.1f} GB. Free space "
            "or choose another --out (or pass --skip-disk-check to try anyway)"
        )


def _build(
    checkpoint: Checkpoint,
    model_dir: Path,
    work_dir: Path,
    options: BuildOptions,
    provider: str,
    streaming: bool,
    interrupts: _Interrupts,
    progress: Progress,
) -> dict[str, Any]:
    """Run the model builder into `model_dir`, its output in work/builder.log; a failure names the log's tail."""
    progress.stage(
        f"converting {checkpoint.num_layers} layers ({checkpoint.format} -> {options.precision}, {provider})"
    )
    layer_bar = progress.bar("convert", total=checkpoint.num_layers, unit="layer")
    build_progress = BuildProgress(
        on_stage=progress.stage,
        on_layer=lambda done, total: layer_bar.update_to(done),
        make_save_bar=progress.builder_save_bar,
    )
    log_path = work_dir / "builder.log"
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            extra = run_builder(checkpoint, model_dir, work_dir, options, build_progress, log, streaming=streaming)
        except ExportError:
            raise
        except Exception as exc:
            if interrupts.received is not None:
                raise KeyboardInterrupt from exc
            if _is_disk_full(exc):
                raise
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise ExportError(
                f"the model builder failed: {exc.__class__.__name__}: {exc}\n  last builder output:\n    "
                + "\n    ".join(tail)
            ) from exc
        finally:
            layer_bar.close()
    if interrupts.received is not None:
        raise KeyboardInterrupt  # the builder (or a library under it) swallowed the interruption
    return extra


def _conversion_memory(work_dir: Path) -> dict[str, Any]:
    """The conversion's peak RSS and spill size; the spill is removed."""
    spill = work_dir / "spill" / "spill.bin"
    figures = {
        "convert_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "spill_bytes": spill.stat().st_size if spill.exists() else 0,
    }
    shutil.rmtree(work_dir / "spill", ignore_errors=True)
    return figures


def _verify(
    request: ExportRequest,
    options: BuildOptions,
    checkpoint: Checkpoint,
    model_dir: Path,
    log_path: Path,
    progress: Progress,
) -> dict[str, Any]:
    """Load and run the folder in a child process (and, with parity, compare its logits against transformers)."""
    run_here = request.provider == "cpu"
    if request.parity and run_here:
        progress.stage("verifying: a real run, and logits against the reference (transformers, fp32)")
    else:
        progress.stage("verifying" + (": a real run" if run_here else ""))
    with open(log_path, "a", encoding="utf-8") as log:
        return run_checks_in_child(
            model_dir,
            request.provider,
            runtime_env(options.precision, options.experts),
            checkpoint.path if request.parity and run_here else None,
            parity_label(options.precision, options.experts),
            log,
        )


SAMPLING_KEYS = ("temperature", "top_p", "top_k")


def carry_sampling(checkpoint_dir: Path, model_dir: Path) -> dict[str, float]:
    """The checkpoint's recommended sampling (generation_config.json) into the folder's genai_config search
    options, where the daemon finds it; a checkpoint without it (openai/gpt-oss-20b) keeps the builder's 1.0."""
    source = checkpoint_dir / "generation_config.json"
    try:
        generation = json.loads(source.read_text()) if source.is_file() else {}
    except ValueError as exc:
        raise CheckpointError(f"{source} is not valid JSON ({exc})") from exc
    sampling = {k: generation[k] for k in SAMPLING_KEYS if isinstance(generation.get(k), int | float)}
    if sampling:
        path = model_dir / "genai_config.json"
        config = json.loads(path.read_text())
        config.setdefault("search", {}).update(sampling)
        path.write_text(json.dumps(config, indent=4) + "\n")
    return sampling


def _hash(paths: list[Path], root: Path, desc: str, progress: Progress) -> list[dict[str, Any]]:
    bar = progress.bar(desc, total=sum(p.stat().st_size for p in paths), unit="B")
    try:
        return [file_digest(p, root, bar.update) for p in paths]
    finally:
        bar.close()


def _manifest(
    request: ExportRequest,
    build: BuildOptions,
    checkpoint: Checkpoint,
    source_files: list[dict[str, Any]],
    extra: dict[str, str],
    verification: dict[str, Any],
    build_seconds: float,
    run_here: bool,
) -> dict[str, Any]:
    source: dict[str, Any] = {"format": checkpoint.format, "shape": checkpoint.shape_summary(), "files": source_files}
    if checkpoint.hub_id:
        source.update(kind="hub", hub_id=checkpoint.hub_id, revision=checkpoint.revision)
    else:
        source.update(kind="local", path=str(checkpoint.path.resolve()))
    synthetic = checkpoint.path / "synthetic.json"
    if synthetic.exists():
        source["synthetic"] = json.loads(synthetic.read_text())
    options = asdict(request)
    # what was built, whether asked for by name (a quality preset) or one by one
    options.update(precision=build.precision, experts=build.experts)
    options["out"] = str(request.out)
    options["download_dir"] = str(request.download_dir) if request.download_dir else None
    return {
        "format": "oss-edge-model",
        "manifest_version": MANIFEST_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "options": options,
        "builder_extra_options": extra,
        "runtime_env": runtime_env(build.precision, build.experts),
        "qmoe_accuracy_level": 4 if request.provider == "cpu" else None,
        "execution_provider": {
            "target": request.provider,
            "run_during_export": run_here,
            "note": None
            if run_here
            else f"built for {request.provider}; this machine has no such device, so the "
            "model was checked structurally but never run",
        },
        "tools": tool_versions(),
        "build_seconds": round(build_seconds, 2),
        "verification": verification,
    }


def _move_into_place(model_dir: Path, out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise OutputExistsError(f"{out} appeared while this export ran (another export?); it was left as it is")
    if out.exists():
        # --force: swap in the new folder first, then delete the old one, so a crash keeps one of them.
        trash = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, trash)
        os.replace(model_dir, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(model_dir, out)


def print_summary(manifest: dict[str, Any], out: Path) -> None:
    size = sum(f["size"] for f in manifest["files"])
    verification = manifest["verification"]
    lines = [f"exported {out} ({size / 1e6:.1f} MB, {len(manifest['files'])} files) in {manifest['build_seconds']} s"]
    if "smoke_run" in verification:
        lines.append(
            f"  ran on the CPU: {verification['smoke_run']['prompt_tokens']} prompt tokens, "
            f"greedy {verification['smoke_run']['generated']}"
        )
    else:
        lines.append(f"  {manifest['execution_provider']['note']}")
    if "parity" in verification:
        p = verification["parity"]
        lines.append(
            f"  parity: top-1 {p['top1_agreement']:.3f}, mean KL {p['mean_kl']:.4f}, "
            f"max |dlogit| {p['max_abs_logit_diff']:.2e} -> {'passed' if p['passed'] else 'FAILED'}"
        )
    print("\n".join(lines), file=sys.stdout)
