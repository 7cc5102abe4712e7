"""The model, loaded once: onnxruntime-genai generators kept alive as KV-cache slots, reused by longest common prefix.

Each slot is one long-lived generator. A new prompt rewinds the slot to the longest token prefix it shares with
what the slot has computed and appends only the rest, in chunks small enough that a cancel waits at most one
chunk (the binding holds the GIL for each forward pass). Tokens are chosen here from `get_logits()` and appended
one at a time, so the cache always holds exactly the tokens that were run: no pending token, no stale logits.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from tokenizers import Tokenizer

from edge_runtime.errors import ModelFolderError, ModelLoadError, PromptTooLong
from edge_runtime.harmony import HarmonyCodec

log = logging.getLogger("oss_edge.engine")

DEFAULT_MAX_LENGTH = 8192
# A prompt chunk aims at this many seconds of compute: the longest a cancel or a newer request waits.
CHUNK_SECONDS = 0.25
MIN_CHUNK, MAX_CHUNK = 16, 1024
PROVIDERS = ("cpu", "cuda", "dml")


def weight_bytes(path: Path, graph: str = "model.onnx") -> int:
    """Bytes of a model folder's graph and its external weight data (what the session loads)."""
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.name.startswith(graph))


def folder_bytes(path: Path) -> int:
    """Bytes of every file in a model folder (its size on disk)."""
    return sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())


@dataclass
class ModelFolder:
    """A model folder made by `oss-edge export` (or any onnxruntime-genai gpt-oss folder), checked before loading."""

    path: Path
    name: str
    provider: str
    precision: str
    layers: int
    kv_heads: int
    head_size: int
    vocab_size: int
    context_length: int
    weight_bytes: int
    manifest: dict[str, Any] = field(default_factory=dict)
    # the model's recommended sampling (genai_config's search options): explanations sample with it
    temperature: float = 1.0
    top_p: float = 1.0


def open_model_folder(path: Path) -> ModelFolder:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelFolderError(f"{path} is not a folder; pass a folder made by `oss-edge export`")
    missing = [name for name in ("genai_config.json", "tokenizer.json") if not (path / name).is_file()]
    if missing:
        raise ModelFolderError(f"{path} lacks {', '.join(missing)}: not an exported model folder")
    try:
        config = json.loads((path / "genai_config.json").read_text())
        decoder = config["model"]["decoder"]
        graph = path / decoder["filename"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"{path / 'genai_config.json'} is unreadable or incomplete ({exc})") from exc
    if config["model"].get("type") != "gptoss":
        raise ModelFolderError(f"{path} holds a {config['model'].get('type')!r} model, not gpt-oss")
    if not graph.is_file():
        raise ModelFolderError(f"{path} lacks its graph {graph.name}")
    manifest: dict[str, Any] = {}
    if (path / "manifest.json").is_file():
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except ValueError as exc:
            raise ModelFolderError(f"{path / 'manifest.json'} is corrupt ({exc})") from exc
        for entry in manifest.get("files", []):
            file = path / entry["name"]
            if not file.is_file():
                raise ModelFolderError(f"{path} lacks {entry['name']}, which its manifest lists; export it again")
            if file.stat().st_size != entry["size"]:
                raise ModelFolderError(
                    f"{file} has {file.stat().st_size} bytes, its manifest says {entry['size']}: "
                    "the folder is damaged or was changed; export it again"
                )
    provider = manifest.get("execution_provider", {}).get("target") or _provider_of(decoder)
    return ModelFolder(
        path=path,
        name=str(manifest.get("options", {}).get("source") or path.name),
        provider=provider,
        precision=str(manifest.get("options", {}).get("precision", "unknown")),
        layers=int(decoder.get("num_hidden_layers", 0)),
        kv_heads=int(decoder.get("num_key_value_heads", 0)),
        head_size=int(decoder.get("head_size", 0)),
        vocab_size=int(config["model"].get("vocab_size", 0)),
        context_length=int(config["model"].get("context_length", 0)),
        weight_bytes=weight_bytes(path, graph.name),
        manifest=manifest,
        **_sampling(config.get("search", {})),
    )


