"""Convert layer by layer within a few GB: the builder's own graph and quantizers, with weights that come and go.

On its own the model builder loads the whole checkpoint with transformers (MXFP4 experts dequantized to bf16:
~42 GB for gpt-oss-20b), keeps every initializer of the graph in memory, and quantizes the MatMul and Gather
weights at the end, after a copy of the whole model into a protobuf. The streaming conversion changes where the
weights live, not what is computed:

- the module tree the builder walks is built on the meta device; each unit (embedding, decoder layer, final
  norm, lm_head) gets its parameters from the memory-mapped safetensors when the builder reaches it, and gives
  them back when it moves on;
- experts are decoded (MXFP4) or read (bf16) one expert at a time, by the builder's own MXFP4 loader on a slice
  of the checkpoint, as the builder quantizes them one at a time;
- after each unit, the MatMul/Gather weights the builder's final pass would quantize are quantized right away by
  the same onnxruntime quantizer, node by node, and every large initializer moves to a spill file on disk;
- at the end the builder's own `save_model` writes the folder, reading each tensor back from the spill as it
  writes it.

The result is the folder the builder writes, byte for byte (tests/test_streaming.py proves it on `tiny` and on
the full-width `slice:1` against the builder run as it stands).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from export.checkpoint import Checkpoint
from export.errors import ExportError

# Initializers at least this large go to the spill file; the small ones (norms, biases, constants) stay.
SPILL_MIN_BYTES = 64 * 1024
SPILL_NAME = "spill.bin"
# Weights waiting for the quantizer at least this large (the embedding, the lm_head) go to a scratch file that is
# deleted once they are quantized: read back memory-mapped, never held twice. Smaller ones wait in memory.
SCRATCH_NAME = "scratch.bin"
SCRATCH_MIN_BYTES = 256 * 2**20
WRITE_CHUNK_BYTES = 64 * 2**20


def supports(precision: str, provider: str) -> bool:
    """The streaming conversion covers the quantized builds with a QMoE node (CPU, CUDA). fp32, and DirectML's
    decomposed MoE (dense expert weights as Gather inputs), keep the builder as it is."""
    return precision in ("int4", "int8") and provider in ("cpu", "cuda")


class Spill:
    """An append-only file for tensors the conversion is done with, read back one at a time when saving."""

    def __init__(self, folder: Path, name: str = SPILL_NAME) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / name
        self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115  (closed by close())
        self.size = 0
        self.locations: dict[str, tuple[int, int]] = {}  # tensor name -> (offset, length)

    def put(self, name: str, tensor: Any) -> Any:
        """Append a tensor's bytes; return the tensor that reads them back, and keeps nothing, in its place."""
        offset, length = self.write(_tensor_bytes(tensor))
        self.locations[name] = (offset, length)
        return self.tensor(name, tensor.dtype, tensor.shape, offset, length)

    def external_proto(self, name: str, tensor: Any) -> Any:
        """A put tensor as the TensorProto the quantizer reads: external data in this file, named relative to its
        folder (the quantizer runs there)."""
        import onnx

        offset, length = self.locations[name]
        proto = onnx.TensorProto(name=name, data_type=int(tensor.dtype), dims=list(tensor.shape.numpy()))
        proto.data_location = onnx.TensorProto.EXTERNAL
        for key, item in (("location", self.path.name), ("offset", str(offset)), ("length", str(length))):
            entry = proto.external_data.add()
            entry.key, entry.value = key, item
        return proto

    def write(self, data: np.ndarray | bytes) -> tuple[int, int]:
        """Append the bytes of data (a numpy array in C order, whatever its strides) and say where they are."""
        offset = self.size
        if isinstance(data, bytes):
            self._write_all(memoryview(data))
        elif data.flags.c_contiguous or data.ndim == 0:
            self._write_all(np.ascontiguousarray(data).reshape(-1).view(np.uint8).data)
        else:
            # A transposed weight (the lm_head's) is written a block of rows at a time: never a second full copy.
            rows = max(1, WRITE_CHUNK_BYTES // max(1, data[0].nbytes))
            for start in range(0, data.shape[0], rows):
                block = np.ascontiguousarray(data[start : start + rows])
                self._write_all(block.reshape(-1).view(np.uint8).data)
        return offset, self.size - offset

    def _write_all(self, view: memoryview) -> None:
        written = 0
        while written < len(view):
            written += self._file.write(view[written:])
        self.size += written

    def tensor(self, name: str, dtype: Any, shape: Any, offset: int, length: int) -> Any:
        """A tensor that reads its bytes from the spill each time it is asked, and keeps nothing."""
        import onnx_ir as ir

        path = str(self.path)

        def load() -> Any:
            return ir.ExternalTensor(path, offset, length, dtype, shape=shape, name=name)

        return ir.LazyTensor(load, dtype=dtype, shape=shape, name=name)

    def close(self) -> None:
        self._file.close()


def _tensor_bytes(tensor: Any) -> np.ndarray | bytes:
    """A tensor's serialized bytes, without a copy where numpy can give a view (4-bit types come packed)."""
    if tensor.dtype.bitwidth < 8:
        return bytes(tensor.tobytes())
    return np.asarray(tensor.numpy())


def return_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc keeps them after many mid-sized frees)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    libc = ctypes.CDLL(name)
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _external_arrays_mapped() -> Iterator[None]:
    """Let the quantizer's Gather path read an external weight as its MatMul path does (memory-mapped through
    onnx-ir) instead of loading it into the TensorProto and copying it again: the same array, half the memory."""
    import onnx
    import onnx_ir as ir

    original = onnx.numpy_helper.to_array

    def to_array(tensor: Any, base_dir: str = "") -> np.ndarray:
        if onnx.external_data_helper.uses_external_data(tensor):
            return np.asarray(ir.from_proto(tensor).numpy())
        return original(tensor, base_dir)

    onnx.numpy_helper.to_array = to_array
    try:
        yield
    finally:
        onnx.numpy_helper.to_array = original


