"""`oss-edge bench TARGET`: every benchmark's options, registered in one place (the code lives beside this file)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge_runtime.engine import KERNELS
from export.errors import OptionError
from export.presets import PRECISIONS, QUALITIES
from oss_edge.bench.common import add_bench_options

DEFAULT_RUNTIME_SHAPES = ["tiny", "slice:2", "slice:4"]
DEFAULT_LSP_SHAPES = ["tiny", "slice:2"]
DEFAULT_EXPORT_SHAPES = ["tiny", "slice:2"]
DEFAULT_QUALITY_SHAPES = ["stand-in", "slice:2", "slice:4"]


def register(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench", help="benchmarks (not tests): write JSON, a markdown table and charts to a report folder"
    )
    targets = bench.add_subparsers(dest="target", metavar="TARGET", required=True)
    _register_export(targets)
    _register_quality(targets)
    _register_runtime(targets)
    _register_lsp(targets)
    _register_reliability(targets)
    _register_all(targets)
    assemble = targets.add_parser(
        "report",
        help="write report.json and report.md from the benchmark results already in the report folder",
        description="Combine export.json, quality.json, runtime.json and lsp.json in the report folder (each "
        "written by its own benchmark, possibly on different days) into report.json and report.md.",
    )
    add_bench_options(assemble)
    assemble.set_defaults(handler=_report)


def _register_export(targets: Any) -> None:
    export = targets.add_parser(
        "export",
        help="wall time and memory over time of exports of synthetic checkpoints",
        description="Export synthetic gpt-oss checkpoints of the given shapes, each in its own process, sampling "
        "its memory; write export.json, export.md and export_memory.png to the report folder.",
    )
    export.add_argument("--shape", action="append", help="shapes to export (repeatable; default: tiny and slice:2)")
    export.add_argument("--precision", choices=PRECISIONS, default="int4")
    _compare_builder_option(export)
    add_bench_options(export)
    export.set_defaults(handler=_export)


def _register_quality(targets: Any) -> None:
    quality = targets.add_parser(
        "quality",
        help="fidelity, size and speed of each export preset; on the trained stand-in, what users see",
        description="Export each preset with --parity (fidelity against transformers fp32), measure its size and "
        "the raw decode/prefill speed; write quality.json, quality.md and quality.png to the report folder. On "
        "the shapes stand-in (the committed trained model) and stand-in-random (its shape, random weights), also "
        "through `oss-edge lsp`: suggestions at held-out cursor positions against the true code and the fp32 "
        "reference, and explanations of held-out functions. With --llama-cpp and --llama-cpp-python, also "
        "llama.cpp's MXFP4_MOE recipe against the same reference.",
    )
    quality.add_argument(
        "--shape",
        action="append",
        help="stand-in, stand-in-random, tiny, slice:N, 20b (repeatable; default: stand-in, slice:2, slice:4)",
    )
    quality.add_argument(
        "--positions", type=int, default=300, help="held-out cursor positions per stand-in preset (default 300)"
    )
    quality.add_argument(
        "--explanations", type=int, default=40, help="held-out functions explained per stand-in preset (default 40)"
    )
    quality.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="on the stand-in shapes, skip the fp32 transformers reference on the product's prompts (its row and "
        "the `as fp32` column; it decodes each prompt in transformers, the slowest part)",
    )
    quality.add_argument(
        "--variant",
        action="append",
        help="presets to measure (repeatable; default: fast, 'fast (int4-fitted)', balanced, accurate, exact)",
    )
    quality.add_argument(
        "--llama-cpp", type=Path, metavar="TREE", help="a llama.cpp source tree (convert_hf_to_gguf.py, gguf-py)"
    )
    quality.add_argument(
        "--llama-cpp-python", metavar="PYTHON", help="a Python interpreter with llama-cpp-python installed"
    )
    add_bench_options(quality)
    quality.set_defaults(handler=_quality)


def _register_runtime(targets: Any) -> None:
    runtime = targets.add_parser(
        "runtime",
        help="decode, prefill, time to first token, cancel latency and memory of the daemon",
        description="Synthesise and export gpt-oss checkpoints of the given shapes (cached), then measure the "
        "real daemon over its socket and the raw engine in the same run; write runtime.json, runtime.md and "
        "runtime.png to the report folder.",
    )
    runtime.add_argument("--shape", action="append", help="shapes (repeatable; default: tiny, slice:2, slice:4)")
    add_bench_options(runtime)
    runtime.add_argument("--context", type=int, default=2048, help="tokens of context for the keystroke test")
    runtime.add_argument("--decode-tokens", type=int, default=64, help="tokens generated per decode measurement")
    runtime.add_argument(
        "--prefill",
        type=int,
        action="append",
        help="prompt lengths for the prefill measurement (repeatable; default: 512 and 2048)",
    )
    runtime.add_argument(
        "--kernels",
        action="append",
        choices=KERNELS,
        help="the daemon's CPU expert kernels (repeatable: each shape is measured with each; default auto)",
    )
    runtime.add_argument(
        "--quality",
        action="append",
        choices=tuple(QUALITIES),
        help="export presets (repeatable: each shape is exported and measured with each; default fast)",
    )
    runtime.set_defaults(handler=_runtime)


def _register_lsp(targets: Any) -> None:
    from oss_edge.bench.lsp import default_source

    bench = targets.add_parser(
        "lsp",
        help="type a real source file through the language server and compare with the raw runtime",
        description="Type a source file this project did not write, character by character, through `oss-edge lsp` "
        "with a client-side debounce and cancellation, as an editor does; replay every suggestion shown straight "
        "to the daemon; write lsp.json and lsp.md to the report folder.",
    )
    bench.add_argument("--shape", action="append", help="synthetic shapes (repeatable; default: tiny and slice:2)")
    bench.add_argument("--source", type=Path, default=default_source(), help="file to type (default: textwrap.py)")
    bench.add_argument("--chars", type=int, default=300, help="characters to type (default 300)")
    bench.add_argument("--rate", type=float, default=10.0, help="characters per second (default 10)")
    bench.add_argument("--debounce", type=int, default=50, help="client-side debounce in ms (default 50)")
    add_bench_options(bench)
    bench.set_defaults(handler=_lsp)


def _register_reliability(targets: Any) -> None:
    bench = targets.add_parser(
        "reliability",
        help="hostile frames and a keystroke soak against the real daemon",
        description="Start the daemon on a synthetic model; measure an honest client alone, then while hostile "
        "frames arrive (random bytes, truncated and oversized messages, deep nesting, wrong types in every field, "
        "bad ids, byte-by-byte trickle) and connections are opened and dropped; then type through a real file "
        "with two clients, cancelling every other request. Write reliability.json, reliability.md and "
        "reliability.png to the report folder, with the bars each figure is held to.",
    )
    bench.add_argument("--shape", default="tiny", help="synthetic shape the daemon serves (default tiny)")
    bench.add_argument("--frames", type=int, default=10_000, help="hostile frames (default 10000)")
    bench.add_argument("--connections", type=int, default=2_000, help="connections opened and dropped (default 2000)")
    bench.add_argument("--soak", type=int, default=10_000, help="keystroke requests in the soak (0: none)")
    bench.add_argument("--seed", type=int, default=0, help="seed of the hostile frames")
    add_bench_options(bench)
    bench.set_defaults(handler=_reliability)


def _register_all(targets: Any) -> None:
    every = targets.add_parser(
        "all",
        help="export, runtime and LSP benchmarks into one report folder (report.json, report.md, charts)",
        description="Run the export, runtime and LSP benchmarks in turn and write one report: report.json (every "
        "figure and the machine), report.md (the tables) and the PNG charts, beside each part's own files.",
    )
    every.add_argument(
        "--shape",
        action="append",
        help="shapes for the runtime and LSP benchmarks (repeatable; default: tiny, slice:2, slice:4)",
    )
    every.add_argument(
        "--export-shape", action="append", help="shapes for the export benchmark (default: tiny and slice:2)"
    )
    _compare_builder_option(every)
    every.add_argument("--context", type=int, default=2048, help="tokens of context for the keystroke test")
    every.add_argument("--chars", type=int, default=300, help="characters typed in the LSP benchmark (default 300)")
    add_bench_options(every)
    every.set_defaults(handler=_all)


def _compare_builder_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compare-builder",
        action="append",
        default=[],
        metavar="SHAPE",
        help="also export this shape with --in-memory (the model builder as it stands), for comparison",
    )


def _written(markdown: str, report: Path) -> int:
    print(markdown)
    print(f"report written to {report}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from oss_edge.bench import export

    shapes = args.shape or DEFAULT_EXPORT_SHAPES
    report = export.run(shapes, args.report, args.cache, args.precision, tuple(args.compare_builder))
    return _written(export.markdown(report), args.report)


def _quality(args: argparse.Namespace) -> int:
    from oss_edge.bench import quality

    variants = args.variant or list(quality.VARIANTS)
    unknown = [v for v in variants if v not in quality.VARIANTS]
    if unknown:
        raise OptionError(f"unknown variant {unknown[0]!r}: choose from {', '.join(quality.VARIANTS)}")
    if bool(args.llama_cpp) != bool(args.llama_cpp_python):
        raise OptionError("--llama-cpp and --llama-cpp-python go together")
    llama_cpp = (args.llama_cpp, args.llama_cpp_python) if args.llama_cpp else None
    product = quality.ProductOptions(
        positions=args.positions, explanations=args.explanations, with_reference=args.reference
    )
    shapes = args.shape or DEFAULT_QUALITY_SHAPES
    report = quality.run(shapes, variants, args.report, args.cache, llama_cpp, product)
    return _written(quality.markdown(report), args.report)


def _runtime(args: argparse.Namespace) -> int:
    from oss_edge.bench import runtime

    report = runtime.run(
        args.shape or DEFAULT_RUNTIME_SHAPES,
        args.report,
        args.cache,
        args.context,
        args.decode_tokens,
        tuple(args.prefill or (512, 2048)),
        tuple(args.kernels or ("auto",)),
        tuple(args.quality or ("fast",)),
    )
    return _written(runtime.markdown(report), args.report)


def _lsp(args: argparse.Namespace) -> int:
    from oss_edge.bench import lsp

    shapes = args.shape or DEFAULT_LSP_SHAPES
    report = lsp.run(shapes, args.report, args.cache, args.source, args.chars, args.rate, args.debounce)
    return _written(lsp.markdown(report), args.report)


def _reliability(args: argparse.Namespace) -> int:
    from oss_edge.bench import reliability

    report = reliability.run(args.shape, args.report, args.cache, args.frames, args.connections, args.soak, args.seed)
    return _written(reliability.markdown(report), args.report)


def _all(args: argparse.Namespace) -> int:
    from oss_edge.bench import export, lsp, runtime

    shapes = args.shape or DEFAULT_RUNTIME_SHAPES
    export.run(args.export_shape or DEFAULT_EXPORT_SHAPES, args.report, args.cache, "int4", tuple(args.compare_builder))
    runtime.run(shapes, args.report, args.cache, args.context, 64)
    lsp.run(shapes, args.report, args.cache, lsp.default_source(), args.chars, 10.0, 50)
    return _report(args)


def _report(args: argparse.Namespace) -> int:
    from oss_edge.bench.report import assemble_report

    text = assemble_report(args.report)
    print(text)
    print(f"report written to {args.report / 'report.md'} and {args.report / 'report.json'}")
    return 0
