"""Check an exported model folder: structure, graph operators per provider, tokenizer, a real run, parity.

The cheap checks (everything but parity) need only onnx and onnxruntime-genai; parity runs the source
checkpoint through transformers in fp32 and compares logits on a fixed prompt set.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edge_runtime.engine import choose_kernels, load_genai_model, weight_bytes
from edge_runtime.harmony import SPECIAL_TOKENS
from export.checkpoint import file_digest
from export.errors import ExportError, VerificationError

REQUIRED_FILES = ("genai_config.json", "model.onnx", "tokenizer.json", "tokenizer_config.json")
HARMONY_SAMPLE = (
    "<|start|>system<|message|>Reasoning: low<|end|><|start|>user<|message|>Explain `x += 1` in Python.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>It adds one to x.<|return|>"
)
PARITY_PROMPTS = (
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "import os\nfor root, dirs, files in os.walk('.'):\n    for name in files:\n        print(os.path.join(",
    "<|start|>user<|message|>What does `git rebase` do?<|end|><|start|>assistant<|channel|>final<|message|>",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n        self.",
    "SELECT name, COUNT(*) FROM users GROUP BY",
    'fn main() {\n    let v: Vec<i32> = (0..10).map(|x| x * x).collect();\n    println!("{:?}", ',
)
PARITY_STEPS = 8
# fp32 must equal the reference. The quantized thresholds only catch a broken export, they do not judge its
# quality (the figures are reported; docs/export.md lists them): int4 everywhere gave mean cosine 0.92 (tiny),
# 0.84 (tiny-120b), 0.67 (slice:2) and 0.41 (slice:4: random weights compound the error layer after layer); a
# model with other weights gives about 0. Random weights give flat logits full of near-ties, so top-1 is
# reported but not judged; KL only bounds gross failures (0.38 on slice:2, 0.68 on slice:4).
FP32_MAX_ABS_DIFF = 1e-4
# How the reference logits are computed (part of their cache key): see load_reference.
REFERENCE_METHOD = "transformers fp32, eager experts widened from bf16 one at a time"
INT4_MAX_MEAN_KL = 1.0
INT4_MIN_MEAN_COSINE = 0.25
ORT_OPS_IN_ONNX_DOMAIN = {"SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"}
# Operators each provider's graph must hold: the fused MoE kernels exist for CPU and CUDA only.
PROVIDER_OPS = {
    "cpu": {"required": {"GroupQueryAttention"}, "one_of": {"QMoE", "MoE"}, "forbidden": set()},
    "cuda": {"required": {"GroupQueryAttention"}, "one_of": {"QMoE", "MoE"}, "forbidden": set()},
    "dml": {
        "required": {"GroupQueryAttention", "TopK", "Gather"},
        "one_of": {"MatMulNBits", "MatMul"},
        "forbidden": {"QMoE", "MoE"},
    },
}


def _checkable_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime registers a few contrib ops in the ONNX domain, where the checker has no schema for them."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type in ORT_OPS_IN_ONNX_DOMAIN:
            node.domain = "com.microsoft"
    # External weights are checked for presence separately; the checker sees them as typed graph inputs.
    external = [i for i in copy.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
    for init in external:
        copy.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    kept = [i for i in copy.graph.initializer if i.data_location != onnx.TensorProto.EXTERNAL]
    del copy.graph.initializer[:]
    copy.graph.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in copy.opset_import):
        copy.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return copy


def graph_ops(model_path: Path) -> Counter[str]:
    return _op_counts(onnx.load(str(model_path), load_external_data=False))


def _op_counts(model: onnx.ModelProto) -> Counter[str]:
    return Counter(node.op_type for node in model.graph.node)


def check_structure(model_dir: Path) -> dict[str, Any]:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise VerificationError(f"{model_dir} is not a folder")
    missing = [f for f in REQUIRED_FILES if not (model_dir / f).exists()]
    if missing:
        raise VerificationError(f"{model_dir} is not a model folder: missing {', '.join(missing)}")
    try:
        genai = json.loads((model_dir / "genai_config.json").read_text())
        decoder = genai["model"]["decoder"]
    except (ValueError, KeyError) as exc:
        raise VerificationError(f"genai_config.json in {model_dir} is damaged: {exc}") from exc
    model_path = model_dir / decoder.get("filename", "model.onnx")
    model = onnx.load(str(model_path), load_external_data=False)
    try:
        onnx.checker.check_model(_checkable_copy(model))
    except Exception as exc:  # the checker raises several unrelated types
        raise VerificationError(f"{model_path.name} fails the ONNX checker: {exc}") from exc
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location" and not (model_dir / entry.value).exists():
                raise VerificationError(f"{model_path.name} refers to missing weight file {entry.value}")
    inputs = {i.name: i for i in model.graph.input}
    outputs = {o.name: o for o in model.graph.output}
    layers = sum(1 for name in inputs if name.startswith("past_key_values.") and name.endswith(".key"))
    problems = []
    if layers != decoder["num_hidden_layers"]:
        problems.append(f"graph has {layers} layers of KV cache, config says {decoder['num_hidden_layers']}")
    key_shape = [d.dim_value or d.dim_param for d in inputs["past_key_values.0.key"].type.tensor_type.shape.dim]
    expected = {1: decoder["num_key_value_heads"], 3: decoder["head_size"]}
    if any(isinstance(key_shape[axis], int) and key_shape[axis] != value for axis, value in expected.items()):
        problems.append(f"KV cache shape {key_shape} disagrees with kv heads/head size in the config")
    vocab = outputs["logits"].type.tensor_type.shape.dim[-1].dim_value
    if vocab != genai["model"]["vocab_size"]:
        problems.append(f"logits have {vocab} entries, config vocab_size is {genai['model']['vocab_size']}")
    eos = genai["model"]["eos_token_id"]
    eos_ids = eos if isinstance(eos, list) else [eos]
    if any(not 0 <= e < vocab for e in eos_ids):
        problems.append(f"eos ids {eos_ids} fall outside the vocabulary")
    if problems:
        raise VerificationError("genai_config.json disagrees with the graph: " + "; ".join(problems))
    ops = _op_counts(model)
    return {
        "layers": layers,
        "vocab_size": vocab,
        "context_length": genai["model"]["context_length"],
        "ops": dict(sorted(ops.items())),
    }


def check_provider_ops(ops: dict[str, int], provider: str) -> dict[str, Any]:
    rule = PROVIDER_OPS[provider]
    present = set(ops)
    missing = sorted(rule["required"] - present)
    if not rule["one_of"] & present:
        missing.append(" or ".join(sorted(rule["one_of"])))
    forbidden = sorted(rule["forbidden"] & present)
    if missing or forbidden:
        raise VerificationError(
            f"graph built for {provider} lacks {missing or 'nothing'} and holds unsupported {forbidden or 'nothing'}"
        )
    return {"provider": provider, "ok": True}


def parity_label(precision: str, experts: str | None) -> str:
    """What parity thresholds apply to: exact at fp32, also with exact int8 experts (run as fp32, see runtime_env)."""
    return f"{precision}+int8-experts" if experts == "int8" else precision


def runtime_env(precision: str, experts: str | None) -> dict[str, str]:
    """Environment the model must run under. onnxruntime's CPU QMoE multiplies int8 experts with int8-quantized
    activations unless told otherwise: exact int8 experts next to fp32 weights ask for its fp32 path."""
    return {"ORT_QMOE_CPU_QNBIT_GEMM": "fp32"} if (precision, experts) == ("fp32", "int8") else {}


def load_model(model_dir: Path, threads: int = 0, provider: str = "cpu", env: dict[str, str] | None = None) -> Any:
    return load_genai_model(model_dir, provider=provider, threads=threads, env=env)


def open_tokenizer(model_dir: Path) -> Any:
    import onnxruntime_genai as og

    return og.Tokenizer(og.Config(str(model_dir)))


def check_tokenizer(model_dir: Path) -> dict[str, Any]:
    tokenizer = open_tokenizer(model_dir)
    # Decoding drops special tokens by default; the harmony parser needs them.
    tokenizer.update_options(skip_special_tokens="false")
    ids = list(tokenizer.encode(HARMONY_SAMPLE))
    singles = {}
    for token in SPECIAL_TOKENS:
        token_ids = list(tokenizer.encode(token))
        if len(token_ids) != 1:
            raise VerificationError(f"tokenizer splits special token {token} into {token_ids}")
        singles[token] = int(token_ids[0])
        if token in HARMONY_SAMPLE and token_ids[0] not in ids:
            raise VerificationError(f"special token {token} is not kept whole in harmony text")
    decoded = tokenizer.decode(np.array(ids, dtype=np.int32))
    if decoded != HARMONY_SAMPLE:
        raise VerificationError("tokenizer round trip changed the harmony text (decode(encode(x)) != x)")
    return {"tokens": len(ids), "special_ids": singles, "round_trip": True}


class Session:
    """A fresh generator per prompt, fed by appending tokens and reading the last position's logits."""

    def __init__(self, model: Any, max_length: int) -> None:
        self.model = model
        self.max_length = max_length

    def logits_stream(self, prompt: list[int]) -> tuple[Any, np.ndarray]:
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=self.max_length, do_sample=False)
        generator = og.Generator(self.model, params)
        generator.append_tokens(np.array(prompt, dtype=np.int32))
        return generator, np.asarray(generator.get_logits(), dtype=np.float64).reshape(-1)

    @staticmethod
    def step(generator: Any, token: int) -> np.ndarray:
        generator.append_tokens(np.array([token], dtype=np.int32))
        return np.asarray(generator.get_logits(), dtype=np.float64).reshape(-1)


