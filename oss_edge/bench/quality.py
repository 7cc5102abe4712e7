"""`oss-edge bench quality`: what each export preset costs and keeps, on synthetic full-width slices.

For each shape and preset: export with `--parity` (the manifest then records the fidelity figures against
transformers in fp32), the folder's size, and decode/prefill speed of the raw onnxruntime-genai loop run in a
process of its own; each export is deleted once measured. Optionally the same fidelity figures for llama.cpp's
MXFP4_MOE recipe on the same checkpoint, prompts and reference logits, when a llama.cpp source tree and a Python
with llama-cpp-python are given.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.engine import folder_bytes, physical_cores
from export.verify import reference_cache_file
from oss_edge.bench.common import STAND_IN, STAND_IN_RANDOM, ensure_checkpoint, machine, oss_edge_command

# label -> export options; "fast (int4-fitted)" is fast with each expert block's least-squares scale, for comparison
VARIANTS = {
    "fast": ("--quality", "fast"),
    "fast (int4-fitted)": ("--experts", "int4-fitted"),
    "balanced": ("--quality", "balanced"),
    "accurate": ("--quality", "accurate"),
    "exact": ("--quality", "exact"),
}
GPT_OSS_20B_LAYERS = 24
PRODUCT_SHAPES = (STAND_IN, STAND_IN_RANDOM)
REFERENCE_VARIANT = "fp32 reference (transformers)"
NO_PARITY_SHAPES = ("20b", "120b")
PROMPT_TOKENS, DECODE_TOKENS = 128, 64


def export_variant(checkpoint: Path, out: Path, options: tuple[str, ...], parity: bool = True) -> dict[str, Any]:
    command = oss_edge_command("export", str(checkpoint), "--out", str(out), "--force")
    command += [*options, *(["--parity"] if parity else [])]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    # exit 7: parity below the int4 thresholds; the folder and its figures are there all the same
    if done.returncode not in (0, 7) or not (out / "manifest.json").exists():
        return {"error": (done.stderr.strip().splitlines() or ["export failed"])[-1]}
    manifest = json.loads((out / "manifest.json").read_text())
    result = {
        "export_seconds": round(time.perf_counter() - start, 1),
        "bytes": folder_bytes(out),
        "options": manifest["options"],
        "runtime_env": manifest.get("runtime_env", {}),
        "kernels": manifest["verification"].get("kernels"),
        "command": " ".join(["oss-edge", *command[3:]]),
    }
    if parity:
        figures = manifest["verification"]["parity"]
        keys = ("mean_kl", "mean_cosine", "top1_agreement", "max_abs_logit_diff", "passed")
        result.update({k: figures[k] for k in keys})
    return result


def raw_speed(model_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Decode and prefill tok/s of the raw loop, in a child process (each model's memory ends with it)."""
    code = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        from oss_edge.bench.runtime import measure_raw_engine
        from edge_runtime.engine import physical_cores
        env = json.loads(sys.argv[2])
        figures = measure_raw_engine(Path(sys.argv[1]), {PROMPT_TOKENS}, {DECODE_TOKENS}, physical_cores(), env)
        print(json.dumps(figures))
        """
    )
    done = subprocess.run([sys.executable, "-c", code, str(model_dir), json.dumps(env)], capture_output=True, text=True)
    if done.returncode != 0:
        return {"speed_error": (done.stderr.strip().splitlines() or ["run failed"])[-1]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


_LLAMA_CPP_EVAL = """
import ctypes, json, math, sys
import numpy as np
import llama_cpp

source, target, runs_path = sys.argv[1:4]
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_MXFP4_MOE
if llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params)) != 0:
    sys.exit("llama.cpp could not quantize " + source)
saved = np.load(runs_path)
model = llama_cpp.Llama(model_path=target, n_ctx=512, n_threads=int(sys.argv[4]), logits_all=True, verbose=False)
steps = int(sys.argv[5])
kls, cosines, top1, worst = [], [], 0, 0.0
def log_softmax(x):
    x = x - x.max()
    return x - math.log(np.exp(x).sum())
