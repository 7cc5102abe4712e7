"""Find, fetch and check a gpt-oss checkpoint: a local folder or a hub id, in MXFP4 or bf16 format.

Everything is checked before the builder starts, so a wrong folder fails in a second with a message
that says what is wrong, instead of minutes later with a traceback from deep inside transformers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.harmony import SPECIAL_TOKENS
from edge_runtime.paths import DEFAULT_MODEL_ID
from export.errors import CheckpointError, SourceUnavailableError
from export.safetensors_io import TensorInfo, read_header, read_tensor

DEFAULT_HUB_ID = DEFAULT_MODEL_ID
# What the builder and transformers read; the hub repo also holds the original/ and metal/ copies we skip.
HUB_PATTERNS = [
    "config.json",
    "generation_config.json",
    "model*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
]
EXPERT_SUFFIXES = {
    "mxfp4": ("gate_up_proj_blocks", "gate_up_proj_scales", "down_proj_blocks", "down_proj_scales"),
    "bf16": ("gate_up_proj", "down_proj"),
}


@dataclass
class Checkpoint:
    path: Path
    config: dict[str, Any]
    format: str  # "mxfp4" or "bf16"
    tensors: dict[str, TensorInfo]
    hub_id: str | None = None
    revision: str | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    def shape_summary(self) -> dict[str, Any]:
        keys = (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "num_local_experts",
            "num_experts_per_tok",
            "vocab_size",
            "sliding_window",
        )
        return {k: self.config.get(k) for k in keys}

    def load_torch(self, name: str, rows: int | slice | None = None) -> Any:
        """One tensor (or rows of its first axis) read from the memory-mapped file into a torch tensor."""
        import torch  # export extra only

        info = self.tensors[name]
        array = read_tensor(info)
        if rows is not None:
            array = array[rows]
        tensor = torch.from_numpy(np.array(array))
        return tensor.view(torch.bfloat16) if info.dtype == "BF16" else tensor

    def dense_experts(self, layer_id: int, proj: str, rows: int | slice | None = None) -> Any:
        """A bf16 checkpoint's dense experts (stored input-major [E, in, out]) as output-major fp32 [.., out, in],
        the layout the builder's QMoE quantizer takes; rows picks experts."""
        weights = self.load_torch(f"model.layers.{layer_id}.mlp.experts.{proj}", rows)
        return weights.float().transpose(-1, -2).contiguous()


def file_digest(path: Path, root: Path, on_bytes: Callable[[int], None] | None = None) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return {"name": str(path.relative_to(root)), "size": path.stat().st_size, "sha256": digest.hexdigest()}


def looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~")) and not Path(source).exists()