def smoke_run(model: Any, tokenizer_ids: list[int], steps: int = 4) -> dict[str, Any]:
    start = time.perf_counter()
    generated = greedy(model, tokenizer_ids, steps)
    return {
        "prompt_tokens": len(tokenizer_ids),
        "generated": generated,
        "seconds": round(time.perf_counter() - start, 4),
    }


def greedy(model: Any, ids: list[int], steps: int) -> list[int]:
    """Free-running greedy continuation; non-finite logits fail verification."""
    session = Session(model, len(ids) + steps + 8)
    generator, logits = session.logits_stream(ids)
    out = []
    for _ in range(steps):
        if not np.all(np.isfinite(logits)):
            raise VerificationError("the model produced non-finite logits")
        token = int(np.argmax(logits))
        out.append(token)
        logits = Session.step(generator, token)
    return out


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max()
    return shifted - math.log(np.exp(shifted).sum())


def reference_cache_dir() -> Path:
    from edge_runtime.paths import cache_dir

    return cache_dir() / "reference"


def _reference_key(reference: Path, prompts: list[list[int]], vocab: int) -> str:
    """What the reference logits depend on: the checkpoint's files (name, size, mtime), the prompts, the versions."""
    import hashlib

    import torch
    import transformers

    root = reference.resolve()
    files = sorted(
        (str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns) for f in root.rglob("*") if f.is_file()
    )
    versions = [torch.__version__, transformers.__version__]
    key = [REFERENCE_METHOD, str(root), files, prompts, vocab, PARITY_STEPS, *versions]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32]