for i in range(len(saved.files) // 2):
    tokens, reference = saved[f"tokens{i}"].tolist(), saved[f"logits{i}"].astype(np.float64)
    model.reset()
    model.eval(tokens[:-1])
    scores = np.array(model.scores[: len(tokens) - 1], dtype=np.float64)
    for step in range(steps + 1):
        ours = scores[len(tokens) - steps - 2 + step][: reference.shape[1]]
        ref = reference[step]
        worst = max(worst, float(np.abs(ours - ref).max()))
        lr, lo = log_softmax(ref), log_softmax(ours)
        kls.append(float(np.sum(np.exp(lr) * (lr - lo))))
        cosines.append(float(ref @ ours / (np.linalg.norm(ref) * np.linalg.norm(ours))))
        top1 += int(np.argmax(ref) == np.argmax(ours))
print(json.dumps({"mean_kl": float(np.mean(kls)), "mean_cosine": float(np.mean(cosines)),
                  "top1_agreement": top1 / len(kls), "max_abs_logit_diff": worst}))
"""

_LLAMA_CPP_CONVERT = """
import sys
tree = sys.argv[1]
sys.path[:0] = [tree, tree + "/gguf-py"]
from conversion import base
# The synthetic tokenizer is not in llama.cpp's pre-tokenizer table; token ids are fed directly, so name
# gpt-oss's own pre-tokenizer.
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-4o"
import convert_hf_to_gguf
sys.argv = ["convert_hf_to_gguf.py", sys.argv[2], "--outtype", "bf16", "--outfile", sys.argv[3]]
convert_hf_to_gguf.main()
"""


def llama_cpp_mxfp4_moe(
    checkpoint: Path, work: Path, tree: Path, python: str, reference_runs: Path, threads: int
) -> dict[str, Any]:
    """llama.cpp's MXFP4_MOE recipe on the same checkpoint, against the same reference logits."""
    from export.verify import PARITY_STEPS

    work.mkdir(parents=True, exist_ok=True)
    bf16, quantized = work / "model-bf16.gguf", work / "model-mxfp4-moe.gguf"
    if not bf16.exists():
        converted = subprocess.run(
            [sys.executable, "-c", _LLAMA_CPP_CONVERT, str(tree), str(checkpoint), str(bf16)],
            capture_output=True,
            text=True,
        )
        if converted.returncode != 0:
            return {"error": "llama.cpp conversion failed: " + converted.stderr.strip().splitlines()[-1]}
    done = subprocess.run(
        [
            python,
            "-c",
            _LLAMA_CPP_EVAL,
            str(bf16),
            str(quantized),
            str(reference_runs),
            str(threads),
            str(PARITY_STEPS),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return {"error": "llama.cpp evaluation failed: " + done.stderr.strip().splitlines()[-1]}
    result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    result["bytes"] = quantized.stat().st_size
    return result


@dataclass
class ProductOptions:
    """Product-level figures through `oss-edge lsp` (stand-in shapes only)."""

    positions: int = 300
    explanations: int = 40
    seed: int = 0
    with_reference: bool = True  # decode the fp32 transformers reference on the prompts the product sent
    reference: dict[str, str | None] = field(default_factory=dict)  # recorded request -> fp32 reference text


def run(
    shapes: list[str],
    variants: list[str],
    report_dir: Path,
    cache: Path,
    llama_cpp: tuple[Path, str] | None = None,
    product: ProductOptions | None = None,
) -> dict[str, Any]:
    report_dir.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    product = product or ProductOptions()
    results = []
    for shape in shapes:
        results += _measure_shape(shape, variants, cache, llama_cpp, product)
    command = (
        "oss-edge bench quality"
        + "".join(f" --shape {s}" for s in shapes)
        + "".join(f" --variant '{v}'" for v in variants)
        + (" --llama-cpp TREE --llama-cpp-python PYTHON" if llama_cpp else "")
        + (f" --positions {product.positions}" if product.positions != ProductOptions.positions else "")
        + (f" --explanations {product.explanations}" if product.explanations != ProductOptions.explanations else "")
        + ("" if product.with_reference else " --no-reference")
    )
    report = _merge(report_dir, results, command)
    (report_dir / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    (report_dir / "quality.md").write_text(markdown(report))
    plot(report, report_dir / "quality.png")
    if any("product" in r for r in report["results"]):
        plot_product(report, report_dir / "quality_product.png")
    if STAND_IN in shapes:
        plot_training(json.loads((ensure_checkpoint(STAND_IN, cache) / "training.json").read_text()), report_dir)
    return report


def _merge(report_dir: Path, results: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """Rows already in the report folder for other shapes or presets stay: a run adds to the report or remeasures."""
    earlier: dict[str, Any] = {}
    if (report_dir / "quality.json").exists():
        earlier = json.loads((report_dir / "quality.json").read_text())
    measured = {(r["shape"], r["variant"]) for r in results}
    kept = [r for r in earlier.get("results", []) if (r["shape"], r["variant"]) not in measured]
    results = sorted(kept + results, key=_row_order)
    return {
        "benchmark": "quality",
        "machine": machine(),
        "results": results,
        "at_20b": extrapolate_sizes(results),
        "commands": [c for c in earlier.get("commands", []) if c != command] + [command],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _measure_shape(
    shape: str,
    variants: list[str],
    cache: Path,
    llama_cpp: tuple[Path, str] | None,
    product: ProductOptions,
) -> list[dict[str, Any]]:
    checkpoint = ensure_checkpoint(shape, cache)
    results = []
    last_dir = None
    outcomes: list[Any] = []
    for label in variants:
        out = cache / f"{shape.replace(':', '')}-quality-{label.replace(' ', '').replace('(', '-').strip(')')}"
        if last_dir is not None:
            shutil.rmtree(last_dir, ignore_errors=True)  # measured: an export per preset would fill the disk
            last_dir = None
        print(f"{shape}: exporting {label}", file=sys.stderr)
        result: dict[str, Any] = {
            "shape": shape,
            "variant": label,
            # the whole model in transformers does not fit beside anything at 20b: size and speed only
            **export_variant(checkpoint, out, VARIANTS[label], parity=shape not in NO_PARITY_SHAPES),
        }
        if "error" not in result:
            print(f"{shape}: measuring {label}", file=sys.stderr)
            result.update(raw_speed(out, result["runtime_env"]))
            if shape in PRODUCT_SHAPES:
                result["product"], outcomes = _product_figures(out, checkpoint, cache, product)
            last_dir = out
        results.append(result)
    if outcomes and product.with_reference:
        results.append(_reference_row(shape, outcomes, product))
    if llama_cpp and last_dir is not None:
        print(f"{shape}: llama.cpp MXFP4_MOE", file=sys.stderr)
        figures = llama_cpp_mxfp4_moe(
            checkpoint,
            cache / f"{shape.replace(':', '')}-llama-cpp",
            llama_cpp[0],
            llama_cpp[1],
            reference_cache_file(checkpoint, last_dir),
            physical_cores(),
        )
        row = {"shape": shape, "variant": "llama.cpp MXFP4_MOE", **figures}
        if outcomes and "error" not in figures:
            work = cache / f"{shape.replace(':', '')}-llama-cpp"
            row["product"] = _llama_cpp_product(work, llama_cpp[1], last_dir, outcomes)
        results.append(row)
    if last_dir is not None:
        shutil.rmtree(last_dir, ignore_errors=True)
    return results


def _product_figures(
    model_dir: Path, checkpoint: Path, cache: Path, options: ProductOptions
) -> tuple[dict[str, Any], list[Any]]:
    """Suggestions and explanations through `oss-edge lsp`; the fp32 reference on the prompts it sent (each
    prompt decoded once, whichever preset sent it)."""
    from oss_edge.bench import product

    outcomes, explained = product.measure(
        model_dir, cache / "product-work", options.positions, options.explanations, options.seed
    )
    if options.with_reference:
        _fill_reference(model_dir, checkpoint, cache, options, outcomes)
    figures = product.completion_figures(outcomes)
    figures["explain"] = explained
    figures["examples"] = product.examples(outcomes)
    return figures, outcomes


def _fill_reference(
    model_dir: Path, checkpoint: Path, cache: Path, options: ProductOptions, outcomes: list[Any]
) -> None:
    from oss_edge.bench import product

    # the reference's texts depend on the checkpoint and the prompt only: kept between runs beside the checkpoint
    kept = cache / f"{checkpoint.name}-product-reference.json"
    stamp = _weights_digest(checkpoint)
    if not options.reference and kept.is_file():
        saved = json.loads(kept.read_text())
        if saved.get("checkpoint") == stamp:
            options.reference.update(saved["texts"])
    product.fill_reference(checkpoint, model_dir, outcomes, options.reference)
    kept.write_text(json.dumps({"checkpoint": stamp, "texts": options.reference}))


def _weights_digest(checkpoint: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(checkpoint.glob("*.safetensors")):
        with open(path, "rb") as handle:
            while block := handle.read(8 << 20):
                digest.update(block)
    return digest.hexdigest()


def _llama_cpp_product(work: Path, python: str, model_dir: Path, outcomes: list[Any]) -> dict[str, Any]:
    """llama.cpp's MXFP4_MOE on the prompts the product sent, decoded greedily like the fp32 reference."""
    from oss_edge.bench import product

    print("llama.cpp: decoding the product's prompts", file=sys.stderr)
    texts = product.llama_cpp_texts(work / "model-mxfp4-moe.gguf", python, model_dir, outcomes, physical_cores())
    pairs = [(text, o.position.truth) for text, o in zip(texts, outcomes, strict=True)]
    return {
        "product": product.score(pairs),
        "by_kind": product.by_kind(pairs, outcomes),
        "same_as_fp32": product.same_first_line(texts, outcomes),
    }


def _reference_row(shape: str, outcomes: list[Any], options: ProductOptions) -> dict[str, Any]:
    """The fp32 reference's own figures, on the prompts the last preset's run recorded."""
    from oss_edge.bench import product

    pairs = [(o.reference, o.position.truth) for o in outcomes]
    figures = {"product": product.score(pairs), "by_kind": product.by_kind(pairs, outcomes)}
    return {"shape": shape, "variant": REFERENCE_VARIANT, "product": figures}


def _row_order(row: dict[str, Any]) -> tuple[int, int]:
    shapes = ["tiny", STAND_IN, STAND_IN_RANDOM, "slice:1", "slice:2", "slice:4", "20b"]
    variants = [*VARIANTS, REFERENCE_VARIANT, "llama.cpp MXFP4_MOE"]
    shape = shapes.index(row["shape"]) if row["shape"] in shapes else len(shapes)
    return shape, variants.index(row["variant"]) if row["variant"] in variants else len(variants)


def extrapolate_sizes(results: list[dict[str, Any]]) -> dict[str, int]:
    """Folder size at gpt-oss-20b's 24 layers, per variant, from the per-layer growth between slice:2 and slice:4."""
    sizes: dict[str, dict[int, int]] = {}
    for r in results:
        if r["shape"].startswith("slice:") and "bytes" in r:
            sizes.setdefault(r["variant"], {})[int(r["shape"].split(":")[1])] = r["bytes"]
    out = {}
    for variant, by_layers in sizes.items():
        if 2 in by_layers and 4 in by_layers:
            per_layer = (by_layers[4] - by_layers[2]) / 2
            out[variant] = int(by_layers[2] + per_layer * (GPT_OSS_20B_LAYERS - 2))
    return out


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Export presets: fidelity, size and speed ({m['cpu_count']} CPUs, {m['memory_bytes'] / 2**30:.0f} GiB, "
        f"onnxruntime-genai {m['tools']['onnxruntime-genai']})",
        "",
        "| shape | preset | size | ≈ size at 20b | mean KL | cosine | top-1 | decode tok/s | prefill tok/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    at_20b = report.get("at_20b", {})
    for r in report["results"]:
        if r["variant"] == REFERENCE_VARIANT:
            continue
        if "error" in r:
            lines.append(f"| {r['shape']} | {r['variant']} | failed: {r['error']} | | | | | | |")
            continue
        size_20b = at_20b.get(r["variant"])
        fidelity = (
            f"{r['mean_kl']:.4f} | {r['mean_cosine']:.4f} | {r['top1_agreement']:.2f}"
            + (" (below the int4 thresholds)" if r.get("passed") is False else "")
            if "mean_kl" in r
            else "not measured | | "
        )
        lines.append(
            f"| {r['shape']} | {r['variant']} | {r['bytes'] / 1e9:.2f} GB | "
            f"{f'{size_20b / 1e9:.1f} GB' if size_20b else ''} | {fidelity} | "
            f"{r.get('decode_tokens_per_s', '')} | {r.get('prefill_tokens_per_s', '')} |"
        )
    lines += [
        "",
        "Fidelity: last-token logits against transformers in fp32 over the parity prompt set (6 prompts, 9 "
        "teacher-forced positions each), as `oss-edge verify --reference` computes them. Speed: the raw "
        f"onnxruntime-genai loop, {PROMPT_TOKENS}-token prompt, {DECODE_TOKENS} decoded tokens, best of 3, with the "
        "kernels the runtime would choose. The stand-in rows are the trained stand-in (docs/standin.md), whose "
        "figures say what quantization costs on trained weights; stand-in-random and the slices have random weights, "
        "which make logits flat and full of near-ties: KL and cosine are the figures to compare there, top-1 is "
        "noisy. At 20b the reference does not fit in memory: size and speed "
        "only.",
        "",
        "![fidelity against size](quality.png)",
        "",
        *product_markdown(report),
        "Commands (each run adds its rows to the report folder):",
        "",
        *[f"    {c}" for c in report.get("commands", [report.get("command", "")])],
    ]
    return "\n".join(lines) + "\n"


def product_markdown(report: dict[str, Any]) -> list[str]:
    rows = [r for r in report["results"] if "product" in r]
    if not rows:
        return []
    lines = [
        "## What users see: suggestions and explanations through `oss-edge lsp`",
        "",
        "Cursor positions cut from the stand-in's held-out modules (never seen in training), through a real "
        "`oss-edge lsp` session with default settings. Exact line: the suggestion's first line equals the true "
        "one; accepted: the share of the true code's characters the suggestion gets right from the start (longest "
        "common prefix); empty: no suggestion. The fp32 reference decodes the very prompts the daemon rendered "
        "(greedy, the same stops) with transformers in fp32, without the language server's clean-up; `as fp32` is "
        "the share of prompts whose first line (before clean-up) equals the reference's: what quantization changes "
        "in what users see, right or wrong.",
        "",
        "| model | preset | exact line | accepted chars | empty | as fp32 | " + " | ".join(product_kinds()) + " | "
        "explanations in the final channel | cut by clean-up |",
        "|---|---|---|---|---|---|" + "---|" * len(product_kinds()) + "---|---|",
    ]
    for r in rows:
        p = r["product"]
        main = p["product"]
        kinds = " | ".join(f"{p['by_kind'][k]['exact_line']:.3f}" if "by_kind" in p else "" for k in product_kinds())
        explain = p.get("explain") or {}
        shown = f"{explain['final_channel_share']:.2f} of {explain['functions']}" if explain else ""
        if "unforced_share" in explain:
            shown += f" ({explain['unforced_share']:.2f} unforced)"
        same = f"{p['same_as_fp32']:.3f}" if p.get("same_as_fp32") is not None else ""
        lines.append(
            f"| {r['shape']} | {r['variant']} | {main['exact_line']:.3f} | {main['accepted_chars']:.3f} | "
            f"{main['empty']:.3f} | {same} | {kinds} | {shown} | {p.get('cut_by_cleanup', '')} |"
        )
    lines += [
        "",
        "Exact line by cursor layout in the columns after `as fp32`. Explanations: `ossEdge.explainSelection` on "
        "held-out functions, sampled at the model's temperature (the daemon run with `--seed`, so the same ones each "
        "run); answered: the final channel holds an answer; unforced: the model closed its reasoning itself, "
        "before the daemon's cut at three quarters of the budget (docs/protocol.md, `analysis_max_tokens`).",
        "",
        *random_weights_markdown(rows),
        "![exact lines by preset](quality_product.png)",
        "",
        "The stand-in's training run (its `training.json`; how it is made: docs/standin.md):",
        "",
        "![the stand-in's loss over training](standin_training.png)",
        "",
    ]
    return lines


def random_weights_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Whether the benchmark tells the trained stand-in from the same shape with random weights."""
    by = {(r["shape"], r["variant"]): r["product"]["product"] for r in rows}
    variants = [v for s, v in by if s == STAND_IN_RANDOM and (STAND_IN, v) in by]
    pairs = [(v, by[(STAND_IN, v)], by[(STAND_IN_RANDOM, v)]) for v in variants]
    lines = []
    for variant, trained, random in pairs:
        figures = ", ".join(
            f"{name} {random[key]:.3f} against {trained[key]:.3f}"
            + (f" ({random[key] / trained[key]:.2f}×)" if trained[key] else "")
            for key, name in (("exact_line", "exact line"), ("accepted_chars", "accepted characters"))
        )
        lines += [f"Random weights against the trained stand-in, {variant}: {figures}.", ""]
    return lines


def product_kinds() -> list[str]:
    from oss_edge.bench.product import KINDS

    return list(KINDS)


def plot_training(training: dict[str, Any], report_dir: Path) -> None:
    """The stand-in's loss over its training run (from its training.json), training and held-out."""
    import matplotlib  # bench extra only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = training["history"]
    tokens = [h["tokens"] / 1e6 for h in history]
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(tokens, [h["train_loss"] for h in history], marker="o", label="training (last step)")
    axis.plot(tokens, [h["loss"] for h in history], marker="s", label="held-out modules")
    axis.plot(tokens, [h["answer_loss"] for h in history], marker="^", label="held-out, answers only")
    axis.set_xlabel("tokens seen (millions)")
    axis.set_ylabel("loss (nats per token)")
    axis.set_title(
        f"The stand-in: {training['parameters'] / 1e6:.1f}M parameters, {training['tokens_per_second']:.0f} tok/s "
        f"on {training['options']['threads']} threads"
    )
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(report_dir / "standin_training.png", dpi=120)
    plt.close(figure)


def plot_product(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # bench extra only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["results"] if "product" in r]
    labels = [f"{r['variant']}\n({r['shape']})" for r in rows]
    figure, axis = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4.5))
    x = range(len(rows))
    width = 0.38
    axis.bar(
        [i - width / 2 for i in x],
        [r["product"]["product"]["exact_line"] for r in rows],
        width,
        label="exact first line",
    )
    axis.bar(
        [i + width / 2 for i in x],
        [r["product"]["product"]["accepted_chars"] for r in rows],
        width,
        label="characters accepted",
    )
    axis.set_xticks(list(x), labels, fontsize=7)
    axis.set_ylabel("share (higher is better)")
    axis.set_title("Suggestions through oss-edge lsp at held-out cursor positions")
    axis.legend(fontsize=8)
    axis.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # bench extra only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_size, by_speed) = plt.subplots(1, 2, figsize=(11, 4.5))
    markers = {"slice:2": "o", "slice:4": "s"}
    variants = [*VARIANTS, "llama.cpp MXFP4_MOE"]
    colors = {v: plt.get_cmap("tab10")(i) for i, v in enumerate(variants)}
    for r in report["results"]:
        if "error" in r or "mean_kl" not in r:
            continue
        style = {"marker": markers.get(r["shape"], "^"), "color": colors.get(r["variant"], "black"), "s": 40}
        kl = max(r["mean_kl"], 1e-6)  # exact: 0, drawn at the bottom of the scale
        by_size.scatter(r["bytes"] / 1e9, kl, **style)
        if "decode_tokens_per_s" in r:
            by_speed.scatter(r["decode_tokens_per_s"], kl, **style)
    handles = [plt.Line2D([], [], color=colors[v], marker="o", linestyle="", label=v) for v in variants]
    handles += [
        plt.Line2D([], [], color="grey", marker=m, linestyle="", label=f"{shape} (gpt-oss-20b widths)")
        for shape, m in markers.items()
    ]
    by_size.legend(handles=handles, fontsize=7)
    for axis in (by_size, by_speed):
        axis.set_yscale("log")
        axis.set_ylabel("mean KL against transformers fp32 (lower is better)")
        axis.grid(True, alpha=0.3)
    by_size.set_xlabel("model folder size (GB)")
    by_speed.set_xlabel("decode tok/s, raw onnxruntime-genai loop (higher is better)")
    by_speed.set_title("exact: KL 0, drawn at 1e-6", fontsize=8)
    figure.suptitle("Export presets on synthetic gpt-oss slices: fidelity against size and speed")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