class LazyUnits:
    """The builder's module walk, with each unit's parameters present only while the builder is on it."""

    def __init__(self, model: Any, checkpoint: Checkpoint, skip: Callable[[str], bool]) -> None:
        self.model = model
        self.checkpoint = checkpoint
        self.skip = skip
        inner = model.model
        units = [inner.embed_tokens, *inner.layers, inner.norm, model.lm_head]
        self.unit_ids = {id(m) for m in units}
        self.names = {id(m): name for name, m in model.named_modules()}
        self.loaded: list[tuple[Any, str, Any]] = []

    def modules(self) -> Iterator[Any]:
        try:
            for module in self.model.__class__.modules(self.model):
                if id(module) in self.unit_ids:
                    self.release()
                    self.load(module)
                yield module
        finally:
            self.release()

    def load(self, unit: Any) -> None:
        import torch

        prefix = self.names[id(unit)]
        for module_name, module in unit.named_modules(prefix=prefix):
            for param_name, param in list(module.named_parameters(recurse=False)):
                full = f"{module_name}.{param_name}"
                if self.skip(full) or full not in self.checkpoint.tensors:
                    continue
                value = self.checkpoint.load_torch(full).to(param.dtype)
                if tuple(value.shape) != tuple(param.shape):
                    raise ExportError(f"{full} has shape {tuple(value.shape)}, the config says {tuple(param.shape)}")
                module._parameters[param_name] = torch.nn.Parameter(value, requires_grad=False)
                self.loaded.append((module, param_name, param))

    def release(self) -> None:
        for module, param_name, meta in self.loaded:
            module._parameters[param_name] = meta
        self.loaded.clear()


def meta_model(checkpoint: Checkpoint) -> Any:
    """The transformers module tree of the checkpoint, shapes and dtypes only (no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(checkpoint.path))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.eval()
    return model


class LayerExperts:
    """One layer's experts as the builder indexes them (weights[expert_id] -> [out, in] fp32), made one expert
    at a time: gate_up and down of one expert are made together, and only the last expert is kept."""

    def __init__(self, make: Callable[[int], tuple[Any, Any]], count: int) -> None:
        self._make = make
        self._count = count
        self._cached: tuple[int, tuple[Any, Any]] | None = None

    def expert(self, index: int) -> tuple[Any, Any]:
        if not 0 <= index < self._count:
            raise IndexError(index)
        if self._cached is None or self._cached[0] != index:
            self._cached = None  # let the previous expert go before making the next
            self._cached = (index, self._make(index))
        return self._cached[1]

    def projection(self, which: int) -> _Projection:
        return _Projection(self, which)


class _Projection:
    def __init__(self, experts: LayerExperts, which: int) -> None:
        self._experts = experts
        self._which = which

    def __getitem__(self, index: int) -> Any:
        return self._experts.expert(index)[self._which]

    def __len__(self) -> int:
        return self._experts._count


def mxfp4_expert_maker(builder_loader_class: type, checkpoint: Checkpoint, layer_id: int) -> Callable[[int], Any]:
    """Decode one expert with the builder's own MXFP4 loader, fed a one-expert slice of the checkpoint."""

    class OneExpertLoader(builder_loader_class):
        expert = 0

        def load_tensor(self, tensor_name: str) -> Any:
            if tensor_name not in checkpoint.tensors:
                raise ExportError(f"the checkpoint has no tensor {tensor_name}")
            return checkpoint.load_torch(tensor_name, slice(self.expert, self.expert + 1))

    loader = OneExpertLoader(str(checkpoint.path))

    def make(index: int) -> tuple[Any, Any]:
        loader.expert = index
        gate_up, down = loader.prepare_experts(layer_id, decode=True)
        return gate_up[0], down[0]

    return make


