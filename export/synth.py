"""Synthetic gpt-oss checkpoints in the exact on-disk format of openai/gpt-oss-20b, with random weights.

Weights cannot be downloaded everywhere, so tests and benchmarks run on checkpoints generated here:
config.json with the mxfp4 quantization_config, experts as `*_blocks`/`*_scales` uint8 and the rest
bf16 in sharded safetensors with an index, a locally trained byte-level BPE tokenizer holding the
harmony special tokens, tokenizer_config.json with a chat template, and generation_config.json.
The same seed gives the same bytes. The bf16 format stores the experts dense (as a fine-tune would),
holding exactly the values the MXFP4 format encodes, so both formats describe the same model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge_runtime.harmony import HARMONY_SPECIAL_TOKENS
from export.errors import OptionError
from export.safetensors_io import TensorPlan, float_to_bf16_bits, iter_rows, write_safetensors
from export.tokenizer_synth import write_tokenizer_files

FP4_VALUES = np.array(
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32
)
SHARD_BYTES = 4_500_000_000
SYNTH_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Shape:
    name: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    num_local_experts: int
    experts_per_token: int
    vocab_size: int | None  # None: as many rows as the tokenizer has
    sliding_window: int
    tokenizer_vocab: int


GPT_OSS_20B = Shape("20b", 2880, 2880, 24, 64, 8, 64, 32, 4, 201088, 128, 8192)
SHAPES: dict[str, Shape] = {
    "tiny": Shape("tiny", 192, 192, 2, 4, 2, 64, 4, 2, None, 64, 2048),
    "tiny-120b": Shape("tiny-120b", 64, 64, 36, 2, 1, 64, 128, 4, None, 64, 2048),
    # the trained stand-in's shape (`oss-edge train`); here with random weights, for comparison
    "stand-in": Shape("stand-in", 256, 256, 4, 4, 2, 64, 8, 2, None, 128, 4096),
    "20b": GPT_OSS_20B,
}


def resolve_shape(spec: str) -> Shape:
    """`tiny`, `tiny-120b`, `stand-in`, `20b`, or `slice:N` (the 20b widths with N layers)."""
    if spec in SHAPES:
        return SHAPES[spec]
    if spec.startswith("slice:"):
        try:
            layers = int(spec.split(":", 1)[1])
        except ValueError:
            layers = 0
        if not 1 <= layers <= 24:
            raise OptionError(f"slice:N needs 1 <= N <= 24, got {spec!r}")
        return replace(GPT_OSS_20B, name=spec, num_hidden_layers=layers)
    raise OptionError(f"unknown shape {spec!r}: use tiny, tiny-120b, stand-in, slice:N or 20b")


def layer_types(n: int) -> list[str]:
    return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)]


def make_config(shape: Shape, vocab_size: int, eos_id: int, pad_id: int, fmt: str) -> dict[str, object]:
    config: dict[str, object] = {
        "architectures": ["GptOssForCausalLM"],
        "attention_bias": True,
        "attention_dropout": 0.0,
        "eos_token_id": eos_id,
        "experts_per_token": shape.experts_per_token,
        "head_dim": shape.head_dim,
        "hidden_act": "silu",
        "hidden_size": shape.hidden_size,
        "initial_context_length": 4096,
        "initializer_range": 0.02,
        "intermediate_size": shape.intermediate_size,
        "layer_types": layer_types(shape.num_hidden_layers),
        "max_position_embeddings": 131072,
        "model_type": "gpt_oss",
        "num_attention_heads": shape.num_attention_heads,
        "num_experts_per_tok": shape.experts_per_token,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_key_value_heads": shape.num_key_value_heads,
        "num_local_experts": shape.num_local_experts,
        "output_router_logits": False,
        "pad_token_id": pad_id,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "factor": 32.0,
            "original_max_position_embeddings": 4096,
            "rope_type": "yarn",
            "truncate": False,
        },
        "rope_theta": 150000,
        "router_aux_loss_coef": 0.9,
        "sliding_window": shape.sliding_window,
        "swiglu_limit": 7.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    if fmt == "mxfp4":
        config["quantization_config"] = {
            "modules_to_not_convert": [
                "model.layers.*.self_attn",
                "model.layers.*.mlp.router",
                "model.embed_tokens",
                "lm_head",
            ],
            "quant_method": "mxfp4",
        }
    return config


class _Rng:
    """Per-tensor, per-chunk random streams so values do not depend on write order or chunking."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, name: str, chunk: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(name.encode()), chunk])