def download(hub_id: str, revision: str | None, cache_dir: Path | None, quiet: bool) -> tuple[Path, str]:
    """Fetch a hub checkpoint (resumable; progress bars from huggingface_hub). Returns folder and commit."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
        from huggingface_hub.utils import disable_progress_bars
    except ImportError as exc:
        raise SourceUnavailableError("downloading needs the export extra: pip install 'oss-edge[export]'") from exc
    offline_hint = (
        f"cannot download {hub_id}: the model hub is not reachable (offline?). Download the checkpoint on a "
        f"connected machine (`hf download {hub_id}`), copy the folder here, and pass its path instead."
    )
    if quiet:
        disable_progress_bars()
    try:
        folder = snapshot_download(hub_id, revision=revision, cache_dir=cache_dir, allow_patterns=HUB_PATTERNS)
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise SourceUnavailableError(f"hub repository {hub_id} was not found or needs access rights: {exc}") from exc
    except RevisionNotFoundError as exc:
        raise SourceUnavailableError(f"revision {revision} of {hub_id} does not exist") from exc
    except LocalEntryNotFoundError as exc:
        raise SourceUnavailableError(offline_hint) from exc
    except OSError as exc:
        raise SourceUnavailableError(f"{offline_hint} ({exc.__class__.__name__}: {exc})") from exc
    return Path(folder), Path(folder).name


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path.parent} has no {path.name}: it is not a Hugging Face checkpoint folder") from exc
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{what} {path} is unreadable: {exc}") from exc


def _check_tokenizer(folder: Path) -> None:
    tokenizer_json = folder / "tokenizer.json"
    data = _load_json(tokenizer_json, "tokenizer")
    if not isinstance(data, dict) or "model" not in data:
        raise CheckpointError(f"{tokenizer_json} is not a tokenizers-format tokenizer")
    specials = {t.get("content") for t in data.get("added_tokens", [])}
    missing = [t for t in SPECIAL_TOKENS if t not in specials]
    if missing:
        raise CheckpointError(
            f"{tokenizer_json} lacks the harmony special tokens {', '.join(missing)}: it is not a gpt-oss tokenizer"
        )


def open_checkpoint(folder: Path) -> Checkpoint:
    """Read and check a local checkpoint folder; raise CheckpointError with the reason when it is unusable."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder")
    config = _load_json(folder / "config.json", "config")
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    if model_type != "gpt_oss" or "GptOssForCausalLM" not in architectures:
        raise CheckpointError(
            f"{folder} holds a {model_type or 'unknown'} model ({', '.join(architectures) or 'no architecture'}), "
            "not gpt-oss: oss-edge exports GptOssForCausalLM checkpoints only"
        )
    index_path = folder / "model.safetensors.index.json"
    if index_path.exists():
        index = _load_json(index_path, "safetensors index")
        names = sorted(set(index.get("weight_map", {}).values()))
    else:
        names = sorted(p.name for p in folder.glob("*.safetensors"))
    if not names:
        raise CheckpointError(f"{folder} has no safetensors weights")
    tensors: dict[str, TensorInfo] = {}
    files = []
    for name in names:
        path = folder / name
        if not path.exists():
            raise CheckpointError(f"{folder} is incomplete: {name} is listed in the index but missing")
        tensors.update(read_header(path))
        files.append(path)
    fmt = "mxfp4" if "model.layers.0.mlp.experts.gate_up_proj_blocks" in tensors else "bf16"
    expected = ["model.embed_tokens.weight", "model.norm.weight"]
    for layer in range(int(config.get("num_hidden_layers", 0))):
        expected += [f"model.layers.{layer}.mlp.experts.{s}" for s in EXPERT_SUFFIXES[fmt]]
        expected += [f"model.layers.{layer}.self_attn.{p}.weight" for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
        expected += [f"model.layers.{layer}.self_attn.sinks", f"model.layers.{layer}.mlp.router.weight"]
    missing = [n for n in expected if n not in tensors]
    if missing:
        raise CheckpointError(
            f"{folder} is missing {len(missing)} tensors that gpt-oss needs (first: {missing[0]}); "
            "the download may be incomplete"
        )
    _check_tokenizer(folder)
    metadata = [
        folder / n
        for n in (
            "config.json",
            "generation_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "model.safetensors.index.json",
        )
        if (folder / n).exists()
    ]
    return Checkpoint(path=folder, config=config, format=fmt, tensors=tensors, files=metadata + files)


def resolve_source(
    source: str, revision: str | None = None, cache_dir: Path | None = None, quiet: bool = True
) -> Checkpoint:
    """A local folder, or a hub id downloaded first."""
    path = Path(source).expanduser()
    if path.exists() or not looks_like_hub_id(source):
        if not path.exists():
            raise CheckpointError(f"{source} does not exist (and is not a hub id like {DEFAULT_HUB_ID})")
        return open_checkpoint(path)
    folder, commit = download(source, revision, cache_dir, quiet)
    checkpoint = open_checkpoint(folder)
    checkpoint.hub_id = source
    checkpoint.revision = commit
    return checkpoint
