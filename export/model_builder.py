"""Drive onnxruntime-genai's model builder for gpt-oss: the options we need, dense-expert input, progress.

The builder stays the reference implementation. This module only chooses its options, feeds it dense
(bf16) experts when a checkpoint has no MXFP4 tensors, reports its progress, and sets the QMoE
accuracy level it leaves at 0.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import onnx

from export import experts
from export.checkpoint import Checkpoint
from export.errors import OptionError
from export.presets import EXPERT_ENCODINGS

SUPPORTED = {("int4", "cpu"), ("int4", "cuda"), ("int4", "dml"), ("int8", "cpu"), ("fp32", "cpu"), ("fp32", "cuda")}
QMOE_ACCURACY_LEVEL = 4


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "int4"
    provider: str = "cpu"
    experts: str | None = None  # None: as the precision says (int4 QMoE at int4, dense at fp32)

    def check(self) -> None:
        if self.experts not in (None, *EXPERT_ENCODINGS):
            raise OptionError(f"experts must be one of {', '.join(EXPERT_ENCODINGS)}, not {self.experts}")
        if self.experts in ("int4", "int4-fitted") and self.precision == "fp32":
            raise OptionError("int4 experts come with --precision int4 or int8; at fp32 the experts stay dense")
        if self.experts == "int8" and self.provider != "cpu":
            raise OptionError("exact int8 experts are built for the CPU provider only")
        if (self.precision, self.provider) not in SUPPORTED:
            pairs = ", ".join(f"{p}/{e}" for p, e in sorted(SUPPORTED))
            raise OptionError(
                f"precision {self.precision} is not supported on provider {self.provider}; supported pairs: {pairs}"
            )

    def builder_extra_options(self) -> dict[str, str]:
        extra = {
            # A windowed cache breaks rewind_to once the sliding window fills; prefix reuse needs rewinds.
            "windowed_kv_cache": "false",
            # Logits only for the positions asked for: 2.7x faster prefill, and the runtime needs no more.
            "prune_lm_head": "true",
        }
        if self.precision in ("int4", "int8"):
            # The embedding Gather too (the builder quantizes it at int4; at int8 it stays fp32, 2.3 GB at 20b).
            extra["op_types_to_quantize"] = "MatMul/Gather"
        if self.experts is not None:
            extra["moe_quant_type"] = "int8" if self.experts == "int8" else "int4"
        return extra

    @property
    def fitted_int4_experts(self) -> bool:
        """int4 experts with a least-squares scale per block, when asked for (CPU only: the CUDA builder packs its
        experts for its own kernels, from its own scales)."""
        return self.provider == "cpu" and self.experts == "int4-fitted"


@dataclass
class BuildProgress:
    """Callbacks the caller turns into progress bars; all optional."""

    on_stage: Callable[[str], None] | None = None
    on_layer: Callable[[int, int], None] | None = None
    make_save_bar: Callable[..., Any] | None = None


def _builder_modules() -> tuple[Any, Any]:
    import onnxruntime_genai.models.builder as builder  # imports torch: only when exporting

    base = sys.modules[builder.GPTOSSModel.__mro__[1].__module__]
    return builder, base


def _model_class(
    builder: Any, checkpoint: Checkpoint, progress: BuildProgress, options: BuildOptions, spill_dir: Path | None
) -> type:
    class GptOssExportModel(builder.GPTOSSModel):
        """The builder's gpt-oss model, with dense-expert input and progress reporting."""

        def load_weights(self, input_path: str) -> Any:
            if progress.on_stage:
                progress.on_stage("loading checkpoint")
            return super().load_weights(input_path)

        def make_embedding_lookup(self, embedding: Any, basename: str, lm_head: Any) -> str:
            if options.precision != "int8" or self.tied_quantized_embeddings or self.tied_unquantized_embeddings:
                return super().make_embedding_lookup(embedding, basename, lm_head)
            return _int8_embedding_lookup(self, embedding, basename)

        def make_layer(self, layer_id: int, layer: Any) -> None:
            super().make_layer(layer_id, layer)
            if progress.on_layer:
                progress.on_layer(layer_id + 1, self.num_layers)

        def load_mxfp4_experts(self, layer_id: int, decode: bool = False) -> Any:
            if checkpoint.format == "mxfp4":
                return super().load_mxfp4_experts(layer_id, decode=decode)
            if not decode:
                raise OptionError("MXFP4 experts cannot be made from a bf16 checkpoint; use int4 experts")
            # Output-major [E, out, in], exactly what the MXFP4 loader returns after decoding.
            return tuple(checkpoint.dense_experts(layer_id, proj) for proj in ("gate_up_proj", "down_proj"))

        def _matmulnbits_blockwise_quantize(self, weights: Any, bits: Any = None) -> Any:
            bits = int(bits if bits is not None else self.moe_attrs["expert_weight_bits"])
            block = int(self.quant_attrs["qmoe_block_size"])
            if options.experts == "int8" and bits == 8:
                return experts.exact_int8_blocks(weights, block)
            if options.fitted_int4_experts and bits == 4:
                fitted = experts.fitted_int4_blocks(weights, block)
                if fitted is not None:  # None: not MXFP4 values (a bf16 fine-tune), left to the builder
                    return fitted
            return super()._matmulnbits_blockwise_quantize(weights, bits)

        def save_model(self, out_dir: str) -> None:
            if progress.on_stage:
                progress.on_stage("quantizing and saving")
            super().save_model(out_dir)

    if spill_dir is None:
        return GptOssExportModel
    return _streaming_class(GptOssExportModel, checkpoint, spill_dir, progress)


