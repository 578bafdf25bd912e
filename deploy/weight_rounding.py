"""Float-side preparation of a network for post-training int8 quantisation (PyTorch, in place):
BN folding, per-channel int8 weight grids chosen for least squared error, and empirical bias correction.

Per-channel max-abs int8 weights alone move the RLE-0.5x keypoints by ~8 px on real crops (~3 px with 8
bits in every layer); picking each channel's clipping range by least squared error and then correcting
every layer's output mean (Nagel et al., 2019, "Data-Free Quantization", empirical variant) brings that
down to 1.9 px. The weights are
left exactly on their int8 grid, whose top level is the largest magnitude, so ONNX Runtime's max-abs
quantiser reproduces the same integers.

Per-tensor grids (``per_channel=False``, for chips that need them) are chosen the same way over the whole
tensor, after cross-layer equalization (:mod:`deploy.equalization`): without it MobileNetV2's BN-folded
channel ranges, up to 1e6 apart, leave most channels on a handful of levels or none.

The grid has 127 levels a side for depthwise convolutions and Linear layers and 64 for every other
convolution (:func:`models.int8_grid.weight_levels`, which says why: int16 saturation in ONNX Runtime's
x86 kernels without VNNI).
"""
from __future__ import annotations

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from deploy.equalization import equalize_cross_layer, run_with_hooks
from models.int8_grid import weight_levels

CLIP_RATIOS = tuple(1.0 - 0.02 * i for i in range(20))


def fold_batch_norms(network: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d (its only user) into the conv and replace the
    BN by ``nn.Identity``, in place (eval-mode statistics); returns the number folded."""

    graph = fx.symbolic_trace(network).graph
    modules = dict(network.named_modules())
    folded = 0
    for node in graph.nodes:
        if node.op != 'call_module' or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == 'call_module' and len(src.users) == 1
                and isinstance(modules.get(src.target), nn.Conv2d)):
            continue
        fused = fuse_conv_bn_eval(modules[src.target].eval(), modules[node.target].eval())
        for name, module in ((src.target, fused), (node.target, nn.Identity())):
            parent, _, child = name.rpartition('.')
            setattr(network.get_submodule(parent) if parent else network, child, module)
        folded += 1
    return folded


def _round_to_grid(weight: torch.Tensor, clip: torch.Tensor, levels: int) -> torch.Tensor:
    """Round onto steps of ``clip / levels`` within +-clip; ``clip`` has one value per output channel or one
    for the whole tensor."""
    step = (clip / levels).clamp_min(1e-12).view(-1, 1)
    return (torch.round(weight.reshape(len(clip), -1) / step).clamp(-levels, levels) * step).view_as(weight)


def round_weights_mse(layer: nn.Module, levels: int | None = None, per_channel: bool = True) -> None:
    """Snap a Conv2d/Linear weight to a symmetric grid of ``levels`` steps a side (default
    :func:`models.int8_grid.weight_levels`), one per output channel (else one for the whole tensor),
    whose clipping range (a fraction of the max-abs, :data:`CLIP_RATIOS`) minimises the squared rounding
    error."""
    levels = weight_levels(layer) if levels is None else levels
    weight = layer.weight.data
    max_abs = weight.reshape(weight.shape[0] if per_channel else 1, -1).abs().amax(dim=1)
    best_err = torch.full_like(max_abs, float('inf'))
    best_clip = max_abs.clone()
    for ratio in CLIP_RATIOS:
        clip = max_abs * ratio
        err = ((_round_to_grid(weight, clip, levels) - weight) ** 2).reshape(len(clip), -1).sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_clip = torch.where(better, clip, best_clip)
    layer.weight.data = _round_to_grid(weight, best_clip, levels)


@torch.no_grad()
def prepare_weights_for_int8(network: nn.Module, calib_inputs: torch.Tensor, batch_size: int = 32,
                             per_channel: bool = True, equalize: bool | None = None) -> None:
    """BN folding, cross-layer equalization (with ``equalize``, by default for per-tensor grids only),
    least-squares int8 weight grids (:func:`models.int8_grid.weight_levels`; per output channel, else per
    tensor) and empirical bias correction, in place.

    The bias correction of each layer is the mean (over the calibration crops and positions) of
    ``layer(x; W_float - W_int8)`` with ``x`` the layer's float input, measured in one float pass.

    Args:
        network: a traceable float network (e.g. a TopdownPoseEstimator), in eval mode.
        calib_inputs: normalised network inputs (N, 3, H, W).
    """
    network.eval()
    fold_batch_norms(network)
    if not per_channel if equalize is None else equalize:
        equalize_cross_layer(network, calib_inputs)
    layers = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    rounded = {}
    for layer in layers:
        original = layer.weight.data.clone()
        round_weights_mse(layer, per_channel=per_channel)
        rounded[layer], layer.weight.data = layer.weight.data, original  # measured on the float network
    sums = {layer: torch.zeros(layer.weight.shape[0]) for layer in layers}
    counts = dict.fromkeys(layers, 0)

    def measure(layer: nn.Module, args: tuple, _output: torch.Tensor) -> None:
        delta = layer.weight.data - rounded[layer]
        if isinstance(layer, nn.Conv2d):
            out = nn.functional.conv2d(args[0], delta, None, layer.stride, layer.padding, layer.dilation,
                                       layer.groups).transpose(0, 1).flatten(1)
        else:
            out = nn.functional.linear(args[0], delta).reshape(-1, delta.shape[0]).t()
        sums[layer] += out.sum(dim=1).cpu()
        counts[layer] += out.shape[1]

    run_with_hooks(network, calib_inputs, layers, measure, batch_size)
    for layer in layers:
        layer.weight.data = rounded[layer]
        correction = (sums[layer] / max(counts[layer], 1)).to(layer.weight.device)
        if layer.bias is None:
            layer.bias = nn.Parameter(correction)
        else:
            layer.bias.data += correction
