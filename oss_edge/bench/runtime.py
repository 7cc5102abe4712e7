"""`oss-edge bench runtime`: the daemon measured over its socket, against the raw engine and the memory roofline.

For each synthetic shape and export preset (exported once and cached): machine read bandwidth, the bytes one decoded
token must read (active weights: everything but the embedding table, and top-k of the experts), then through a real
daemon: cold and warm time to first token on a long context, prefill and decode speed, cancel latency during decode
and during prefill, and resident memory; then the raw onnxruntime-genai loop on the same folder in this process.
Ratios are taken within one run on one machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.client import ChunkHandler, RuntimeClient, connect
from edge_runtime.engine import QMOE_KERNEL_ENV, folder_bytes, load_genai_model, open_model_folder, physical_cores
from oss_edge.bench.common import ensure_model, machine

REPEATS = 5


def measure_read_bandwidth(threads: int, gib: float = 1.0) -> float:
    """Bytes per second that `threads` threads read from memory (numpy reductions release the GIL)."""
    data = np.ones(int(gib * 2**30) // 4, dtype=np.float32)
    parts = np.array_split(data, threads)

    def once() -> float:
        workers = [threading.Thread(target=np.maximum.reduce, args=(part,)) for part in parts]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return time.perf_counter() - start

    return data.nbytes / min(once() for _ in range(REPEATS))


def active_bytes_per_token(model_dir: Path) -> dict[str, int]:
    """Weight bytes one decode step reads: all initializers but gathered tables, and only top-k/E of the experts."""
    import onnx

    graph = onnx.load(str(model_dir / "model.onnx"), load_external_data=False).graph
    sizes = {}
    for tensor in graph.initializer:
        length = next((int(e.value) for e in tensor.external_data if e.key == "length"), 0)
        sizes[tensor.name] = length or len(tensor.raw_data)
    gathered = {n.input[0] for n in graph.node if n.op_type in ("Gather", "GatherBlockQuantized")}
    gathered |= {n.input[2] for n in graph.node if n.op_type == "GatherBlockQuantized" and len(n.input) > 2}
    experts = {i for n in graph.node if n.op_type in ("QMoE", "MoE") for i in n.input[2:] if i in sizes}
    config = json.loads((model_dir / "manifest.json").read_text())["source"]["shape"]
    share = config["num_experts_per_tok"] / config["num_local_experts"]
    total = sum(sizes.values())
    expert_bytes = sum(sizes[i] for i in experts)
    gathered_bytes = sum(sizes[i] for i in gathered if i in sizes)
    return {
        "weights": total,
        "experts": expert_bytes,
        "gathered": gathered_bytes,
        "active": int(total - gathered_bytes - expert_bytes * (1 - share)),
        "layers": config["num_hidden_layers"],
    }


def long_prefix(tokens: int, encode: Any) -> str:
    """Real Python source (this package's own) cut to about `tokens` tokens."""
    sources = sorted(Path(__file__).parent.glob("*.py")) + sorted(
        (Path(__file__).parent.parent / "export").glob("*.py")
    )
    text = "\n".join(p.read_text() for p in sources)
    while len(encode(text)) < tokens:
        text += "\n" + text
    lines = text.split("\n")
    lo, hi = 1, len(lines)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(encode("\n".join(lines[:mid]))) < tokens:
            lo = mid + 1
        else:
            hi = mid
    return "\n".join(lines[:lo]) + "\n"


# Tokens the completion prompt adds around the code (system, developer, user turns): prompts of N tokens carry
# N - TEMPLATE_TOKENS tokens of code. The figures report the real prompt length.
TEMPLATE_TOKENS = 350


async def measure_daemon(
    model_dir: Path, context: int, decode_tokens: int, prefill_lengths: tuple[int, ...] = (), kernels: str = "auto"
) -> dict[str, Any]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))

    def encode(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False).ids)

    prefix = long_prefix(context - TEMPLATE_TOKENS, encode)
    saved = os.environ.get("OSS_EDGE_HOME")
    with tempfile.TemporaryDirectory(prefix="oss-edge-bench-") as home:
        os.environ["OSS_EDGE_HOME"] = home  # the daemon's socket and log live and die with this run
        socket = Path(home) / "b.sock"
        began = time.perf_counter()
        serve_args = ["--idle-exit", "60", "--kernels", kernels]
        client = await connect(socket, model_dir=model_dir, start=True, serve_args=serve_args)
        startup = time.perf_counter() - began
        try:
            figures = await _daemon_figures(client, prefix, decode_tokens)
            # the prompt's own tokens around the code, as measured on the first request: prefill prompts come out
            # at the lengths asked for
            template = figures["prompt_tokens"] - len(encode(prefix))
            prefixes = {n: long_prefix(max(16, n - template), encode) for n in prefill_lengths}
            figures["prefill"] = await _prefill_figures(client, prefixes)
            status = await client.call("status")
            figures["rss_bytes"] = status["memory"]["rss_bytes"]
            figures["rss_anon_bytes"] = status["memory"].get("rss_anon_bytes")
            figures["rss_file_bytes"] = status["memory"].get("rss_file_bytes")
            figures["context_limit"] = status["context_limit"]
            figures["kernels"] = status.get("kernels")
            figures["load_s"] = status.get("load_s")
            return {"startup_s": round(startup, 2), **figures}
        finally:
            await client.call("shutdown")
            await client.close()
            if saved is None:
                os.environ.pop("OSS_EDGE_HOME", None)
            else:
                os.environ["OSS_EDGE_HOME"] = saved


