"""Synthetic checkpoints must be byte-for-byte in the official gpt-oss-20b on-disk format."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from edge_runtime.harmony import HARMONY_SPECIAL_TOKENS
from export.errors import OptionError
from export.safetensors_io import bf16_bits_to_float, read_header, read_tensor
from export.synth import dequantize_mxfp4, generate, resolve_shape, tensor_plans


def _tensors(folder: Path) -> dict:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    infos = {}
    for name in sorted(set(index["weight_map"].values())):
        infos.update(read_header(folder / name))
    assert set(infos) == set(index["weight_map"])
    return infos


def test_mxfp4_layout_matches_the_official_release(tiny_mxfp4: Path) -> None:
    config = json.loads((tiny_mxfp4 / "config.json").read_text())
    assert config["model_type"] == "gpt_oss" and config["architectures"] == ["GptOssForCausalLM"]
    assert config["quantization_config"]["quant_method"] == "mxfp4"
    assert config["layer_types"] == ["sliding_attention", "full_attention"]
    assert config["rope_scaling"]["rope_type"] == "yarn" and config["attention_bias"] is True
    tensors = _tensors(tiny_mxfp4)
    e, h, i = config["num_local_experts"], config["hidden_size"], config["intermediate_size"]
    experts = "model.layers.0.mlp.experts"
    assert tensors[f"{experts}.gate_up_proj_blocks"].shape == (e, 2 * i, h // 32, 16)
    assert tensors[f"{experts}.gate_up_proj_scales"].shape == (e, 2 * i, h // 32)
    assert tensors[f"{experts}.down_proj_blocks"].shape == (e, h, i // 32, 16)
    assert tensors["model.layers.0.self_attn.sinks"].shape == (config["num_attention_heads"],)
    for name, info in tensors.items():
        expected = "U8" if name.endswith(("_blocks", "_scales")) else "BF16"
        assert info.dtype == expected, name


def test_bf16_format_holds_the_same_experts_dense(tiny_mxfp4: Path, tiny_bf16: Path) -> None:
    mx, dense = _tensors(tiny_mxfp4), _tensors(tiny_bf16)
    assert "quantization_config" not in json.loads((tiny_bf16 / "config.json").read_text())
    prefix = "model.layers.1.mlp.experts"
    decoded = dequantize_mxfp4(
        read_tensor(mx[f"{prefix}.down_proj_blocks"]), read_tensor(mx[f"{prefix}.down_proj_scales"])
    )
    stored = bf16_bits_to_float(read_tensor(dense[f"{prefix}.down_proj"]))
    assert stored.shape == decoded.transpose(0, 2, 1).shape  # input-major, as transformers holds them
    np.testing.assert_array_equal(stored, decoded.transpose(0, 2, 1))
    assert np.abs(stored).max() > 0


def test_tokenizer_keeps_harmony_special_tokens_whole(tiny_mxfp4: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_mxfp4 / "tokenizer.json"))
    text = "<|start|>user<|message|>def add(a, b):\n    return a + b<|end|><|start|>assistant<|channel|>final"
    ids = tokenizer.encode(text).ids
    for token in HARMONY_SPECIAL_TOKENS:
        assert tokenizer.token_to_id(token) is not None
    assert tokenizer.token_to_id("<|start|>") in ids and tokenizer.token_to_id("<|channel|>") in ids
    assert tokenizer.decode(ids, skip_special_tokens=False) == text
    generation = json.loads((tiny_mxfp4 / "generation_config.json").read_text())
    assert tokenizer.token_to_id("<|return|>") in generation["eos_token_id"]
    assert "<|start|>" in json.loads((tiny_mxfp4 / "tokenizer_config.json").read_text())["chat_template"]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path: Path, tiny_mxfp4: Path) -> None:
    again = generate(tmp_path / "again", "tiny", "mxfp4", 0)
    other = generate(tmp_path / "other", "tiny", "mxfp4", 7)
    assert _digest(again) == _digest(tiny_mxfp4)
    shard = "model-00000-of-00000.safetensors"
    assert _digest(other)[shard] != _digest(again)[shard]
    assert _digest(other)["tokenizer.json"] == _digest(again)["tokenizer.json"]


def test_full_width_shapes_have_the_real_dimensions() -> None:
    shape = resolve_shape("slice:3")
    assert (shape.hidden_size, shape.num_attention_heads, shape.num_key_value_heads) == (2880, 64, 8)
    assert (shape.num_local_experts, shape.experts_per_token, shape.vocab_size) == (32, 4, 201088)
    assert shape.num_hidden_layers == 3
    full = tensor_plans(resolve_shape("20b"), 201088, "mxfp4", 0)
    total = sum(p.nbytes for p in full)
    assert 13.5e9 < total < 14.0e9  # the official gpt-oss-20b safetensors hold ~13.8 GB
    big_120 = resolve_shape("tiny-120b")
    assert (big_120.num_hidden_layers, big_120.num_local_experts, big_120.experts_per_token) == (36, 128, 4)


@pytest.mark.parametrize("spec", ["huge", "slice:0", "slice:25", "slice:x"])
def test_unknown_shapes_are_refused(spec: str) -> None:
    with pytest.raises(OptionError):
        resolve_shape(spec)


def test_generation_never_leaves_a_partial_folder(tmp_path: Path) -> None:
    with pytest.raises(OptionError):
        generate(tmp_path / "x", "tiny", "fp8", 0)
    assert list(tmp_path.iterdir()) == []
