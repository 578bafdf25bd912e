"""The int8 weight grid of each layer, shared by post-training quantisation (``deploy.weight_rounding``,
``deploy.ptq``) and quantisation-aware training (``models.qat``), so both write files that ONNX Runtime
computes exactly on every CPU.

Weights are per-channel symmetric int8. Convolutions other than depthwise ones use 7 bits, [-64, 64]
(ONNX Runtime's ``reduce_range`` grid): on x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) ONNX
Runtime's u8 x s8 convolution and GEMM kernels add each pair of adjacent products in int16 with
saturation (``vpmaddubsw``, microsoft/onnxruntime#16105), and a pair of uint8 activations up to 255 times
int8 weights up to 127 reaches 64770, silently clipped to 32767; 255 * (64 + 64) = 32640 always fits.
Depthwise convolutions run on a kernel without that int16 sum and keep the full [-127, 127].
"""
from __future__ import annotations

from torch import nn

INT8_LEVELS = 127  # symmetric int8 weights: [-127, 127]
REDUCED_LEVELS = 64  # ONNX Runtime's reduce_range int8 weights: [-64, 64], safe from int16 saturation


def is_depthwise(layer: nn.Module) -> bool:
    """A Conv2d with one input and one output channel per group (ONNX Runtime's exact depthwise kernel)."""
    return isinstance(layer, nn.Conv2d) and layer.groups == layer.in_channels == layer.out_channels


def weight_levels(layer: nn.Module) -> int:
    """Levels a side of ``layer``'s symmetric int8 weight grid: :data:`REDUCED_LEVELS` for convolutions
    other than depthwise ones (their int8 kernels may sum pairs of u8 x s8 products in int16),
    :data:`INT8_LEVELS` for depthwise convolutions and Linear layers."""
    if isinstance(layer, nn.Conv2d) and not is_depthwise(layer):
        return REDUCED_LEVELS
    return INT8_LEVELS