async def _daemon_figures(client: RuntimeClient, prefix: str, decode_tokens: int) -> dict[str, Any]:
    doc = {"path": "bench.py", "language": "python", "max_tokens": 1, "ignore_eos": True}
    cold = await client.call("complete", {**doc, "prefix": prefix})
    warm = []
    typed = prefix
    for key in "value = 1"[:REPEATS]:
        typed += key
        warm.append(await client.call("complete", {**doc, "prefix": typed}))
    decode = [await client.call("complete", {**doc, "prefix": typed, "max_tokens": decode_tokens}) for _ in range(3)]
    decode_cancel = []
    for _ in range(REPEATS):
        started = asyncio.Event()
        call = await client.start("complete", {**doc, "prefix": typed, "max_tokens": 4000}, on_chunk=_signal(started))
        await started.wait()
        sent = time.perf_counter()
        await client.cancel(call)
        await call.future
        decode_cancel.append((time.perf_counter() - sent) * 1000)
    prefill_cancel = []
    for attempt in range(REPEATS):
        # a different file each time: its whole prompt must be read again, chunk by chunk
        call = await client.start("complete", {**doc, "prefix": prefix, "path": f"cold{attempt}.py"})
        await asyncio.sleep(0.02)
        sent = time.perf_counter()
        await client.cancel(call)
        result = await call.future
        if result["finish_reason"] == "cancelled":
            prefill_cancel.append((time.perf_counter() - sent) * 1000)
    # a new file where the cursor rested first: the editor sent `warm`, then the user typed one key
    rest = {**doc, "path": "rested.py"}
    warmed = await client.call("complete", {**rest, "prefix": prefix, "warm": True})
    after_rest = await client.call("complete", {**rest, "prefix": prefix + "v"})
    status = await client.call("status")
    decode_rate = statistics.median(r["tokens_per_s"] for r in decode)
    return {
        "prompt_tokens": cold["prompt_tokens"],
        "ttft_cold_ms": cold["ttft_ms"],
        "prefill_tokens_per_s": round(cold["prompt_tokens"] / (cold["prefill_ms"] / 1000), 1),
        "ttft_warm_ms": statistics.median(r["ttft_ms"] for r in warm),
        "warm_reused_share": round(min(r["cached_tokens"] / r["prompt_tokens"] for r in warm), 4),
        "warming_ms": warmed["prefill_ms"],
        "ttft_after_rest_ms": after_rest["ttft_ms"],
        "after_rest_reused_share": round(after_rest["cached_tokens"] / after_rest["prompt_tokens"], 4),
        "decode_tokens_per_s": decode_rate,
        "decode_step_ms": round(1000 / decode_rate, 2),
        "cancel_decode_worst_ms": round(max(decode_cancel), 2),
        "cancel_prefill_worst_ms": round(max(prefill_cancel), 2) if prefill_cancel else None,
        "chunk_tokens": status["throughput"]["chunk_tokens"],
        "rss_bytes": status["memory"]["rss_bytes"],
    }