def _bf16_normal(rng: _Rng, name: str, shape: tuple[int, ...], std: float, mean: float = 0.0) -> TensorPlan:
    rows_per_chunk = max(1, (8 << 20) // max(1, int(np.prod(shape[1:], dtype=np.int64))))

    def chunks() -> Iterator[np.ndarray]:
        for index, (start, stop) in enumerate(iter_rows(shape[0], rows_per_chunk)):
            values = rng(name, index).normal(mean, std, size=(stop - start, *shape[1:])).astype(np.float32)
            yield float_to_bf16_bits(values)

    return TensorPlan(name, "BF16", shape, chunks)


def _mxfp4_codes(rng: _Rng, name: str, rows: int, cols: int, expert: int) -> tuple[np.ndarray, np.ndarray]:
    """One expert's packed FP4 blocks [rows, cols/32, 16] and exponent scales [rows, cols/32]."""
    generator = rng(name, expert)
    blocks = generator.integers(0, 256, size=(rows, cols // 32, 16), dtype=np.uint8)
    # Exponents 2^-8..2^-6 give weights of about the 0.02 spread of trained gpt-oss weights.
    scales = generator.integers(119, 122, size=(rows, cols // 32), dtype=np.uint8)
    return blocks, scales


def dequantize_mxfp4(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """[..., K/32, 16] uint8 blocks and [..., K/32] exponents -> [..., K] float32 (low nibble first)."""
    codes = np.empty((*blocks.shape[:-1], 32), dtype=np.uint8)
    codes[..., 0::2] = blocks & 0x0F
    codes[..., 1::2] = blocks >> 4
    values = FP4_VALUES[codes] * np.ldexp(np.float32(1.0), scales.astype(np.int32) - 127)[..., None]
    return values.reshape(*blocks.shape[:-2], -1).astype(np.float32)


def _expert_tensors(rng: _Rng, prefix: str, shape: Shape, fmt: str) -> list[TensorPlan]:
    e, h, i = shape.num_local_experts, shape.hidden_size, shape.intermediate_size
    plans: list[TensorPlan] = []
    for proj, rows, cols in (("gate_up_proj", 2 * i, h), ("down_proj", h, i)):
        key = f"{prefix}.{proj}"
        if fmt == "mxfp4":

            def blocks(key: str = key, rows: int = rows, cols: int = cols) -> Iterator[np.ndarray]:
                for expert in range(e):
                    yield _mxfp4_codes(rng, key, rows, cols, expert)[0]

            def scales(key: str = key, rows: int = rows, cols: int = cols) -> Iterator[np.ndarray]:
                for expert in range(e):
                    yield _mxfp4_codes(rng, key, rows, cols, expert)[1]

            plans.append(TensorPlan(f"{key}_blocks", "U8", (e, rows, cols // 32, 16), blocks))
            plans.append(TensorPlan(f"{key}_scales", "U8", (e, rows, cols // 32), scales))
        else:
            # Dense experts are stored input-major ([E, in, out]), as transformers' GptOssExperts holds them.
            def dense(key: str = key, rows: int = rows, cols: int = cols) -> Iterator[np.ndarray]:
                for expert in range(e):
                    b, s = _mxfp4_codes(rng, key, rows, cols, expert)
                    yield float_to_bf16_bits(dequantize_mxfp4(b, s).T[None])

            plans.append(TensorPlan(key, "BF16", (e, cols, rows), dense))
        plans.append(_bf16_normal(rng, f"{key}_bias", (e, rows), 0.01))
    return plans


def tensor_plans(shape: Shape, vocab_size: int, fmt: str, seed: int) -> list[TensorPlan]:
    rng = _Rng(seed)
    h, hd = shape.hidden_size, shape.head_dim
    q, kv = shape.num_attention_heads * hd, shape.num_key_value_heads * hd
    plans = [_bf16_normal(rng, "model.embed_tokens.weight", (vocab_size, h), 0.02)]
    for layer in range(shape.num_hidden_layers):
        p = f"model.layers.{layer}"
        plans += [
            _bf16_normal(rng, f"{p}.input_layernorm.weight", (h,), 0.05, 1.0),
            _bf16_normal(rng, f"{p}.post_attention_layernorm.weight", (h,), 0.05, 1.0),
            _bf16_normal(rng, f"{p}.self_attn.q_proj.weight", (q, h), 0.02),
            _bf16_normal(rng, f"{p}.self_attn.q_proj.bias", (q,), 0.01),
            _bf16_normal(rng, f"{p}.self_attn.k_proj.weight", (kv, h), 0.02),
            _bf16_normal(rng, f"{p}.self_attn.k_proj.bias", (kv,), 0.01),
            _bf16_normal(rng, f"{p}.self_attn.v_proj.weight", (kv, h), 0.02),
            _bf16_normal(rng, f"{p}.self_attn.v_proj.bias", (kv,), 0.01),
            _bf16_normal(rng, f"{p}.self_attn.o_proj.weight", (h, q), 0.02),
            _bf16_normal(rng, f"{p}.self_attn.o_proj.bias", (h,), 0.01),
            _bf16_normal(rng, f"{p}.self_attn.sinks", (shape.num_attention_heads,), 0.5),
            _bf16_normal(rng, f"{p}.mlp.router.weight", (shape.num_local_experts, h), 0.02),
            _bf16_normal(rng, f"{p}.mlp.router.bias", (shape.num_local_experts,), 0.01),
        ]
        plans += _expert_tensors(rng, f"{p}.mlp.experts", shape, fmt)
    plans.append(_bf16_normal(rng, "model.norm.weight", (h,), 0.05, 1.0))
    plans.append(_bf16_normal(rng, "lm_head.weight", (vocab_size, h), 0.02))
    return plans


def _shard(plans: list[TensorPlan]) -> list[list[TensorPlan]]:
    shards: list[list[TensorPlan]] = [[]]
    size = 0
    for plan in plans:
        if shards[-1] and size + plan.nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(plan)
        size += plan.nbytes
    return shards


def generation_config(token_ids: dict[str, int]) -> dict[str, object]:
    return {
        "bos_token_id": token_ids["<|startoftext|>"],
        "do_sample": True,
        "eos_token_id": [token_ids["<|return|>"], token_ids["<|endoftext|>"], token_ids["<|call|>"]],
        "pad_token_id": token_ids["<|endoftext|>"],
    }


def write_checkpoint(
    folder: Path,
    config: dict[str, object],
    token_ids: dict[str, int],
    plans: list[TensorPlan],
    progress: Callable[[int, int], None] | None = None,
    sampling: dict[str, float] | None = None,
) -> None:
    """config.json, generation_config.json (with the model's recommended `sampling`, if it has one), the weights in
    shards and their index, as the official release has."""
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {**generation_config(token_ids), **(sampling or {})}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    shards = _shard(plans)
    total = sum(p.nbytes for p in plans)
    written = 0

    def on_bytes(n: int) -> None:
        nonlocal written
        written += n
        if progress is not None:
            progress(written, total)

    weight_map: dict[str, str] = {}
    for index, shard in enumerate(shards):
        file_name = f"model-{index:05d}-of-{len(shards) - 1:05d}.safetensors"
        write_safetensors(folder / file_name, shard, on_bytes)
        weight_map.update({plan.name: file_name for plan in shard})
    index_doc = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_doc, indent=2) + "\n")


def staged_folder(out: Path) -> Path:
    """A temporary folder beside `out`, renamed into place when complete (see `publish`)."""
    out = Path(out)
    if out.exists():
        raise OptionError(f"{out} already exists; remove it or choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))


def publish(staging: Path, out: Path) -> None:
    os.chmod(staging, 0o755)
    os.replace(staging, out)


def generate(
    out: Path,
    shape_spec: str = "tiny",
    fmt: str = "mxfp4",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a synthetic checkpoint to out (atomically: a temp folder renamed into place)."""
    if fmt not in ("mxfp4", "bf16"):
        raise OptionError(f"unknown format {fmt!r}: use mxfp4 or bf16")
    shape = resolve_shape(shape_spec)
    out = Path(out)
    staging = staged_folder(out)
    try:
        token_ids = write_tokenizer_files(staging, shape.tokenizer_vocab)
        vocab_size = shape.vocab_size or token_ids["vocab_size"]
        config = make_config(shape, vocab_size, token_ids["<|return|>"], token_ids["<|endoftext|>"], fmt)
        write_checkpoint(staging, config, token_ids, tensor_plans(shape, vocab_size, fmt, seed), progress)
        about = {
            "generator": "oss-edge synth",
            "version": SYNTH_FORMAT_VERSION,
            "shape": shape_spec,
            "format": fmt,
            "seed": seed,
            "special_tokens": {t: token_ids[t] for t in HARMONY_SPECIAL_TOKENS},
        }
        (staging / "synthetic.json").write_text(json.dumps(about, indent=2) + "\n")
        publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
