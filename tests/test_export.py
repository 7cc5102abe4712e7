"""The whole export chain on tiny synthetic checkpoints, through the real `oss-edge` command."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime_genai as og
import pytest

from edge_runtime.errors import ExitCode
from export.checkpoint import resolve_source
from export.pipeline import choose_quality
from export.verify import graph_ops, load_model, open_tokenizer
from tests.conftest import _checkpoint, oss_edge


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_int4_export_runs_and_tracks_the_reference(tiny_int4: Path) -> None:
    manifest = _manifest(tiny_int4)
    parity = manifest["verification"]["parity"]
    assert parity["passed"], parity
    assert parity["mean_kl"] <= 0.03 and parity["mean_cosine"] >= 0.8
    ops = graph_ops(tiny_int4 / "model.onnx")
    assert ops["QMoE"] == 2 and ops["MatMulNBits"] > 0 and ops["GatherBlockQuantized"] == 1  # int4 embedding


def test_fp32_export_matches_transformers(tiny_fp32: Path) -> None:
    parity = _manifest(tiny_fp32)["verification"]["parity"]
    assert parity["max_abs_logit_diff"] <= 1e-4
    assert parity["greedy_sequences_identical"] == parity["prompts"]
    assert parity["passed"]


def test_builder_options_that_the_runtime_relies_on(tiny_int4: Path) -> None:
    model = onnx.load(str(tiny_int4 / "model.onnx"), load_external_data=False)
    qmoe = [n for n in model.graph.node if n.op_type == "QMoE"]
    assert all(onnx.helper.get_attribute_value(a) == 4 for n in qmoe for a in n.attribute if a.name == "accuracy_level")
    assert all(any(a.name == "accuracy_level" for a in n.attribute) for n in qmoe)
    assert "/lm_head/prune/Gather" in {n.name for n in model.graph.node}  # pruned lm_head
    manifest = _manifest(tiny_int4)
    assert manifest["builder_extra_options"]["windowed_kv_cache"] == "false"


def test_prefix_rewind_is_exact_on_the_exported_model(tiny_fp32: Path) -> None:
    """Prefix reuse depends on rewind_to giving the logits of a fresh generator (no windowed KV cache)."""
    model = load_model(tiny_fp32)
    ids = [int(t) for t in open_tokenizer(tiny_fp32).encode("def f(x):\n    return x * 2\n" * 10)]
    assert len(ids) > 70  # longer than the tiny model's 64-token sliding window
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=256)
    gen = og.Generator(model, params)
    gen.append_tokens(np.array(ids, dtype=np.int32))
    gen.rewind_to(len(ids) - 5)
    gen.append_tokens(np.array(ids[-5:], dtype=np.int32))
    reused = np.asarray(gen.get_logits()).reshape(-1)
    fresh = og.Generator(model, params)
    fresh.append_tokens(np.array(ids, dtype=np.int32))
    np.testing.assert_allclose(reused, np.asarray(fresh.get_logits()).reshape(-1), atol=1e-5)


def test_bf16_finetune_exports_to_the_same_int4_model(tiny_bf16: Path, tiny_int4: Path, tmp_path: Path) -> None:
    out = tmp_path / "from-bf16"
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    result = oss_edge("export", str(tiny_bf16), "--out", str(out), "--quality", "fast", "--parity", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert list(workdir.iterdir()) == []  # no builder cache_dir or temp files where the user stands
    assert _manifest(out)["source"]["format"] == "bf16"
    # The synthetic bf16 checkpoint holds exactly the MXFP4 values, so the int4 weights must be identical.
    assert (out / "model.onnx.data").read_bytes() == (tiny_int4 / "model.onnx.data").read_bytes()
    assert _manifest(out)["verification"]["parity"]["passed"]


def test_bf16_finetune_exports_at_fp32_with_parity(tiny_bf16: Path, tmp_path: Path) -> None:
    out = tmp_path / "bf16-fp32"
    result = oss_edge("export", str(tiny_bf16), "--out", str(out), "--precision", "fp32", "--parity")
    assert result.returncode == 0, result.stderr
    assert _manifest(out)["verification"]["parity"]["max_abs_logit_diff"] <= 1e-4


def test_120b_layout_exports(tiny_120b: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny-120b"
    result = oss_edge("export", str(tiny_120b), "--out", str(out))
    assert result.returncode == 0, result.stderr
    manifest = _manifest(out)
    assert manifest["verification"]["structure"]["layers"] == 36
    assert manifest["source"]["shape"]["num_local_experts"] == 128
    assert manifest["verification"]["structure"]["ops"]["QMoE"] == 36
    # no preset named: `auto` takes balanced where the memory holds it (a tiny model: everywhere)
    assert manifest["options"]["quality"] == "balanced"
    assert (manifest["options"]["precision"], manifest["options"]["experts"]) == ("int8", "int4")
    assert manifest["options"]["quality_reason"].startswith("auto: ")
    # not a terminal: progress as plain timestamped lines, a line per tenth of the layers
    log = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert any("] quality: balanced (" in line for line in log), result.stderr
    assert any(line.endswith("converting 36 layers (mxfp4 -> int8, cpu)") for line in log), result.stderr
    tenths = [line for line in log if "] convert: " in line]
    assert len(tenths) == 10 and tenths[-1].endswith("convert: 36 of 36 layers (100%)"), tenths
    assert any("verifying" in line for line in log)


def test_auto_quality_follows_the_memory_a_model_needs(model_cache: Path) -> None:
    checkpoint = resolve_source(str(_checkpoint(model_cache, "slice:1", "mxfp4")), None, None, quiet=True)
    # slice:1 (every width of gpt-oss-20b, one layer): a balanced daemon of ~3 GB, plus 4 GiB beside it
    assert choose_quality(checkpoint, 4 * 2**30)[0] == "fast"
    assert choose_quality(checkpoint, 8 * 2**30)[0] == "balanced"
    assert choose_quality(checkpoint, 64 * 2**30, "cuda")[0] == "fast"


@pytest.mark.parametrize(
    ("provider", "present", "absent"),
    [
        ("cuda", {"QMoE", "GroupQueryAttention", "MatMulNBits"}, set()),
        ("dml", {"GroupQueryAttention", "TopK", "GatherBlockQuantized", "MatMulNBits"}, {"QMoE", "MoE"}),
    ],
)
def test_gpu_builds_hold_the_operators_their_provider_needs(
    tiny_mxfp4: Path, tmp_path: Path, provider: str, present: set[str], absent: set[str]
) -> None:
    out = tmp_path / provider
    result = oss_edge("export", str(tiny_mxfp4), "--out", str(out), "--provider", provider)
    assert result.returncode == 0, result.stderr
    ops = set(graph_ops(out / "model.onnx"))
    assert present <= ops and not absent & ops
    manifest = _manifest(out)
    assert manifest["execution_provider"] == {
        "target": provider,
        "run_during_export": False,
        "note": f"built for {provider}; this machine has no such device, so the model was checked structurally "
        "but never run",
    }
    assert "smoke_run" not in manifest["verification"]
    genai = json.loads((out / "genai_config.json").read_text())
    assert provider in json.dumps(genai["model"]["decoder"]["session_options"]["provider_options"])
    model = onnx.load(str(out / "model.onnx"), load_external_data=False)
    qmoe_levels = [
        a for n in model.graph.node if n.op_type == "QMoE" for a in n.attribute if a.name == "accuracy_level"
    ]
    assert qmoe_levels == []  # the CPU accuracy level is not forced on other providers


def test_manifest_records_source_options_tools_and_file_hashes(tiny_int4: Path, tiny_mxfp4: Path) -> None:
    manifest = _manifest(tiny_int4)
    assert manifest["source"]["kind"] == "local" and manifest["source"]["path"] == str(tiny_mxfp4.resolve())
    assert manifest["source"]["format"] == "mxfp4" and manifest["source"]["synthetic"]["shape"] == "tiny"
    source_files = {f["name"]: f for f in manifest["source"]["files"]}
    shard = tiny_mxfp4 / "model-00000-of-00000.safetensors"
    assert source_files[shard.name]["sha256"] == hashlib.sha256(shard.read_bytes()).hexdigest()
    assert manifest["options"]["precision"] == "int4" and manifest["options"]["provider"] == "cpu"
    for tool in ("onnxruntime-genai", "onnxruntime", "onnx", "torch", "transformers", "python"):
        assert manifest["tools"][tool] not in ("", "not installed")
    listed = {f["name"]: f for f in manifest["files"]}
    on_disk = {p.name for p in tiny_int4.iterdir()} - {"manifest.json"}
    assert set(listed) == on_disk
    data = tiny_int4 / "model.onnx.data"
    assert listed[data.name]["size"] == data.stat().st_size
    assert listed[data.name]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert manifest["verification"]["tokenizer"]["round_trip"] is True


def test_verify_reports_parity_and_fails_against_another_model(
    tiny_int4: Path, tiny_mxfp4: Path, tiny_other_seed: Path
) -> None:
    good = oss_edge("verify", str(tiny_int4), "--reference", str(tiny_mxfp4), "--json")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["parity"]["passed"]
    wrong = oss_edge("verify", str(tiny_int4), "--reference", str(tiny_other_seed))
    assert wrong.returncode != 0
    assert "FAILED" in wrong.stdout


def test_verify_detects_a_damaged_file(tiny_int4: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_int4, copy)
    with open(copy / "model.onnx.data", "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02\x03")
    result = oss_edge("verify", str(copy))
    assert result.returncode != 0
    assert "model.onnx.data differs from manifest.json" in result.stderr


def test_int8_experts_hold_the_mxfp4_weights_exactly(tiny_mxfp4: Path, tiny_int4: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    from export.synth import dequantize_mxfp4

    out = tmp_path / "int8-experts"
    result = oss_edge(
        "export", str(tiny_mxfp4), "--out", str(out), "--experts", "int8", "--precision", "fp32", "--parity"
    )
    assert result.returncode == 0, result.stderr
    model = onnx.load(str(out / "model.onnx"))
    qmoe = [node for node in model.graph.node if node.op_type == "QMoE"]
    assert qmoe and all(
        onnx.helper.get_attribute_value(a) == 8 for n in qmoe for a in n.attribute if a.name == "expert_weight_bits"
    )
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    checkpoint: dict[str, np.ndarray] = {}
    for shard in tiny_mxfp4.glob("*.safetensors"):
        checkpoint.update(load_file(shard))
    worst = 0.0
    for layer in range(2):
        for proj in ("gate_up_proj", "down_proj"):
            prefix = f"model.layers.{layer}.mlp.experts.{proj}"
            reference = dequantize_mxfp4(checkpoint[f"{prefix}_blocks"], checkpoint[f"{prefix}_scales"])
            q = weights[f"model.layers.{layer}.moe.experts.{proj}.qweight"].astype(np.int32) - 128
            scales = weights[f"model.layers.{layer}.moe.experts.{proj}.scales"]
            experts, rows, width = q.shape
            stored = (q.reshape(experts, rows, width // 32, 32) * scales[..., None]).reshape(experts, rows, width)
            worst = max(worst, float(np.abs(stored - reference.reshape(stored.shape)).max()))
    assert worst == 0.0
    manifest = _manifest(out)
    assert manifest["options"]["experts"] == "int8"
    # onnxruntime's CPU QMoE must run the int8 experts on its fp32 path to stay exact; the manifest says so
    assert manifest["runtime_env"] == {"ORT_QMOE_CPU_QNBIT_GEMM": "fp32"}
    parity = manifest["verification"]["parity"]
    assert parity["precision"] == "fp32+int8-experts" and parity["passed"]
    assert parity["max_abs_logit_diff"] <= 1e-3
    assert parity["greedy_sequences_identical"] == parity["prompts"]


@pytest.mark.parametrize("quality", ["fast", "balanced", "accurate", "exact"])
def test_each_quality_preset_exports_and_runs(tiny_mxfp4: Path, tmp_path: Path, quality: str) -> None:
    out = tmp_path / quality
    result = oss_edge("export", str(tiny_mxfp4), "--out", str(out), "--quality", quality)
    assert result.returncode == 0, result.stderr
    manifest = _manifest(out)
    options = manifest["options"]
    assert options["quality"] == quality
    expected = {
        "fast": ("int4", None),
        "balanced": ("int8", "int4"),
        "accurate": ("int8", "int8"),
        "exact": ("fp32", "int8"),
    }[quality]
    assert (options["precision"], options["experts"]) == expected
    assert manifest["verification"]["smoke_run"]["generated"]  # it loaded and ran
    model = onnx.load(str(out / "model.onnx"), load_external_data=False)
    bits = {
        onnx.helper.get_attribute_value(a)
        for node in model.graph.node
        if node.op_type in ("MatMulNBits", "GatherBlockQuantized")
        for a in node.attribute
        if a.name == "bits"
    }
    expert_bits = {
        onnx.helper.get_attribute_value(a)
        for node in model.graph.node
        if node.op_type == "QMoE"
        for a in node.attribute
        if a.name == "expert_weight_bits"
    }
    if quality == "fast":
        assert bits == {4} and expert_bits == {4}
    if quality == "balanced":
        assert bits == {8} and expert_bits == {4}  # the embedding in int8 blocks too
        assert graph_ops(out / "model.onnx")["GatherBlockQuantized"] == 1
    if quality == "accurate":
        assert bits == {8} and expert_bits == {8}
    if quality == "exact":
        assert not bits and expert_bits == {8}
        assert manifest["runtime_env"] == {"ORT_QMOE_CPU_QNBIT_GEMM": "fp32"}


def test_quality_and_explicit_precision_do_not_mix(tiny_mxfp4: Path, tmp_path: Path) -> None:
    result = oss_edge(
        "export", str(tiny_mxfp4), "--out", str(tmp_path / "x"), "--quality", "fast", "--precision", "fp32"
    )
    assert result.returncode == ExitCode.USAGE and "--quality chooses" in result.stderr


def _stored_int4_experts(folder: Path, layer: int, proj: str) -> np.ndarray:
    """The QMoE int4 expert weights of an export, dequantized: [E, N, K]."""
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(folder / "model.onnx")).graph.initializer}
    packed = weights[f"model.layers.{layer}.moe.experts.{proj}.qweight"]
    scales = weights[f"model.layers.{layer}.moe.experts.{proj}.scales"].astype(np.float32)
    q = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(*packed.shape[:-1], -1).astype(np.float32) - 8
    experts, rows, width = q.shape
    return (q.reshape(experts, rows, width // 32, 32) * scales[..., None]).reshape(experts, rows, width)


def _checkpoint_experts(source: Path, layer: int, proj: str) -> np.ndarray:
    from safetensors.numpy import load_file

    from export.synth import dequantize_mxfp4

    tensors: dict[str, np.ndarray] = {}
    for shard in source.glob("*.safetensors"):
        tensors.update(load_file(shard))
    prefix = f"model.layers.{layer}.mlp.experts.{proj}"
    values = dequantize_mxfp4(tensors[f"{prefix}_blocks"], tensors[f"{prefix}_scales"])
    return values.reshape(values.shape[0], values.shape[1], -1)


def test_fitted_int4_experts_are_closer_to_the_checkpoint_than_the_builders(
    tiny_mxfp4: Path, tiny_int4: Path, tmp_path: Path
) -> None:
    fitted_dir = tmp_path / "int4-fitted"
    result = oss_edge("export", str(tiny_mxfp4), "--out", str(fitted_dir), "--experts", "int4-fitted")
    assert result.returncode == 0, result.stderr
    assert _manifest(fitted_dir)["options"]["experts"] == "int4-fitted"
    for layer in range(2):
        for proj in ("gate_up_proj", "down_proj"):
            reference = _checkpoint_experts(tiny_mxfp4, layer, proj)
            fitted = _stored_int4_experts(fitted_dir, layer, proj) - reference
            maxed = _stored_int4_experts(tiny_int4, layer, proj) - reference
            # least squares per block of 32: never worse on a block, and clearly better overall on random FP4 codes
            fitted_blocks = (fitted.reshape(-1, 32) ** 2).sum(axis=1)
            maxed_blocks = (maxed.reshape(-1, 32) ** 2).sum(axis=1)
            assert np.all(fitted_blocks <= maxed_blocks * (1 + 1e-5) + 1e-12)
            assert np.sqrt(fitted_blocks.sum() / maxed_blocks.sum()) < 0.9


def test_balanced_embedding_is_int8_within_half_a_step(tiny_mxfp4: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    out = tmp_path / "balanced"
    result = oss_edge("export", str(tiny_mxfp4), "--out", str(out), "--quality", "balanced")
    assert result.returncode == 0, result.stderr
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(out / "model.onnx")).graph.initializer}
    data = weights["model.embed_tokens.qweight"].astype(np.float32) - 128
    scales = weights["model.embed_tokens.scales"]
    vocab, hidden = data.shape
    stored = (data.reshape(vocab, hidden // 32, 32) * scales[..., None]).reshape(vocab, hidden)
    tensors: dict[str, np.ndarray] = {}
    for shard in tiny_mxfp4.glob("*.safetensors"):
        tensors.update(load_file(shard))
    bits = tensors["model.embed_tokens.weight"].view(np.uint16).astype(np.uint32) << 16
    table = bits.view(np.float32)
    step = np.repeat(np.abs(scales), 32, axis=1)
    assert np.all(np.abs(stored - table) <= step / 2 * (1 + 1e-4))  # fp32 rounding of the products


def test_reference_logits_are_computed_once(tiny_int4: Path, tiny_mxfp4: Path, user_home: Path) -> None:
    first = oss_edge("verify", str(tiny_int4), "--reference", str(tiny_mxfp4), "--json")
    assert first.returncode == 0, first.stderr
    cached = list((user_home / "cache" / "reference").glob("*.npz"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    second = oss_edge("verify", str(tiny_int4), "--reference", str(tiny_mxfp4), "--json")
    assert second.returncode == 0, second.stderr
    assert cached[0].stat().st_mtime_ns == stamp  # read, not written again
    assert json.loads(first.stdout)["parity"] == json.loads(second.stdout)["parity"]