def dense_expert_maker(checkpoint: Checkpoint, layer_id: int) -> Callable[[int], Any]:
    """One expert of a bf16 checkpoint as [out, in] fp32, as the in-memory path gives the builder all of them."""
    return lambda index: (
        checkpoint.dense_experts(layer_id, "gate_up_proj", index),
        checkpoint.dense_experts(layer_id, "down_proj", index),
    )


class StreamingConversion:
    """The per-unit work: quantize the new MatMul/Gather weights as the builder's final pass would, then spill."""

    def __init__(self, model: Any, spill_dir: Path) -> None:
        self.model = model  # the builder's Model instance
        self.units: LazyUnits | None = None  # set when the builder loads the weights
        self.spill = Spill(spill_dir)
        self.scratch: Spill | None = None  # during a flush: the weights waiting for the quantizer
        self.quantized: list[str] = []  # initializer names the quantizer made, in node order
        self.seen_nodes = 0
        self._quantizer: Any = None

    # -- checks -------------------------------------------------------------------------------------------------
    def check_supported(self) -> None:
        m = self.model
        problems = []
        if m.quant_attrs.get("use_qdq"):
            problems.append("QDQ quantization")
        if getattr(m, "quantization_algo", "default") != "default":
            problems.append(f"the {m.quantization_algo} quantization method")
        if getattr(m, "int4_customized_weight_config", None):
            problems.append("mixed-precision placement")
        if getattr(m, "exact_quant_overrides", None):
            problems.append("per-node quantization overrides")
        if m.ep == "cuda" and int(m.matmul_attrs.get("weights_prepacked") or 0) > 0:
            problems.append("offline CUDA weight prepacking")
        if problems:
            raise ExportError(
                "the streaming conversion does not cover " + ", ".join(problems) + "; pass --in-memory to use the "
                "model builder as it stands"
            )

    def quantizing(self) -> bool:
        import onnx_ir as ir

        return self.model.onnx_dtype in {ir.DataType.INT4, ir.DataType.UINT4, ir.DataType.INT8, ir.DataType.UINT8}

    def quantizer(self) -> Any:
        if self._quantizer is None:
            import onnx
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
            from onnxruntime.quantization.quant_utils import QuantFormat

            qa = self.model.quant_attrs
            # The very quantizer, with the very options, that the builder's to_nbits() runs over the whole model.
            self._quantizer = MatMulNBitsQuantizer(
                model=onnx.helper.make_model(onnx.helper.make_graph([], "unit", [], [])),
                bits=qa["bits"],
                block_size=qa["matmul_block_size"],
                is_symmetric=qa["is_symmetric"],
                accuracy_level=qa["accuracy_level"],
                nodes_to_exclude=list(qa["nodes_to_exclude"]),
                quant_format=QuantFormat.QOperator,
                op_types_to_quantize=qa["op_types_to_quantize"],
                algo_config=None,
            )
        return self._quantizer

    # -- per unit -----------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Quantize the nodes made since the last flush as the builder's final pass would, and move every large
        initializer to the spill; the weights the quantizer replaces never reach the spill."""
        graph = self.model.model.graph
        nodes = list(graph)
        new_nodes = nodes[self.seen_nodes :]
        self.seen_nodes = len(nodes)
        pending = {w.name for w in map(self._quantizable_weight, new_nodes) if w is not None}
        self.scratch = Spill(self.spill.path.parent, SCRATCH_NAME) if pending else None
        try:
            self._spill_initializers(pending)
            if self.units is not None:
                self.units.release()  # the builder is done with this unit's parameters
            for node in new_nodes:
                self._quantize(node)
            self._spill_initializers(set())  # what the quantizer left as it was
        finally:
            if self.scratch is not None:
                self.scratch.close()
                self.scratch.path.unlink(missing_ok=True)
                self.scratch = None
        return_freed_memory()

    def _spill_initializers(self, pending: set[str]) -> None:
        """Move large in-memory initializers to the spill; those in pending, to the scratch (or nowhere)."""
        for name, value in self.model.model.graph.initializers.items():
            if name in self.spill.locations or value.const_value is None:
                continue
            tensor = value.const_value
            if tensor.nbytes < SPILL_MIN_BYTES:
                continue
            if name not in pending:
                value.const_value = self.spill.put(name, tensor)
            elif self.scratch is not None and tensor.nbytes >= SCRATCH_MIN_BYTES:
                value.const_value = self.scratch.put(name, tensor)
            # else it waits in memory for the quantizer
            del tensor

    def _quantizable_weight(self, node: Any) -> Any:
        """The constant weight the builder's quantizer would replace for this node, or None."""
        if not self.quantizing():
            return None
        quantizer = self.quantizer()
        ops = quantizer.algo_config.op_types_to_quantize
        if node.op_type not in ops and not (quantizer.nodes_to_include and node.name in quantizer.nodes_to_include):
            return None
        if node.name in quantizer.nodes_to_exclude:
            return None
        weight_index = 0 if node.op_type == "Gather" else 1
        weight = node.inputs[weight_index] if len(node.inputs) > weight_index else None
        if weight is None or weight.const_value is None or not weight.is_initializer():
            return None
        return weight

    def _quantize(self, node: Any) -> None:
        import onnx
        import onnx_ir as ir

        weight = self._quantizable_weight(node)
        if weight is None:
            return
        stored = [f for f in (self.scratch, self.spill) if f is not None and weight.name in f.locations]
        if stored:
            weight_proto = stored[0].external_proto(weight.name, weight.const_value)
        else:
            # Smaller weights wait in memory; the quantizer gets them inline.
            weight_proto = ir.serde.serialize_tensor(weight.const_value)
            weight_proto.name = weight.name
        node_proto = ir.serde.serialize_node(node)
        mini = onnx.helper.make_graph([node_proto], "unit", [], [], initializer=[weight_proto])
        with _working_directory(self.spill.path.parent), _external_arrays_mapped():
            self.quantizer()._process_subgraph([mini])
        made = list(mini.node)
        if len(made) == 1 and made[0].op_type == node.op_type:
            return  # left as it is (a Gather at 8 bits)
        if len(made) != 1:
            raise ExportError(f"quantizing {node.name} made {len(made)} nodes; the streaming conversion expects one")
        if len(weight.uses()) != 1:
            raise ExportError(f"the weight {weight.name} is shared by several nodes; use --in-memory")
        self._replace(node, made[0], [t for t in mini.initializer if t.name != weight.name], weight)

    def _replace(self, node: Any, made: Any, tensors: list[Any], weight: Any) -> None:
        """Turn the node into the quantized one in place: same position, same output values, new weights."""
        import onnx_ir as ir

        graph = self.model.model.graph
        by_name = {}
        for proto in tensors:
            tensor = ir.serde.deserialize_tensor(proto)
            value = ir.Value(
                name=proto.name, type=ir.TensorType(tensor.dtype), shape=ir.Shape(list(tensor.shape.numpy()))
            )
            value.const_value = self.spill.put(proto.name, tensor)
            graph.register_initializer(value)
            self.model.values[proto.name] = value
            self.quantized.append(proto.name)
            by_name[proto.name] = value
        inputs: list[Any] = []
        for name in made.input:
            if name in by_name:
                inputs.append(by_name[name])
            else:
                inputs.append(self.model.values[name] if name else None)
        node.op_type = made.op_type
        node.domain = made.domain
        node.name = made.name
        node.resize_inputs(len(inputs))
        for index, value in enumerate(inputs):
            node.replace_input_with(index, value)
        node.attributes.clear()
        for attribute in made.attribute:
            deserialized = ir.serde.deserialize_attribute(attribute)
            node.attributes[deserialized.name] = deserialized
        if not weight.uses():
            graph.initializers.pop(weight.name)
            self.model.values.pop(weight.name, None)

    # -- at the end ---------------------------------------------------------------------------------------------
    def finish(self) -> Any:
        """What the builder's to_nbits() returns: the model with opsets as its quantizer sets them, and the
        quantized initializers after the others, in node order, as its quantizer appends them."""
        self.flush()
        model = self.model.model
        if not self.quantizing():
            return model
        qa = self.model.quant_attrs
        model.opset_imports["com.microsoft"] = 1
        if "Gather" in qa["op_types_to_quantize"]:
            for domain in list(model.opset_imports):
                if domain in ("", "ai.onnx") and model.opset_imports[domain] < 21:
                    model.opset_imports[domain] = 21
            model.ir_version = max(model.ir_version, 10)
        graph = model.graph
        values = list(graph.initializers.values())
        quantized = set(self.quantized)
        order = [v for v in values if v.name not in quantized] + [graph.initializers[n] for n in self.quantized]
        graph.initializers.clear()
        for value in order:
            graph.register_initializer(value)
        return model

    def close(self) -> None:
        """Close the spill file; the caller removes its folder (after reading its size for the record)."""
        self.spill.close()