def parity_inputs(model_dir: Path) -> tuple[list[list[int]], int]:
    """The parity prompts in the export's tokens, and its vocabulary size (the reference's logits are cut to it)."""
    vocab = json.loads((Path(model_dir) / "genai_config.json").read_text())["model"]["vocab_size"]
    return parity_prompts(model_dir), int(vocab)


def _reference_cache_file(reference: Path, prompts: list[list[int]], vocab: int) -> Path:
    return reference_cache_dir() / f"{_reference_key(reference, prompts, vocab)}.npz"


def reference_cache_file(reference: Path, model_dir: Path) -> Path:
    """Where the reference logits for comparing model_dir with reference are (or will be) cached."""
    return _reference_cache_file(reference, *parity_inputs(model_dir))


def reference_runs(reference: Path, model_dir: Path) -> list[tuple[list[int], np.ndarray]]:
    """The reference's side of parity: for each prompt, the prompt with transformers' (fp32) greedy tokens appended
    and the last-token logits at each of the PARITY_STEPS + 1 positions.

    Computed before the export is loaded and then freed, so the two models never share memory; cached under
    reference_cache_dir(), since every export of one checkpoint is compared with the same logits.
    """
    prompts, vocab = parity_inputs(model_dir)
    cache = _reference_cache_file(reference, prompts, vocab)
    if cache.exists():
        try:
            with np.load(cache) as saved:
                return [(saved[f"tokens{i}"].tolist(), saved[f"logits{i}"]) for i in range(len(prompts))]
        except (OSError, ValueError, KeyError):
            cache.unlink(missing_ok=True)  # damaged: compute again
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    ref_model = load_reference(reference)
    runs = []
    for ids in prompts:
        tokens, logits = list(ids), []
        for _ in range(PARITY_STEPS + 1):
            with torch.no_grad():
                logits.append(ref_model(torch.tensor([tokens])).logits[0, -1, :vocab].numpy().copy())
            tokens.append(int(np.argmax(logits[-1])))
        runs.append((tokens, np.stack(logits)))
    del ref_model
    import gc

    from export.streaming import return_freed_memory

    gc.collect()
    return_freed_memory()
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(cache.name + ".partial.npz")
    arrays: dict[str, np.ndarray] = {f"tokens{i}": np.array(t, dtype=np.int64) for i, (t, _) in enumerate(runs)}
    arrays.update({f"logits{i}": lg for i, (_, lg) in enumerate(runs)})
    np.savez(partial, allow_pickle=False, **arrays)
    os.replace(partial, cache)
    return runs


