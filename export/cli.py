"""`oss-edge synth`, `oss-edge export` and `oss-edge verify`: argument parsing and user-facing output.

Heavy modules (torch, transformers, the model builder) are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edge_runtime.engine import PROVIDERS
from edge_runtime.paths import models_dir
from export.checkpoint import DEFAULT_HUB_ID
from export.errors import OptionError, VerificationError
from export.presets import AUTO, EXPERT_ENCODINGS, PRECISIONS, QUALITIES


def register(subparsers: Any) -> None:
    _register_synth(subparsers)
    _register_export(subparsers)
    _register_verify(subparsers)


def _register_synth(subparsers: Any) -> None:
    synth = subparsers.add_parser(
        "synth",
        help="generate a random gpt-oss checkpoint in the official on-disk format (for tests and benchmarks)",
        description="Write a synthetic gpt-oss checkpoint with random weights in the exact on-disk format of "
        "openai/gpt-oss-20b (MXFP4 experts, bf16 elsewhere, harmony tokenizer).",
    )
    synth.add_argument("out", type=Path, help="folder to create")
    synth.add_argument(
        "--shape",
        default="tiny",
        help="tiny (seconds to build), tiny-120b (the 120b layout at small width), stand-in (the trained "
        "stand-in's shape, here with random weights), slice:N "
        "(gpt-oss-20b widths, N layers), or 20b (all 24 layers, the release's size)",
    )
    synth.add_argument(
        "--format",
        dest="fmt",
        choices=("mxfp4", "bf16"),
        default="mxfp4",
        help="mxfp4: experts as *_blocks/*_scales like the official release; bf16: dense experts like a fine-tune",
    )
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(handler=_synth)


def _register_export(subparsers: Any) -> None:
    export = subparsers.add_parser(
        "export",
        help="convert a gpt-oss checkpoint into a verified int4 ONNX model folder",
        description="Convert a gpt-oss checkpoint (hub id or local folder; MXFP4 release or bf16 fine-tune) into "
        "an ONNX Runtime GenAI model folder, verify it, and write manifest.json. The folder appears only "
        "when complete; an interrupted export leaves nothing and can simply be run again.",
    )
    export.add_argument(
        "source",
        nargs="?",
        default=DEFAULT_HUB_ID,
        help=f"hub id or local checkpoint folder (default {DEFAULT_HUB_ID})",
    )
    export.add_argument(
        "--out",
        type=Path,
        help=f"model folder to create (default: a folder under {models_dir()} named after the source and options)",
    )
    export.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="weights other than the experts, instead of --quality: int4, int8 or fp32 (int4 when only --experts "
        "is given)",
    )
    export.add_argument(
        "--quality",
        choices=(AUTO, *QUALITIES),
        help="a preset instead of --precision/--experts: fast = int4 everywhere (smallest); balanced = int4 "
        "experts, int8 everywhere else (the embedding too: less logit error at the same speed, a little larger); "
        "auto (the default) = balanced where this machine's memory holds its daemon beside the system and an "
        "editor (gpt-oss-20b: 24 GiB and more), else fast; accurate = the MXFP4 experts held exactly "
        "in int8, int8 elsewhere (llama.cpp's MXFP4_MOE recipe); exact = exact experts, every other weight "
        "unquantized (largest, slowest, equal to the checkpoint). docs/export.md lists their sizes, speeds and "
        "fidelity",
    )
    export.add_argument(
        "--experts",
        choices=EXPERT_ENCODINGS,
        help="expert weights: int4 (the default at --precision int4: smallest, fastest; the model builder's "
        "blocks of 32, scaled by each block's largest value), int4-fitted (the same size, each block scaled for the "
        "least squared error on its MXFP4 values: less weight error, docs/bench/quality.md) or int8 (the MXFP4 "
        "experts held exactly, twice their bytes); at --precision fp32 "
        "they stay dense unless int8 is asked for",
    )
    export.add_argument(
        "--provider", choices=PROVIDERS, default="cpu", help="execution provider the model is built for"
    )
    export.add_argument("--revision", help="hub revision (branch, tag or commit) to download")
    export.add_argument("--download-dir", type=Path, help="hub cache folder for the download")
    export.add_argument("--force", action="store_true", help="replace an existing output folder")
    _add_check_options(export)
    export.set_defaults(handler=_export)


def _add_check_options(export: argparse.ArgumentParser) -> None:
    """How the export checks itself and what it may skip."""
    export.add_argument(
        "--parity",
        action="store_true",
        help="also compare logits with the source run through transformers (needs memory for an "
        "fp32 copy of the model)",
    )
    export.add_argument(
        "--in-memory",
        action="store_true",
        help="convert with the model builder holding the whole model in memory, as it does on its own (many "
        "times the memory: docs/bench/export.md); by default int4/int8 exports convert layer by layer and write "
        "the same files",
    )
    export.add_argument(
        "--skip-memory-check",
        action="store_true",
        help="start even when the estimated memory need exceeds the available memory",
    )
    export.add_argument(
        "--skip-disk-check",
        action="store_true",
        help="start even when the estimated disk need exceeds the free space (a full disk part way still stops "
        "the export cleanly)",
    )


def _register_verify(subparsers: Any) -> None:
    verify = subparsers.add_parser(
        "verify",
        help="check a model folder: structure, operators, tokenizer, file hashes, a real run, parity",
        description="Check an exported model folder. With --reference, also compare its logits against the "
        "checkpoint run through transformers in fp32 on a fixed prompt set.",
    )
    verify.add_argument("model_dir", type=Path)
    verify.add_argument("--reference", type=Path, help="checkpoint folder to compare against")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--skip-hashes", action="store_true", help="do not re-hash the files listed in manifest.json")
    verify.set_defaults(handler=_verify)


def _synth(args: argparse.Namespace) -> int:
    from export.progress import Progress
    from export.synth import generate

    progress = Progress()
    bar = None

    def on_bytes(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = progress.bar("write", total=total, unit="B")
        bar.update_to(done)

    out = generate(args.out, args.shape, args.fmt, args.seed, on_bytes)
    if bar is not None:
        bar.close()
    print(f"wrote synthetic gpt-oss checkpoint {out} (shape {args.shape}, {args.fmt}, seed {args.seed})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from export.pipeline import ExportRequest, print_summary, run_export
    from export.progress import Progress

    if args.quality and (args.precision or args.experts):
        raise OptionError("--quality chooses the precision and the experts itself; drop --precision and --experts")
    quality = args.quality or (None if args.precision or args.experts else AUTO)
    request = ExportRequest(
        source=args.source,
        out=args.out,
        precision=args.precision or "int4",
        provider=args.provider,
        experts=args.experts,
        quality=quality,
        revision=args.revision,
        force=args.force,
        parity=args.parity,
        download_dir=args.download_dir,
        skip_memory_check=args.skip_memory_check,
        skip_disk_check=args.skip_disk_check,
        in_memory=args.in_memory,
    )
    manifest = run_export(request, Progress())
    print_summary(manifest, Path(manifest["options"]["out"]).expanduser().resolve())
    parity = manifest["verification"].get("parity")
    return 0 if parity is None or parity["passed"] else VerificationError.exit_code


def _verify(args: argparse.Namespace) -> int:
    from export.verify import verify_folder

    report = verify_folder(args.model_dir, args.reference, hashes=not args.skip_hashes)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for line in format_report(report):
            print(line)
    return 0 if report["passed"] else VerificationError.exit_code


def format_report(report: dict[str, Any]) -> list[str]:
    s = report["structure"]
    lines = [
        f"{report['model_dir']}: {s['layers']} layers, vocab {s['vocab_size']}, built for {report['provider']}",
        f"  structure and genai_config: ok; operators for {report['provider']}: ok",
        f"  tokenizer round trip with harmony special tokens: ok ({report['tokenizer']['tokens']} tokens)",
    ]
    if "hashes" in report:
        lines.append(f"  file hashes: {report['hashes']}")
    if "smoke_run" in report:
        lines.append(
            f"  ran on the CPU: greedy {report['smoke_run']['generated']} in {report['smoke_run']['seconds']} s"
        )
    else:
        lines.append(f"  {report.get('run', 'not run')}")
    if "parity" in report:
        p = report["parity"]
        lines.append(
            f"  parity vs transformers fp32 ({p['positions']} positions): max |dlogit| "
            f"{p['max_abs_logit_diff']:.2e}, top-1 {p['top1_agreement']:.3f}, mean KL {p['mean_kl']:.4f}, "
            f"cosine {p['mean_cosine']:.4f}, identical greedy runs {p['greedy_sequences_identical']}/"
            f"{p['prompts']} -> {'passed' if p['passed'] else 'FAILED'} (thresholds {p['thresholds']})"
        )
    lines.append("verified" if report["passed"] else "verification FAILED")
    return lines
