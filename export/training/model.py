"""The stand-in's shape and its torch model: transformers' own GptOssForCausalLM, so the architecture is gpt-oss's
exactly (attention sinks, alternating sliding and full attention, yarn rope, biases, the clamped SwiGLU, top-k
routed experts). Its experts run sparsely in training (each expert sees only the tokens routed to it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn.utils import parametrize

from export.safetensors_io import TensorPlan, float_to_bf16_bits
from export.synth import SHAPES
from export.training.mxfp4 import FakeMxfp4, checkpoint_tensors

STAND_IN = SHAPES["stand-in"]
EXPERT_WEIGHTS = ("gate_up_proj", "down_proj")


def build_model(config: dict[str, Any], seed: int) -> Any:
    from transformers import GptOssConfig, GptOssForCausalLM

    torch.manual_seed(seed)
    settings = {k: v for k, v in config.items() if k != "quantization_config"}
    model_config = GptOssConfig(**settings)
    model_config._attn_implementation = "eager"  # the only attention transformers has with sinks
    model = GptOssForCausalLM(model_config)
    model.float()
    return model


def experts_of(model: Any) -> list[Any]:
    return [layer.mlp.experts for layer in model.model.layers]


def start_quantization_aware(model: Any) -> None:
    """From here on the experts compute with their MXFP4-rounded weights (straight-through gradients)."""
    for experts in experts_of(model):
        for name in EXPERT_WEIGHTS:
            parametrize.register_parametrization(experts, name, FakeMxfp4())


def end_quantization_aware(model: Any) -> None:
    """Back to plain parameters holding the unrounded weights (the writer rounds them the same way)."""
    for experts in experts_of(model):
        for name in EXPERT_WEIGHTS:
            if parametrize.is_parametrized(experts, name):
                parametrize.remove_parametrizations(experts, name, leave_parametrized=False)


def _bf16(name: str, tensor: torch.Tensor) -> TensorPlan:
    values = tensor.detach().float().contiguous().numpy()
    return TensorPlan(name, "BF16", tuple(values.shape), lambda: [float_to_bf16_bits(values)])


def _u8(name: str, tensor: torch.Tensor) -> TensorPlan:
    values = tensor.detach().contiguous().numpy().astype(np.uint8)
    return TensorPlan(name, "U8", tuple(values.shape), lambda: [values])


def checkpoint_plans(model: Any) -> list[TensorPlan]:
    """The trained weights in the release's format: experts as MXFP4 `*_blocks`/`*_scales`, bf16 elsewhere."""
    plans = []
    for name, tensor in model.state_dict().items():
        if name.rsplit(".", 1)[-1] in EXPERT_WEIGHTS and ".mlp.experts." in name:
            blocks, scales = checkpoint_tensors(tensor)
            plans += [_u8(f"{name}_blocks", blocks), _u8(f"{name}_scales", scales)]
        else:
            plans.append(_bf16(name, tensor))
    return plans