class _ExpertsInFp32:
    """Stands for a stacked expert weight [E, ...] held in bf16: indexing one expert gives it in fp32, which is all
    transformers' gpt-oss expert loop asks of it. The experts are ~90% of the weights; in fp32 all at once a
    full-width reference would not fit beside anything else."""

    def __init__(self, stacked: Any) -> None:
        self.stacked = stacked

    def __getitem__(self, index: Any) -> Any:
        return self.stacked[index].float()


def load_reference(reference: Path) -> Any:
    """The checkpoint in transformers, computing in fp32.

    Checkpoints whose weights are all bf16 or MXFP4 (the official release and its fine-tunes) load in bf16, which
    holds each of their values exactly; every weight but the stacked experts is then widened to fp32, and the
    experts are widened one expert at a time as the forward pass uses them. The logits are those of the fp32 model.
    Other checkpoints load in fp32 as they are.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from export.checkpoint import open_checkpoint

    dtypes = {info.dtype for info in open_checkpoint(reference).tensors.values()}
    if not dtypes <= {"BF16", "U8"}:
        model = AutoModelForCausalLM.from_pretrained(str(reference), dtype=torch.float32)
        return model.eval()
    # the eager expert loop indexes one expert at a time (the grouped kernels take the stacked weights whole)
    model = AutoModelForCausalLM.from_pretrained(str(reference), dtype=torch.bfloat16, experts_implementation="eager")
    for module in model.modules():
        if type(module).__name__ == "GptOssExperts":
            for name in ("gate_up_proj", "down_proj"):
                stacked = getattr(module, name).detach()
                delattr(module, name)
                setattr(module, name, _ExpertsInFp32(stacked))
    return model.float().eval()


def parity_prompts(model_dir: Path) -> list[list[int]]:
    tokenizer = open_tokenizer(model_dir)
    return [[int(t) for t in tokenizer.encode(prompt)] for prompt in PARITY_PROMPTS]


def parity(
    model: Any,
    runs: list[tuple[list[int], np.ndarray]],
    precision: str,
    on_prompt: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Compare last-token logits with the reference runs, teacher-forcing the reference's greedy tokens."""
    max_diff, kls, cosines = 0.0, [], []
    top1 = identical = total = 0
    for index, (tokens, ref_logits) in enumerate(runs):
        prompt_length = len(tokens) - PARITY_STEPS - 1
        ids = tokens[:prompt_length]
        session = Session(model, len(tokens) + 8)
        generator, ort_logits = session.logits_stream(ids)
        for position in range(PARITY_STEPS + 1):
            ref = ref_logits[position].astype(np.float64)
            max_diff = max(max_diff, float(np.abs(ref - ort_logits).max()))
            ref_lp, ort_lp = _log_softmax(ref), _log_softmax(ort_logits)
            kls.append(float(np.sum(np.exp(ref_lp) * (ref_lp - ort_lp))))
            cosines.append(float(ref @ ort_logits / (np.linalg.norm(ref) * np.linalg.norm(ort_logits))))
            top1 += int(np.argmax(ref) == np.argmax(ort_logits))
            total += 1
            if position < PARITY_STEPS:
                ort_logits = Session.step(generator, tokens[prompt_length + position])
        # Free-running greedy agreement: would the export pick the same continuation on its own?
        identical += int(greedy(model, ids, PARITY_STEPS) == tokens[prompt_length : prompt_length + PARITY_STEPS])
        if on_prompt:
            on_prompt(index + 1, len(runs))
    mean_kl, mean_cosine = float(np.mean(kls)), float(np.mean(cosines))
    result: dict[str, Any] = {
        "prompts": len(runs),
        "positions": total,
        "max_abs_logit_diff": max_diff,
        "top1_agreement": top1 / total,
        "mean_kl": mean_kl,
        "mean_cosine": mean_cosine,
        "greedy_sequences_identical": identical,
        "precision": precision,
    }
    if precision.startswith("fp32"):
        result["thresholds"] = {
            "max_abs_logit_diff": FP32_MAX_ABS_DIFF,
            "greedy_sequences_identical": len(PARITY_PROMPTS),
        }
        result["passed"] = max_diff <= FP32_MAX_ABS_DIFF and identical == len(PARITY_PROMPTS)
    else:
        result["thresholds"] = {"mean_kl": INT4_MAX_MEAN_KL, "mean_cosine": INT4_MIN_MEAN_COSINE}
        result["passed"] = mean_kl <= INT4_MAX_MEAN_KL and mean_cosine >= INT4_MIN_MEAN_COSINE
    return result