def _int8_embedding_lookup(model: Any, embedding: Any, basename: str) -> str:
    """The embedding in int8 blocks behind a GatherBlockQuantized (the builder's int8 pass leaves it in fp32)."""
    block = int(model.quant_attrs["matmul_block_size"])
    data, scales = experts.int8_embedding_blocks(embedding.detach(), block)
    model.make_initializer(data, "model.embed_tokens.qweight")
    model.make_initializer(scales, "model.embed_tokens.scales", to=model.io_dtype)
    name = f"{basename}/GatherBlockQuantized"
    model.make_node(
        "GatherBlockQuantized",
        inputs=["model.embed_tokens.qweight", model.input_names["input_ids"], "model.embed_tokens.scales"],
        outputs=[f"{name}/output_0"],
        name=name,
        domain="com.microsoft",
        bits=8,
        block_size=block,
        gather_axis=0,
        quantize_axis=1,
    )
    return f"{name}/output_0"


def _streaming_class(base_class: type, checkpoint: Checkpoint, spill_dir: Path, progress: BuildProgress) -> type:
    from export import streaming

    dense_experts = (".mlp.experts.gate_up_proj", ".mlp.experts.down_proj")

    class StreamingExportModel(base_class):
        """The same model, converted unit by unit within a few GB (see export/streaming.py)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conversion = streaming.StreamingConversion(self, spill_dir)
            self.conversion.check_supported()

        def load_weights(self, input_path: str) -> Any:
            if progress.on_stage:
                progress.on_stage("reading the checkpoint layer by layer")
            model = streaming.meta_model(checkpoint)
            units = streaming.LazyUnits(model, checkpoint, skip=lambda name: name.endswith(dense_experts))
            model.modules = units.modules  # the builder walks self.weights.modules()
            self.conversion.units = units
            return model

        def load_mxfp4_experts(self, layer_id: int, decode: bool = False) -> Any:
            if not decode:
                return super().load_mxfp4_experts(layer_id, decode=decode)
            if checkpoint.format == "mxfp4":
                from onnxruntime_genai.models.loaders.gptoss import GptOssMXFP4Loader

                make = streaming.mxfp4_expert_maker(GptOssMXFP4Loader, checkpoint, layer_id)
            else:
                make = streaming.dense_expert_maker(checkpoint, layer_id)
            experts = streaming.LayerExperts(make, int(self.moe_attrs["num_experts"]))
            return experts.projection(0), experts.projection(1)

        def make_embedding(self, embedding: Any) -> None:
            super().make_embedding(embedding)
            del embedding  # the flush gives the weights back: hold no reference here
            self.conversion.flush()

        def make_layer(self, layer_id: int, layer: Any) -> None:
            super().make_layer(layer_id, layer)
            self.conversion.flush()

        def make_lm_head(self, lm_head: Any) -> None:
            super().make_lm_head(lm_head)
            self.conversion.flush()

        def to_nbits(self) -> Any:
            return self.conversion.finish()

        def save_model(self, out_dir: str) -> None:
            try:
                super().save_model(out_dir)
            finally:
                self.conversion.close()

    return StreamingExportModel


@contextlib.contextmanager
def _patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, original)


@contextlib.contextmanager
def redirect_output(log: TextIO) -> Iterator[None]:
    """Send fds 1 and 2 (Python, logging handlers and C++ alike) to log: the builder is chatty."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def run_builder(
    checkpoint: Checkpoint,
    out_dir: Path,
    work_dir: Path,
    options: BuildOptions,
    progress: BuildProgress,
    log: TextIO,
    streaming: bool = True,
) -> dict[str, str]:
    """Build the ONNX model folder in out_dir; the builder's chatter goes to log. Returns its extra options.

    streaming: convert unit by unit within a few GB (export/streaming.py) where the precision allows it; otherwise
    the builder holds the whole model in memory as it does on its own.
    """
    options.check()
    builder, base = _builder_modules()
    extra = options.builder_extra_options()
    model_path = str(checkpoint.path)
    cache_dir = str(work_dir / "builder_cache")
    save_bar = progress.make_save_bar or base.tqdm
    spill_dir = work_dir / "spill" if streaming and uses_streaming(options) else None
    with redirect_output(log):
        prepared = builder.parse_extra_options(
            model_path,
            model_path,
            str(out_dir),
            options.precision,
            options.provider,
            cache_dir,
            [f"{k}={v}" for k, v in extra.items()],
        )
        with (
            _patched(builder, "GPTOSSModel", _model_class(builder, checkpoint, progress, options, spill_dir)),
            _patched(base, "tqdm", save_bar),
        ):
            builder.create_model(
                model_path, model_path, str(out_dir), options.precision, options.provider, cache_dir, **prepared
            )
    if options.provider == "cpu":
        set_qmoe_accuracy_level(out_dir / "model.onnx", QMOE_ACCURACY_LEVEL)
    return extra


def uses_streaming(options: BuildOptions) -> bool:
    from export.streaming import supports

    return supports(options.precision, options.provider)


def set_qmoe_accuracy_level(model_path: Path, level: int) -> int:
    """Set accuracy_level on every QMoE node (the builder leaves 0; 4 gave +22-27% decode on the CPU).

    Only the graph file is rewritten; the external weight file is untouched.
    """
    model = onnx.load(str(model_path), load_external_data=False)
    changed = 0
    for node in model.graph.node:
        if node.op_type == "QMoE":
            kept = [a for a in node.attribute if a.name != "accuracy_level"]
            del node.attribute[:]
            node.attribute.extend(kept)
            node.attribute.append(onnx.helper.make_attribute("accuracy_level", level))
            changed += 1
    if changed:
        onnx.save(model, str(model_path))
    return changed
