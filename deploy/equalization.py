"""Cross-layer equalization (CLE; Nagel et al., 2019, "Data-Free Quantization Through Weight Equalization
and Bias Correction", sec. 4.1) of a BN-folded float network, in place, for per-tensor int8 weights.

After BN folding, MobileNetV2's output channels of one layer differ in weight range by orders of magnitude
(depthwise channels by up to 1e6 in RLE-0.5x, the last 1x1 conv by 70x), so one int8 grid per tensor
rounds most channels to zero: per-tensor int8 weights moved the RLE-0.5x keypoints by 181 px (AP 0).
For a pair ``producer -> (activation) -> consumer`` the network computes the same function when output
channel ``i`` of the producer (weights and bias) is divided by ``s_i > 0`` and input channel ``i`` of every
consumer is multiplied by ``s_i``, as long as everything in between is positive-scale equivariant (ReLU,
identity, average / max pooling, flatten). With ``s_i = sqrt(r1_i * r2_i) / r2_i`` (``r1_i``: max |w| of
the producer's output channel, ``r2_i``: of the consumers' input channel) both become
``sqrt(r1_i * r2_i)``; pairs sharing a layer are equalized in turn until the scales stop changing.

ReLU6 (MobileNetV2's activation) clips at 6 and is not scale equivariant: ``min(relu(y / s), 6)`` equals
``min(relu(y), 6) / s`` only while neither side reaches 6. On the RLE-0.5x sample crops 20-90% of the
channels behind each ReLU6 reach 6 at some point (1% of all activations), so replacing ReLU6 by ReLU, the
usual shortcut, would change the float network itself. Instead the pre-activation maximum ``m_i`` of
each channel is measured on the calibration inputs: channels that reach ``CLIP_HEADROOM * 6`` keep
``s_i = 1``; the others get ``s_i >= m_i / (CLIP_HEADROOM * 6)`` so that they stay below the clip after
scaling too. The float network is then unchanged on those inputs (and on any input that keeps each
equalized channel below 6 in both the original and the scaled units). The same bound keeps every
activation of the per-tensor uint8 activation grids within [0, 6].
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from models.int8_grid import is_depthwise

CLIP_HEADROOM = 0.9  # equalized channels stay below 0.9 x the clip (6 for ReLU6) on the calibration inputs
SCALE_LIMIT = 1e4  # scales within [1 / SCALE_LIMIT, SCALE_LIMIT] (dead channels have ranges near 0)
_EQUIVARIANT = (nn.Identity, nn.ReLU, nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.MaxPool2d, nn.Dropout)
_RESHAPES = ('reshape', 'view', 'flatten', torch.flatten, torch.reshape)


@dataclass
class EqualizationPair:
    """``producer`` (a Conv2d) feeds, through scale-equivariant ops and at most ``clip`` (the upper bound of
    a ReLU6-like clamp, None when there is none), only ``consumers`` (Conv2d with groups 1, depthwise Conv2d
    or Linear), which read its channels as their input channels."""
    producer: nn.Conv2d
    consumers: list[nn.Module]
    clip: float | None = None
    name: str = ''


def find_equalization_pairs(network: nn.Module, example: torch.Tensor) -> list[EqualizationPair]:
    """Every producer/consumer pair of a traceable network (see :class:`EqualizationPair`); ``example`` is
    one (B, 3, H, W) input, used to check that reshapes only flatten (B, C, 1, 1) to (B, C)."""
    gm = fx.symbolic_trace(network)
    ShapeProp(gm).propagate(example)
    modules = dict(gm.named_modules())
    pairs = []
    for node in gm.graph.nodes:
        producer = modules.get(node.target) if node.op == 'call_module' else None
        if not isinstance(producer, nn.Conv2d):
            continue
        consumers, clips = _consumers(node, producer.out_channels, modules)
        if consumers and len(clips) <= 1:
            pairs.append(EqualizationPair(producer, consumers, clips.pop() if clips else None, node.target))
    return pairs


def _consumers(start: fx.Node, channels: int, modules: dict[str, nn.Module]
               ) -> tuple[list[nn.Module], set[float]]:
    """The layers reading ``start``'s channels and the clip bounds on the way; ([], ...) when any path
    from ``start`` reaches something that is not scale equivariant."""
    consumers, clips, todo = [], set(), [start]
    while todo:
        for user in todo.pop().users:
            module = modules.get(user.target) if user.op == 'call_module' else None
            if user.op == 'call_function' and user.target is getattr and user.args[1:] == ('shape',):
                continue  # reading the shape does not depend on the values
            if isinstance(module, nn.Linear) and module.in_features == channels or \
                    isinstance(module, nn.Conv2d) and module.in_channels == channels and \
                    (module.groups == 1 or is_depthwise(module)):
                consumers.append(module)
            elif isinstance(module, _EQUIVARIANT):
                todo.append(user)
            elif isinstance(module, nn.Hardtanh) and module.min_val == 0:  # ReLU6 is Hardtanh(0, 6)
                clips.add(float(module.max_val))
                todo.append(user)
            elif user.target in _RESHAPES and _flattens_channels(user, channels):
                todo.append(user)
            else:
                return [], clips
    return consumers, clips


def _flattens_channels(node: fx.Node, channels: int) -> bool:
    shape = node.meta.get('tensor_meta')
    source = node.args[0].meta.get('tensor_meta') if isinstance(node.args[0], fx.Node) else None
    return shape is not None and source is not None and tuple(shape.shape[1:]) == (channels,) and \
        tuple(source.shape[1:]) in ((channels,), (channels, 1, 1))


def _input_ranges(layer: nn.Module) -> torch.Tensor:
    """(C_in,) max |w| of each input channel of a consumer (for a depthwise conv: of each filter)."""
    weight = layer.weight.detach()
    if is_depthwise(layer):
        return weight.flatten(1).abs().amax(dim=1)
    return weight.transpose(0, 1).flatten(1).abs().amax(dim=1)


def _scale_inputs(layer: nn.Module, scale: torch.Tensor) -> None:
    shape = [-1] + [1] * (layer.weight.dim() - 1) if is_depthwise(layer) else \
        [1, -1] + [1] * (layer.weight.dim() - 2)
    layer.weight.data *= scale.view(shape)


@torch.no_grad()
def pre_activation_maxima(network: nn.Module, pairs: list[EqualizationPair], calib_inputs: torch.Tensor,
                          batch_size: int = 32) -> dict[nn.Module, torch.Tensor]:
    """(C,) maximum of each output channel of the producers of clipped pairs over ``calib_inputs``."""
    clipped = [pair.producer for pair in pairs if pair.clip is not None]
    maxima = {layer: torch.full((layer.out_channels,), -float('inf')) for layer in clipped}

    def measure(layer: nn.Module, _args: tuple, output: torch.Tensor) -> None:
        maxima[layer] = torch.maximum(maxima[layer], output.transpose(0, 1).flatten(1).amax(dim=1).cpu())

    run_with_hooks(network, calib_inputs, clipped, measure, batch_size)
    return maxima


def run_with_hooks(network: nn.Module, inputs: torch.Tensor, layers: list[nn.Module], hook: Callable,
                   batch_size: int = 32) -> None:
    """Run ``network`` over ``inputs`` (N, ...) ``batch_size`` at a time with ``hook`` as a forward hook of
    every layer in ``layers`` (removed afterwards)."""
    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        for start in range(0, len(inputs), batch_size):
            network(inputs[start:start + batch_size])
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def equalize_cross_layer(network: nn.Module, calib_inputs: torch.Tensor, iterations: int = 50,
                         tol: float = 1e-4, float_layers: tuple[type, ...] = (nn.Linear,)
                         ) -> list[EqualizationPair]:
    """Equalize the weight ranges of every pair of :func:`find_equalization_pairs`, in place (module
    docstring); BN should be folded first (:func:`deploy.weight_rounding.fold_batch_norms`).

    Args:
        network: a traceable float network in eval mode.
        calib_inputs: normalised network inputs (N, 3, H, W); they bound the scales behind clipped
            activations (ReLU6) so that the network's outputs on them do not change.
        iterations: at most this many sweeps over all pairs; stops earlier when no scale moved more than
            ``tol`` (relative).
        float_layers: layer types the int8 graph keeps in float (:data:`deploy.ptq.DEFAULT_OP_TYPES` leaves
            the heads' Linear layers float): a producer whose consumers are all float gets every channel
            the range of its smallest one (its consumers take all the variation).

    Returns:
        the pairs found.
    """
    pairs = find_equalization_pairs(network, calib_inputs[:1])
    maxima = pre_activation_maxima(network, pairs, calib_inputs)
    to_float = [all(isinstance(c, float_layers) for c in pair.consumers) for pair in pairs]
    quantized = [pair for pair, last in zip(pairs, to_float) if not last]
    for _ in range(iterations):
        moved = max((_apply_scale(pair, maxima, False) for pair in quantized), default=0.0)
        if moved < tol:
            break
    for pair in (pair for pair, last in zip(pairs, to_float) if last):  # once: they feed nothing quantised
        _apply_scale(pair, maxima, True)
    return pairs


def _apply_scale(pair: EqualizationPair, maxima: dict[nn.Module, torch.Tensor], to_float: bool) -> float:
    """Equalize one pair in place; returns the largest |log s_i|."""
    producer = pair.producer
    scale = _pair_scale(pair, maxima.get(producer), to_float)
    producer.weight.data /= scale.view(-1, *[1] * (producer.weight.dim() - 1))
    if producer.bias is not None:
        producer.bias.data /= scale
    for consumer in pair.consumers:
        _scale_inputs(consumer, scale)
    if producer in maxima:
        maxima[producer] /= scale
    return float(scale.log().abs().max())


def _pair_scale(pair: EqualizationPair, maxima: torch.Tensor | None, to_float: bool) -> torch.Tensor:
    """(C,) scales ``s_i``: producer channel ``i`` is divided by them, consumer input ``i`` multiplied.

    Channels that reach the clip keep ``s_i = 1`` and so fix the producer's range ``F1`` and the consumers'
    ``F2``; the others are equalized relative to those, ``r1_i / s_i / F1 = r2_i * s_i / F2`` (the paper's
    ``r1_i / s_i = r2_i * s_i`` when nothing is fixed).
    """
    r1 = pair.producer.weight.detach().flatten(1).abs().amax(dim=1)
    fixed = maxima > CLIP_HEADROOM * pair.clip if pair.clip is not None else torch.zeros_like(r1, dtype=bool)
    if to_float:
        target = r1[fixed].max() if fixed.any() else r1.min().clamp_min(float(r1.max()) / SCALE_LIMIT)
        scale = r1 / target
    else:
        r2 = torch.stack([_input_ranges(c) for c in pair.consumers]).amax(dim=0)
        ratio = (r2[fixed].max() / r1[fixed].max()).clamp_min(1e-30) if fixed.any() else 1.0
        scale = torch.where((r1 > 0) & (r2 > 0), (r1 / r2.clamp_min(1e-30) * ratio).sqrt(),
                            torch.ones_like(r1))
    scale = scale.clamp(1 / SCALE_LIMIT, SCALE_LIMIT)
    if pair.clip is not None:  # below the clip in both units: s_i >= m_i / bound
        bound = CLIP_HEADROOM * pair.clip
        scale = torch.where(fixed, torch.ones_like(scale), torch.maximum(scale, maxima / bound))
    return scale