def cheap_checks(model_dir: Path, provider: str, model: Any | None) -> dict[str, Any]:
    """Everything but parity. The model is run only when it was built for this machine (and so loaded: model)."""
    report: dict[str, Any] = {"structure": check_structure(model_dir)}
    report["provider_ops"] = check_provider_ops(report["structure"]["ops"], provider)
    report["tokenizer"] = check_tokenizer(model_dir)
    if model is not None:
        ids = [int(t) for t in open_tokenizer(model_dir).encode(PARITY_PROMPTS[0])]
        report["smoke_run"] = smoke_run(model, ids)
    else:
        report["run"] = f"not run: built for {provider}, which this machine cannot execute"
    return report


def check_hashes(model_dir: Path, manifest: dict[str, Any]) -> str:
    listed = manifest.get("files", [])
    for entry in listed:
        path = model_dir / entry["name"]
        if not path.exists():
            raise VerificationError(f"{entry['name']} is listed in manifest.json but missing")
        if path.stat().st_size != entry["size"] or file_digest(path, model_dir)["sha256"] != entry["sha256"]:
            raise VerificationError(f"{entry['name']} differs from manifest.json: the file was changed or damaged")
    return f"{len(listed)} files match manifest.json"


def run_checks(
    model_dir: Path, provider: str, env: dict[str, str] | None, reference: Path | None, label: str
) -> dict[str, Any]:
    """Load the model as the runtime does (when it was built for this machine), run it, compare with reference."""
    kernels = None
    if provider == "cpu":
        kernels, env = choose_kernels(
            "auto", weight_bytes(model_dir), 0, env
        )  # the runtime's choice, for a short context
    runs = None
    if reference is not None and provider == "cpu":
        runs = reference_runs(reference, model_dir)  # before the export takes memory
    model = load_model(model_dir, env=env) if provider == "cpu" else None
    report = cheap_checks(model_dir, provider, model)
    if kernels:
        report["kernels"] = kernels
    if runs is not None and model is not None:
        report["parity"] = parity(model, runs, label)
    return report


