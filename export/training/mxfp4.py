"""MXFP4 as the gpt-oss release stores its experts: FP4 (e2m1) codes in blocks of 32 along the input dimension,
two per byte (low nibble first), each block with a power-of-two scale stored as a biased exponent byte.

The same rounding serves quantization-aware training (a straight-through fake quantizer) and the checkpoint
writer, so the weights written are exactly the ones the last training steps used.
"""

from __future__ import annotations

import torch
from torch import nn

BLOCK = 32
FP4_MAX = 6.0
# Midpoints between the magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6: a value rounds to the nearest magnitude.
_MIDPOINTS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)
_MAGNITUDES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def _blocks_of(weight: torch.Tensor) -> torch.Tensor:
    """[..., K] -> [..., K/32, 32]."""
    if weight.shape[-1] % BLOCK:
        raise ValueError(f"MXFP4 needs the input dimension to be a multiple of {BLOCK}, got {weight.shape[-1]}")
    return weight.reshape(*weight.shape[:-1], weight.shape[-1] // BLOCK, BLOCK)


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., K] float -> (codes [..., K/32, 32] uint8 in 0..15, exponents [..., K/32] int32)."""
    blocks = _blocks_of(weight.detach().float())
    amax = blocks.abs().amax(dim=-1)
    exponent = torch.ceil(torch.log2(torch.clamp(amax, min=2.0**-126) / FP4_MAX)).clamp(-127, 127).to(torch.int32)
    scaled = blocks / torch.ldexp(torch.ones_like(amax), exponent)[..., None]
    magnitude = torch.bucketize(scaled.abs().contiguous(), torch.tensor(_MIDPOINTS))
    codes = (magnitude + 8 * (scaled < 0).to(torch.int64)).to(torch.uint8)
    return codes, exponent


def dequantize(codes: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    magnitudes = torch.tensor(_MAGNITUDES)
    values = magnitudes[(codes & 7).long()] * torch.where(codes >= 8, -1.0, 1.0)
    values = values * torch.ldexp(torch.ones(exponent.shape), exponent)[..., None]
    return values.reshape(*values.shape[:-2], -1)


def pack(codes: torch.Tensor, exponent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The checkpoint's `*_blocks` ([..., K/32, 16] uint8) and `*_scales` ([..., K/32] uint8, exponent + 127)."""
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks.contiguous(), (exponent + 127).to(torch.uint8)


def fake_quantize(weight: torch.Tensor) -> torch.Tensor:
    """The weight rounded to MXFP4 in the forward pass, the gradient passed straight through in the backward."""
    codes, exponent = quantize(weight)
    return weight + (dequantize(codes, exponent).to(weight.dtype) - weight).detach()


class FakeMxfp4(nn.Module):
    """A parametrization for experts stored input-major ([E, in, out], as transformers holds them)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize(weight.transpose(1, 2)).transpose(1, 2)


def checkpoint_tensors(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An input-major expert weight [E, in, out] as the release stores it: blocks [E, out, in/32, 16], scales."""
    return pack(*quantize(weight.transpose(1, 2)))