def _sampling(search: Any) -> dict[str, float]:
    """temperature and top_p from genai_config's search options, where they are valid."""
    found: dict[str, float] = {}
    if not isinstance(search, dict):
        return found
    for key, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        value = search.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high:
            found[key] = float(value)
    return found


def _provider_of(decoder: dict[str, Any]) -> str:
    for option in decoder.get("session_options", {}).get("provider_options", []):
        for name in option:
            return "dml" if name.lower() == "dml" else name.lower()
    return "cpu"


def physical_cores() -> int:
    import psutil  # only the daemon needs it

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


class KvSlot:
    """One generator and the token ids whose keys and values it holds."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.generator: Any = None
        self.ids: list[int] = []
        self.owner: object | None = None
        self.last_used = 0.0


@dataclass
class PrefillResult:
    logits: np.ndarray | None
    reused: int
    appended: int
    seconds: float


KERNELS = ("auto", "fast", "compact")
QMOE_KERNEL_ENV = "ORT_QMOE_CPU_QNBIT_GEMM"
# Resident bytes of the fast kernels' packed weights per byte of weights on disk (gpt-oss-20b int4: 14.9 / 13.1).
FAST_KERNEL_OVERHEAD = 1.15
# Reclaim clean pages only: a page onnxruntime wrote to (copy-on-write) is never dropped, so nothing is lost.
MADV_PAGEOUT = 21


def choose_kernels(
    requested: str, weight_bytes: int, kv_bytes: int, exported_env: dict[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """The CPU expert kernels, and the environment onnxruntime must build the session under to get them.

    fast: the export's int8-activation kernels (QMoE accuracy level 4), which pack each expert block with its
    scale and block sum (FAST_KERNEL_OVERHEAD times the weights resident). compact: the fp32-activation kernels,
    which pack the 4-bit data alone and read the scales from the memory-mapped file: less anonymous memory, slower
    decode and prefill (docs/bench/runtime.md). auto: fast when the available memory allows it, else compact.
    Returns the choice (or where a fixed one came from) and the environment: the export's own, plus the kernels'.
    """
    env = {key: str(value) for key, value in (exported_env or {}).items() if key.startswith("ORT_")}
    if QMOE_KERNEL_ENV in env:
        return "as exported", env  # the export fixed the kernels (exact int8 experts next to fp32 weights)
    if QMOE_KERNEL_ENV in os.environ:
        return "from the environment", env
    if requested == "auto":
        needed = FAST_KERNEL_OVERHEAD * weight_bytes + kv_bytes + 1e9
        requested = "fast" if psutil.virtual_memory().available >= needed else "compact"
    if requested == "compact":
        env[QMOE_KERNEL_ENV] = "fp32"
    return requested, env


def load_genai_model(
    model_dir: Path, *, provider: str = "cpu", threads: int = 0, env: dict[str, str] | None = None
) -> Any:
    """An onnxruntime-genai model for a folder: the one place its config, provider, threads and environment are set.

    onnxruntime reads `env` (kernel choices) while it builds the session; it is set for the load and restored after.
    """
    import onnxruntime_genai as og

    config = og.Config(str(model_dir))
    config.clear_providers()
    if provider != "cpu":
        config.append_provider(provider)
    if threads:
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        return og.Model(config)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def release_loaded_pages(model_dir: Path) -> int:
    """Give back the clean pages of the model's weight files that loading touched (MADV_PAGEOUT, Linux 5.4+).

    onnxruntime memory-maps the weight file and reads much of it once while packing the weights into its own
    buffers; what it still reads later (scales, embedding rows) comes back from the file on first use. Pages it
    wrote to are private copies and stay. Returns the bytes of mapping advised, 0 where this is not available.
    """
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return 0
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    folder = str(model_dir.resolve())
    released = 0
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[5].startswith(folder + "/") or not fields[5].endswith(".data"):
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if madvise(start, end - start, MADV_PAGEOUT) == 0:
            released += end - start
    return released


class Engine:
    """The loaded model, its tokenizer and a few KV-cache slots. Used from one thread at a time."""

    def __init__(
        self,
        folder: ModelFolder,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        threads: int = 0,
        slots: int = 2,
        provider: str | None = None,
        chunk_tokens: int = 0,
        kernels: str = "auto",
    ) -> None:
        self.folder = folder
        if kernels not in KERNELS:
            raise ModelLoadError(f"unknown kernels {kernels!r}; choose one of {', '.join(KERNELS)}")
        self.max_length = max_length
        self.threads = threads or physical_cores()
        self.requested_provider = provider or folder.provider
        if self.requested_provider not in PROVIDERS:
            raise ModelLoadError(f"unknown provider {self.requested_provider!r}; choose one of {', '.join(PROVIDERS)}")
        if folder.context_length and max_length > folder.context_length:
            raise ModelLoadError(f"max length {max_length} exceeds the model's context of {folder.context_length}")
        self.tokenizer = Tokenizer.from_file(str(folder.path / "tokenizer.json"))
        self.codec = HarmonyCodec(self.tokenizer)
        self.kv_values_per_token = 2 * folder.layers * folder.kv_heads * folder.head_size
        self.kernels, self.session_env = self._choose_kernels(kernels)
        self.model, self.provider = self._load()
        self.released_bytes = release_loaded_pages(folder.path)
        self.load_seconds = 0.0  # set by whoever times the load
        self.slots = [KvSlot(i) for i in range(max(1, slots))]
        self.adaptive_chunks = chunk_tokens <= 0  # else every prompt chunk has exactly chunk_tokens tokens
        self.chunk_tokens = chunk_tokens if chunk_tokens > 0 else 64
        self.prefill_tokens = 0
        self.prefill_seconds = 0.0

    def _choose_kernels(self, requested: str) -> tuple[str, dict[str, str]]:
        exported = self.folder.manifest.get("runtime_env")
        if self.requested_provider != "cpu":
            return f"{self.requested_provider}'s", choose_kernels("fast", 0, 0, exported)[1]
        kv_bytes = self.kv_values_per_token * 4 * self.max_length  # float32 keys and values on the CPU
        return choose_kernels(requested, self.folder.weight_bytes, kv_bytes, exported)

    def _load(self) -> tuple[Any, str]:
        def load(provider: str) -> Any:
            return load_genai_model(self.folder.path, provider=provider, threads=self.threads, env=self.session_env)

        provider = self.requested_provider
        try:
            return load(provider), provider
        except Exception as exc:
            if provider == "cpu":
                raise ModelLoadError(f"onnxruntime-genai cannot load {self.folder.path}: {exc}") from exc
            log.warning("provider %s is not available here (%s); falling back to CPU", provider, exc)
        try:
            return load("cpu"), "cpu"
        except Exception as exc:
            raise ModelLoadError(f"onnxruntime-genai cannot load {self.folder.path} on CPU either: {exc}") from exc

    def _new_generator(self) -> Any:
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=self.max_length, do_sample=False)
        return og.Generator(self.model, params)

    def pick_slot(self, prompt: list[int], owner: object, avoid: Callable[[KvSlot], bool]) -> KvSlot:
        """The slot sharing the longest prefix with `prompt`; slots marked by `avoid` only as a last resort."""

        def score(slot: KvSlot) -> tuple[int, int, float]:
            return (0 if avoid(slot) else 1, common_prefix(slot.ids, prompt), -slot.last_used)

        slot = max(self.slots, key=score)
        slot.owner = owner
        slot.last_used = time.monotonic()
        return slot

    def prefill(self, slot: KvSlot, prompt: list[int], should_stop: Callable[[], bool]) -> PrefillResult:
        """Make `slot` hold exactly `prompt` and return the next-token logits (None when stopped between chunks)."""
        if len(prompt) >= self.max_length:
            raise PromptTooLong(f"the prompt has {len(prompt)} tokens; the context limit is {self.max_length}")
        start = time.perf_counter()
        reused = min(common_prefix(slot.ids, prompt), len(prompt) - 1)  # the last token must run for its logits
        try:
            if slot.generator is None:
                slot.generator = self._new_generator()
                slot.ids = []
                reused = 0
            if reused < len(slot.ids):
                slot.generator.rewind_to(reused)
                del slot.ids[reused:]
            position = reused
            while position < len(prompt):
                if should_stop():
                    return PrefillResult(None, reused, position - reused, time.perf_counter() - start)
                chunk = prompt[position : position + self.chunk_tokens]
                began = time.perf_counter()
                slot.generator.append_tokens(np.asarray(chunk, dtype=np.int32))
                slot.ids.extend(chunk)
                position += len(chunk)
                self._tune_chunk(len(chunk), time.perf_counter() - began)
            logits = self._logits(slot)
        except Exception:
            self.reset(slot)
            raise
        return PrefillResult(logits, reused, len(prompt) - reused, time.perf_counter() - start)

    def step(self, slot: KvSlot, token: int) -> np.ndarray:
        """Run one generated token and return the logits for the next."""
        if len(slot.ids) + 1 >= self.max_length:
            raise PromptTooLong(f"the context limit of {self.max_length} tokens is reached")
        try:
            slot.generator.append_tokens(np.asarray([token], dtype=np.int32))
            slot.ids.append(token)
            return self._logits(slot)
        except Exception:
            self.reset(slot)
            raise

    def reset(self, slot: KvSlot) -> None:
        slot.generator = None
        slot.ids = []
        slot.owner = None

    @staticmethod
    def _logits(slot: KvSlot) -> np.ndarray:
        return np.asarray(slot.generator.get_logits(), dtype=np.float32).reshape(-1)

    def _tune_chunk(self, tokens: int, seconds: float) -> None:
        self.prefill_tokens += tokens
        self.prefill_seconds += seconds
        if self.adaptive_chunks and tokens >= 8 and seconds > 0:
            target = int(CHUNK_SECONDS * tokens / seconds)
            self.chunk_tokens = max(MIN_CHUNK, min(MAX_CHUNK, (self.chunk_tokens + target) // 2))

    def kv_bytes_per_token(self) -> int:
        """Bytes of KV cache per token per slot (float32 keys and values on CPU, float16 elsewhere)."""
        return self.kv_values_per_token * (4 if self.provider == "cpu" else 2)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # binary search on the first difference: prompts are thousands of tokens long
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class Sampler:
    """Greedy when temperature is 0, else temperature and nucleus sampling from a seeded generator."""

    def __init__(self, temperature: float, top_p: float, seed: int | None) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray) -> int:
        if self.temperature <= 0:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / self.temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        if self.top_p < 1.0:
            order = np.argsort(-probs)
            keep = order[: int(np.searchsorted(np.cumsum(probs[order]), self.top_p)) + 1]
            mask = np.zeros_like(probs)
            mask[keep] = probs[keep]
            probs = mask / mask.sum()
        return int(self.rng.choice(len(probs), p=probs))


class StopStrings:
    """Holds back text that may be the start of a stop string; cuts the text where one appears.

    `lead` is text already in place before the output (the end of the code before the cursor), so that a stop
    string such as "\n```" matches when the output starts with "```" on a fresh line.
    """

    def __init__(self, stops: list[str], lead: str = "") -> None:
        self.stops = [s for s in stops if s]
        self.keep = max((len(s) for s in self.stops), default=1) - 1
        self.lead = lead[len(lead) - self.keep :] if self.keep else ""
        self.pending = ""
        self.hit = False

    def push(self, text: str) -> str:
        """The part of the text seen so far that is safe to show now."""
        self.pending += text
        window = self.lead + self.pending
        # a stop counts only where it takes in some output: one wholly inside the lead was in the prompt already
        found = [at for stop in self.stops if (at := window.find(stop, max(0, len(self.lead) - len(stop) + 1))) >= 0]
        if found:
            self.hit = True
            out = self.pending[: max(0, min(found) - len(self.lead))]
            self.pending = ""
            return out
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(window)), 0, -1):
                if window.endswith(stop[:n]):
                    hold = max(hold, min(n, len(self.pending)))
                    break
        out = self.pending[: len(self.pending) - hold]
        self.pending = self.pending[len(self.pending) - hold :]
        if self.keep:
            self.lead = (self.lead + out)[-self.keep :]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out