async def _prefill_figures(client: RuntimeClient, prefixes: dict[int, str]) -> dict[str, Any]:
    """Prefill speed at given prompt lengths: a file of its own each time, so only the shared instructions come
    from the cache; tokens per second over the tokens actually read."""
    figures = {}
    for length, prefix in prefixes.items():
        runs = []
        for attempt in range(2):
            doc = {"path": f"prefill{length}-{attempt}.py", "language": "python", "max_tokens": 1, "ignore_eos": True}
            result = await client.call("complete", {**doc, "prefix": prefix})
            runs.append(result)
        best = min(runs, key=lambda r: r["prefill_ms"] / max(1, r["prompt_tokens"] - r["cached_tokens"]))
        read = best["prompt_tokens"] - best["cached_tokens"]
        figures[str(length)] = {
            "prompt_tokens": best["prompt_tokens"],
            "tokens_read": read,
            "prefill_ms": best["prefill_ms"],
            "tokens_per_s": round(read / (best["prefill_ms"] / 1000), 1),
        }
    return figures


def _signal(event: asyncio.Event) -> ChunkHandler:
    def on_chunk(channel: str, text: str) -> None:
        event.set()

    return on_chunk


def measure_raw_engine(
    model_dir: Path, prompt_tokens: int, decode_tokens: int, threads: int, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The onnxruntime-genai loop with nothing around it: one append of the prompt, then generate_next_token."""
    import onnxruntime_genai as og

    model = load_genai_model(model_dir, threads=threads, env=env)  # the same kernels as the daemon
    rng = np.random.default_rng(0)
    prompt = rng.integers(100, 1000, prompt_tokens).astype(np.int32)
    prefill, decode = [], []
    for _ in range(3):
        params = og.GeneratorParams(model)
        length = prompt_tokens + decode_tokens + 1
        # min_length keeps an end-of-text token from finishing the run early (random weights emit them)
        params.set_search_options(max_length=length, min_length=length, do_sample=False)
        generator = og.Generator(model, params)
        start = time.perf_counter()
        generator.append_tokens(prompt)
        prefill.append(time.perf_counter() - start)
        generator.generate_next_token()
        start = time.perf_counter()
        for _ in range(decode_tokens):
            generator.generate_next_token()
        decode.append(time.perf_counter() - start)
        if generator.token_count() != length:
            raise RuntimeError(f"the raw loop stopped at {generator.token_count()} of {length} tokens")
        del generator
    return {
        "prefill_tokens_per_s": round(prompt_tokens / min(prefill), 1),
        "decode_tokens_per_s": round(decode_tokens / min(decode), 2),
    }


def run(
    shapes: list[str],
    report_dir: Path,
    cache: Path,
    context: int,
    decode_tokens: int,
    prefill_lengths: tuple[int, ...] = (512, 2048),
    kernels: tuple[str, ...] = ("auto",),
    qualities: tuple[str, ...] = ("fast",),
) -> dict[str, Any]:
    report_dir.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    threads = physical_cores()
    # The machine's read bandwidth wanders on a shared host: sample it around every shape and keep the best.
    bandwidth = [measure_read_bandwidth(threads)]
    results = []
    for shape in shapes:
        for quality in qualities:
            model_dir = ensure_model(shape, cache, quality)
            folder = open_model_folder(model_dir)
            for mode in kernels:
                results.append(_measure_row(shape, quality, mode, model_dir, context, decode_tokens, prefill_lengths))
                results[-1]["layers"] = folder.layers
                bandwidth.append(measure_read_bandwidth(threads))
    peak = max(bandwidth)
    for result in results:
        result["roofline_tokens_per_s"] = round(peak / result["bytes"]["active"], 1)
        result["decode_vs_roofline"] = round(
            result["daemon"]["decode_tokens_per_s"] / result["roofline_tokens_per_s"], 3
        )
        result["raw_vs_roofline"] = round(result["raw"]["decode_tokens_per_s"] / result["roofline_tokens_per_s"], 3)
    report = {
        "benchmark": "runtime",
        "machine": {
            **machine(),
            "read_bandwidth_bytes_per_s": round(peak),
            "read_bandwidth_samples": [round(b) for b in bandwidth],
            "threads": threads,
        },
        "context_tokens": context,
        "decode_tokens": decode_tokens,
        "results": results,
        "extrapolated_24_layers": extrapolate(results, 24),
        "prefill_lengths": list(prefill_lengths),
        "command": f"oss-edge bench runtime {' '.join('--shape ' + s for s in shapes)} --context {context} "
        + " ".join(f"--prefill {n}" for n in prefill_lengths)
        + "".join(f" --kernels {k}" for k in kernels if k != "auto")
        + "".join(f" --quality {q}" for q in qualities if qualities != ("fast",)),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (report_dir / "runtime.json").write_text(json.dumps(report, indent=2) + "\n")
    (report_dir / "runtime.md").write_text(markdown(report))
    plot(report, report_dir / "runtime.png")
    return report


def _measure_row(
    shape: str,
    quality: str,
    mode: str,
    model_dir: Path,
    context: int,
    decode_tokens: int,
    prefill_lengths: tuple[int, ...],
) -> dict[str, Any]:
    """One shape, preset and kernel mode: through the daemon, then the raw engine on the same prompt."""
    label = f"{shape} {quality} ({mode} kernels)"
    print(f"measuring {label}: daemon", file=sys.stderr)
    daemon = asyncio.run(measure_daemon(model_dir, context, decode_tokens, prefill_lengths, mode))
    print(f"measuring {label}: raw engine", file=sys.stderr)
    env = {QMOE_KERNEL_ENV: "fp32"} if daemon.get("kernels") == "compact" else {}
    raw = measure_raw_engine(model_dir, daemon["prompt_tokens"], decode_tokens, physical_cores(), env)
    return {
        "shape": shape,
        "quality": quality,
        "kernels": daemon.get("kernels") or mode,
        "full_width": shape == "20b" or shape.startswith("slice:"),
        "model_bytes": folder_bytes(model_dir),
        "bytes": active_bytes_per_token(model_dir),
        "daemon": daemon,
        "raw": raw,
        "decode_vs_raw": round(daemon["decode_tokens_per_s"] / raw["decode_tokens_per_s"], 3),
        "prefill_vs_raw": round(daemon["prefill_tokens_per_s"] / raw["prefill_tokens_per_s"], 3),
        "warm_ttft_vs_decode_step": round(daemon["ttft_warm_ms"] / daemon["decode_step_ms"], 2),
    }


def extrapolate(results: list[dict[str, Any]], layers: int) -> dict[str, Any] | None:
    """Per-token time and bytes are linear in the layer count: fit full-width slices, read off the real depth."""
    first = _variant(results[0]) if results else None
    wide = [r for r in results if r["shape"].startswith("slice:") and _variant(r) == first]
    if any(r["shape"] == "20b" for r in results):
        return None  # measured at the real depth: nothing to extrapolate
    if len({r["layers"] for r in wide}) < 2:
        return None
    x = np.array([r["layers"] for r in wide], dtype=float)

    def at(values: list[float]) -> float:
        slope, intercept = np.polyfit(x, np.array(values), 1)
        return float(slope * layers + intercept)

    step_ms = at([r["daemon"]["decode_step_ms"] for r in wide])
    raw_ms = at([1000 / r["raw"]["decode_tokens_per_s"] for r in wide])
    active = at([r["bytes"]["active"] for r in wide])
    prefill_ms = at([1000 / r["daemon"]["prefill_tokens_per_s"] for r in wide])
    bandwidth = wide[0]["roofline_tokens_per_s"] * wide[0]["bytes"]["active"]
    return {
        "layers": layers,
        "decode_tokens_per_s": round(1000 / step_ms, 2),
        "raw_decode_tokens_per_s": round(1000 / raw_ms, 2),
        "roofline_tokens_per_s": round(bandwidth / active, 2),
        "prefill_tokens_per_s": round(1000 / prefill_ms, 1),
        "rss_bytes": int(at([r["daemon"]["rss_bytes"] for r in wide])),
    }


def _after_rest(daemon: dict[str, Any]) -> str:
    """The first keystroke's latency at a new spot once `warm` read it in the background (reports from before
    warming existed have none)."""
    if daemon.get("ttft_after_rest_ms") is None:
        return "n/a"
    return f"{daemon['ttft_after_rest_ms']:.1f} ms (warming {daemon['warming_ms'] / 1000:.1f} s)"


def _variant(result: dict[str, Any]) -> tuple[str, str]:
    """What besides the shape tells two rows apart: the export preset and the expert kernels."""
    return result.get("quality", "fast"), result.get("kernels", "auto")


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lengths = [str(n) for n in report.get("prefill_lengths", [])]
    prefill_head = "".join(f" prefill {n} tok/s |" for n in lengths)
    lines = [
        f"Runtime benchmark: {m['cpu_count']} CPUs ({m['threads']} threads), {m['memory_bytes'] / 2**30:.0f} GiB, "
        f"read bandwidth {m['read_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s (best of "
        f"{', '.join(f'{b / 1e9:.0f}' for b in m['read_bandwidth_samples'])}), "
        f"context {report['context_tokens']} tokens",
        "",
        "| shape | on disk | load | decode tok/s (daemon / raw / roofline) | daemon ÷ raw | ÷ roofline |"
        + prefill_head
        + " TTFT cold | TTFT warm (1 key) | first key after the cursor rested | warm ÷ decode step |"
        " cancel worst (decode / prefill) | RSS (context) |",
        "|---|---|---|---|---|---|" + "---|" * len(lengths) + "---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        d, raw = r["daemon"], r["raw"]
        cancel_prefill = f"{d['cancel_prefill_worst_ms']:.0f} ms" if d["cancel_prefill_worst_ms"] else "n/a"
        prefill = "".join(
            f" {d['prefill'][n]['tokens_per_s']:.0f} ({d['prefill'][n]['prompt_tokens']}) |" for n in lengths
        )
        lines.append(
            f"| {r['shape']} {r.get('quality', 'fast')} ({r.get('kernels', 'auto')} kernels) | "
            f"{r.get('model_bytes', 0) / 1e9:.2f} GB | "
            f"{d.get('load_s') or d['startup_s']:.1f} s | "
            f"{d['decode_tokens_per_s']:.1f} / {raw['decode_tokens_per_s']:.1f} / "
            f"{r['roofline_tokens_per_s']:.1f} | {r['decode_vs_raw']:.2f} | {r['decode_vs_roofline']:.2f} |"
            + prefill
            + f" {d['ttft_cold_ms']:.0f} ms | {d['ttft_warm_ms']:.1f} ms | {_after_rest(d)} |"
            f" {r['warm_ttft_vs_decode_step']:.2f} | "
            f"{d['cancel_decode_worst_ms']:.1f} ms / {cancel_prefill} | {d['rss_bytes'] / 1e9:.2f} GB "
            f"({_split(d)}{d.get('context_limit', '?')} tokens) |"
        )
    x = report.get("extrapolated_24_layers")
    if x:
        lines += [
            "",
            f"Extrapolated to {x['layers']} layers (gpt-oss-20b depth, linear fit over the full-width slices): "
            f"decode {x['decode_tokens_per_s']:.1f} tok/s (raw engine {x['raw_decode_tokens_per_s']:.1f}, roofline "
            f"{x['roofline_tokens_per_s']:.1f}), prefill {x['prefill_tokens_per_s']:.0f} tok/s, "
            f"RSS {x['rss_bytes'] / 1e9:.1f} GB.",
        ]
    lines += [
        "",
        "Prefill columns: a new file's prompt of that many tokens (the real length in brackets); the instructions "
        "every prompt shares come from the cache, the rest is read at the tokens per second shown. RSS is the "
        "daemon's resident memory with its KV cache sized for the context limit in brackets (anonymous + "
        "file-backed). Load: the daemon loading the model, packing included. First key after the cursor rested: a "
        "new file whose prompt the editor had the daemon read in the background (`warm`, taking the time in "
        "brackets) while the cursor rested, then one key typed.",
        "",
        "![decode and prefill against depth](runtime.png)",
        "",
        "Command:",
        "",
        f"    {report['command']}",
    ]
    return "\n".join(lines) + "\n"


def _split(d: dict[str, Any]) -> str:
    if d.get("rss_anon_bytes") is None:
        return ""
    return f"{d['rss_anon_bytes'] / 1e9:.1f} anon + {d['rss_file_bytes'] / 1e9:.1f} file; "


def plot(report: dict[str, Any], path: Path) -> None:
    """Decode and prefill speed against model depth (full-width shapes), and time to first token per shape."""
    import matplotlib  # bench extra only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    first = _variant(results[0]) if results else ("fast", "auto")
    wide = sorted((r for r in results if r.get("full_width") and _variant(r) == first), key=lambda r: r["layers"])
    figure, (speed, prefill, latency) = plt.subplots(1, 3, figsize=(16, 4.5))

    def name(r: dict[str, Any]) -> str:
        differs = [v for v, f in zip(_variant(r), first, strict=True) if v != f]
        return r["shape"] + "".join(f"\n{v}" for v in differs)

    lengths = report.get("prefill_lengths", [])
    if len({r["layers"] for r in wide}) >= 2:  # speed against depth, for one preset and kernel mode
        _plot_against_depth(speed, prefill, wide, lengths, f"{first[0]} export, {first[1]}")
    elif results:  # one depth: each measured row side by side (presets, kernel modes)
        _plot_side_by_side(speed, prefill, results, lengths, [name(r) for r in results])
    names = [name(r) for r in results]
    x = np.arange(len(names))
    for offset, label, values in (
        (-0.2, "first token, cold cache", [r["daemon"]["ttft_cold_ms"] for r in results]),
        (0.2, "first token after one keystroke", [r["daemon"]["ttft_warm_ms"] for r in results]),
    ):
        latency.bar(x + offset, values, width=0.4, label=label)
    latency.set_xticks(x, names)
    latency.set_yscale("log")
    latency.set_ylabel(f"milliseconds on a {report['context_tokens']}-token context (log)")
    latency.set_title("Time to first token")
    latency.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _speed_series(rows: list[dict[str, Any]]) -> tuple[tuple[str, list[float]], ...]:
    return (
        ("roofline (memory bandwidth)", [r["roofline_tokens_per_s"] for r in rows]),
        ("raw onnxruntime-genai", [r["raw"]["decode_tokens_per_s"] for r in rows]),
        ("oss-edge daemon", [r["daemon"]["decode_tokens_per_s"] for r in rows]),
    )


def _plot_against_depth(speed: Any, prefill: Any, wide: list[dict[str, Any]], lengths: list[int], mode: str) -> None:
    depth = [r["layers"] for r in wide]
    for (label, values), style in zip(_speed_series(wide), ("k--", "s-", "o-"), strict=True):
        speed.plot(depth, values, style, label=label)
    for length in lengths:
        values = [r["daemon"]["prefill"][str(length)]["tokens_per_s"] for r in wide]
        prefill.plot(depth, values, "o-", label=f"{length}-token prompt")
    for axis, title in ((speed, f"Decode ({mode} kernels)"), (prefill, f"Prefill, a new file ({mode} kernels)")):
        axis.set_xlabel("layers (gpt-oss-20b widths; 24 = the full model)")
        axis.set_ylabel("tokens per second (log)")
        axis.set_yscale("log")
        axis.set_xticks(depth)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)


def _plot_side_by_side(
    speed: Any, prefill: Any, results: list[dict[str, Any]], lengths: list[int], names: list[str]
) -> None:
    x = np.arange(len(results))
    series = _speed_series(results)
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        speed.bar(x + (i - (len(series) - 1) / 2) * width, values, width=width, label=label)
    width = 0.8 / max(len(lengths), 1)
    for i, length in enumerate(lengths):
        values = [r["daemon"]["prefill"][str(length)]["tokens_per_s"] for r in results]
        prefill.bar(x + (i - (len(lengths) - 1) / 2) * width, values, width=width, label=f"{length}-token prompt")
    for axis, title in ((speed, "Decode"), (prefill, "Prefill, a new file")):
        axis.set_xticks(x, names)
        axis.set_ylabel("tokens per second")
        axis.set_title(title)
        axis.grid(True, axis="y", alpha=0.3)
        axis.legend(fontsize=8)