def run_checks_in_child(
    model_dir: Path, provider: str, env: dict[str, str] | None, reference: Path | None, label: str, log: Any
) -> dict[str, Any]:
    """run_checks in a process of its own, so that the model's memory is never added to the conversion's.

    The report gains `peak_rss_bytes`, the child's own peak. Its output goes to log. A failure comes back as
    VerificationError (what the check said) or ExportError (the child died).
    """
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="oss-edge-verify-") as tmp:
        request, answer = Path(tmp) / "request.json", Path(tmp) / "report.json"
        request.write_text(
            json.dumps(
                {
                    "model_dir": str(model_dir),
                    "provider": provider,
                    "env": env or {},
                    "reference": str(reference) if reference else None,
                    "label": label,
                }
            )
        )
        child = subprocess.Popen(
            [sys.executable, "-m", "export.verify", str(request), str(answer)], stdout=log, stderr=log
        )
        try:
            code = child.wait()
        except BaseException:
            child.kill()
            child.wait()
            raise
        if not answer.exists():
            raise ExportError(f"the verification run died (exit status {code}); its output is in the export log")
        report = json.loads(answer.read_text())
    if "error" in report:
        raise VerificationError(report["error"])
    return dict(report)


def _peak_rss() -> int:
    """This process's own high-water mark (VmHWM: reset by exec, unlike ru_maxrss, which a child inherits)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child_main(request_path: str, answer_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    try:
        report = run_checks(
            Path(request["model_dir"]),
            request["provider"],
            request["env"],
            Path(request["reference"]) if request["reference"] else None,
            request["label"],
        )
    except VerificationError as exc:
        report = {"error": str(exc)}
    report["peak_rss_bytes"] = _peak_rss()
    Path(answer_path).write_text(json.dumps(report))
    return 0


def verify_folder(model_dir: Path, reference: Path | None = None, hashes: bool = True) -> dict[str, Any]:
    """The full report `oss-edge verify` prints. Raises VerificationError on a structural failure."""
    model_dir = Path(model_dir)
    manifest_path = model_dir / "manifest.json"
    manifest: dict[str, Any] = {}
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError as exc:
            raise VerificationError(f"manifest.json in {model_dir} is damaged: {exc}") from exc
    provider = manifest.get("execution_provider", {}).get("target", "cpu")
    report: dict[str, Any] = {"model_dir": str(model_dir), "provider": provider}
    options = manifest.get("options", {})
    label = parity_label(options.get("precision", "int4"), options.get("experts"))
    report.update(
        run_checks(model_dir, provider, manifest.get("runtime_env"), Path(reference) if reference else None, label)
    )
    if manifest and hashes:
        report["hashes"] = check_hashes(model_dir, manifest)
    report["passed"] = report["parity"]["passed"] if "parity" in report else True
    return report


if __name__ == "__main__":
    import sys

    sys.exit(_child_main(sys.argv[1], sys.argv[2]))
