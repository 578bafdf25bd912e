"""Quantisation-aware training (QAT) with torch.fx graph mode on the traceable pose network.

``prepare_qat(model, qcfg)`` returns a :class:`QATTopdownPoseEstimator`: the same ``preprocess`` / ``loss``
/ ``predict`` as the float model (inherited), but ``forward`` runs an FX-prepared copy of the network
with conv+BN fused and fake-quantised (per-channel symmetric int8 weights with zero point 0, 7-bit in
every convolution but the depthwise ones as :mod:`models.int8_grid` says why; per-tensor affine uint8
activations). Its state dict has stable keys (``network.*``, ``head.*``), so a run is resumed by calling
``prepare_qat`` on a freshly built model and loading the checkpoint. Exporting the trained model to an
int8 ONNX graph is ``deploy.qat.export_qat_onnx``.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.ao import quantization as tq
from torch.ao.quantization import QConfigMapping
from torch.ao.quantization.quantize_fx import prepare_qat_fx

from models.checkpoints import load_checkpoint
from models.int8_grid import INT8_LEVELS, REDUCED_LEVELS, weight_levels
from models.pose_estimator import TopdownPoseEstimator

QAT_KEYS = {'mode', 'float_checkpoint', 'observer_momentum'}


class SymmetricWeightFakeQuantize(tq.FusedMovingAvgObsFakeQuantize):
    """``FusedMovingAvgObsFakeQuantize`` for per-channel symmetric weights (output channels on axis 0)
    whose zero points are always 0.

    The fused op applies its symmetric rule only to channels whose range straddles zero: a channel with
    weights of one sign (common in depthwise kernels: 70 of 96 in a layer of RLE-0.5x) gets the grid
    [0, max] with zero point -L (or L), which ONNX Runtime's int8 convolutions do not compute as PyTorch
    does (per-channel weight zero points must be 0 there). Observing ``[w, -w]`` (concatenated along
    axis 1) gives every channel the range [-max|w|, max|w|], hence zero point 0 and the largest
    magnitude at L levels; the first half of the result is ``w`` fake-quantised. Still one fused op
    (plus a concatenation) and no read-back.
    """

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat([X, -X], dim=1)).narrow(1, 0, X.shape[1])


def qat_qconfig(averaging_constant: float = 0.01, weight_levels: int = INT8_LEVELS) -> Any:
    """QConfig: per-tensor affine uint8 activations, per-channel symmetric int8 weights in
    [-weight_levels, weight_levels] (moving-average min/max observers with ``averaging_constant``).

    Both are ``FusedMovingAvgObsFakeQuantize``: observing, updating scale / zero point and fake-quantising
    are one ATen op whose observer and fake-quant switches are read by the kernel, so a training step
    reads nothing back to the host (``FakeQuantize`` tests ``observer_enabled[0] == 1`` in Python, a
    device-to-host sync per module per step on CUDA). Weights observe the range [-m, m] of their
    largest magnitude m (:class:`SymmetricWeightFakeQuantize`), for which the fused op's scale on [-L, L]
    is ``m * (2L + 1) / (2L * L)`` (zero point 0): the largest weight lies at L - 0.496 levels (126.502
    for L = 127, 63.504 for 64), far from a rounding tie beyond float32 rounding, so PyTorch and ONNX
    Runtime round it alike (with [-128, 127] it sat exactly on a tie they break differently);
    [-127, 127] and [-64, 64] are ONNX Runtime's own symmetric int8 grids (full and ``reduce_range``)."""
    activation = tq.FusedMovingAvgObsFakeQuantize.with_args(
        observer=tq.MovingAverageMinMaxObserver, averaging_constant=averaging_constant, quant_min=0,
        quant_max=255, dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    weight = SymmetricWeightFakeQuantize.with_args(
        observer=tq.MovingAveragePerChannelMinMaxObserver, averaging_constant=averaging_constant,
        quant_min=-weight_levels, quant_max=weight_levels, dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric, ch_axis=0)
    return tq.QConfig(activation=activation, weight=weight)


def qconfig_mapping(network: nn.Module, averaging_constant: float = 0.01) -> QConfigMapping:
    """The QAT qconfigs of a network (backbone, neck, ``head``): :func:`qat_qconfig` everywhere, with
    7-bit weights ([-64, 64], :func:`models.int8_grid.weight_levels`) in every convolution but the
    depthwise ones, so that the exported int8 graph computes exactly on x86 CPUs without VNNI too; the
    head stays float."""
    mapping = QConfigMapping().set_global(qat_qconfig(averaging_constant))
    reduced = qat_qconfig(averaging_constant, REDUCED_LEVELS)
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv2d) and weight_levels(module) == REDUCED_LEVELS:
            mapping.set_module_name(name, reduced)  # also names the conv(+BN+ReLU) module it is fused into
    # The head stays float: its outputs (normalised coordinates next to sigma logits, or SimCC logits)
    # would lose ~1 px to a per-tensor uint8 grid, and its Linear layers cost next to nothing.
    return mapping.set_module_name('head', None)


class _Network(nn.Module):
    """The estimator's ``forward`` (backbone -> neck -> head) as its own module, for FX tracing."""

    def __init__(self, estimator: TopdownPoseEstimator) -> None:
        super().__init__()
        self.backbone = estimator.backbone
        self.neck = estimator.neck
        self.head = estimator.head

    def forward(self, x: torch.Tensor) -> Any:
        feats = self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        return self.head(feats)


def _drop_observers_before_clamps(gm: torch.fx.GraphModule) -> None:
    """Remove the activation fake-quant between a layer and a following ReLU/ReLU6: the clamp's own
    output fake-quant covers it, and this is what ONNX Runtime's fused int8 kernels compute (a QLinearConv
    requantising straight to the activation's range)."""
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != 'call_module' or not node.target.startswith('activation_post_process'):
            continue
        users = list(node.users)
        if len(users) == 1 and users[0].op == 'call_module' and \
                isinstance(modules.get(users[0].target), (nn.ReLU, nn.ReLU6)):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            gm.delete_submodule(node.target)
    gm.graph.lint()
    gm.recompile()


class QATTopdownPoseEstimator(TopdownPoseEstimator):
    """A TopdownPoseEstimator whose ``forward`` is a fake-quantised FX GraphModule (``self.network``).

    ``head`` is the float model's head object: its ``loss`` / ``flip_merge`` / ``decode`` and its loss
    module (e.g. RLE's flow model, trained in float) are used as they are; its layers share their
    parameters with ``network`` (the state dict lists them under both names; loading a QAT checkpoint
    into a freshly prepared QAT model restores both). Built by :func:`prepare_qat`, not from a config.
    """

    def __init__(self, estimator: TopdownPoseEstimator, network: torch.fx.GraphModule) -> None:
        nn.Module.__init__(self)
        self.network = network
        self.head = estimator.head
        self.neck = None
        self.data_preprocessor = estimator.data_preprocessor
        self.train_cfg = dict(estimator.train_cfg)
        self.test_cfg = dict(estimator.test_cfg)
        self.init_cfg = None

    def init_weights(self) -> None:
        """Nothing to do: weights come from the float model the QAT model was prepared from."""

    def train(self, mode: bool = True) -> QATTopdownPoseEstimator:
        """Training mode with the range observers on, evaluation mode with them frozen: a validation
        (in training or val.py) measures the quantisation grids training left, as the exported int8
        graph will use them, and its images do not move those grids. (Fake-quant modules observe in
        both modes by default; to calibrate without training, call
        ``model.eval().apply(torch.ao.quantization.enable_observer)``.) Switching writes the modules'
        flag tensors on the device and reads nothing back."""
        super().train(mode)
        self.network.apply(tq.enable_observer if mode else tq.disable_observer)
        return self

    def extract_feat(self, x: torch.Tensor) -> Any:
        raise NotImplementedError('the QAT network is one fused graph; call forward()')

    def forward(self, x: torch.Tensor) -> Any:
        return self.network(x)


def prepare_qat(model: TopdownPoseEstimator, qcfg: Mapping[str, Any] | None = None
                ) -> QATTopdownPoseEstimator:
    """Fake-quantise ``model``'s network for QAT (conv+BN fusion, int8 fake-quant) and return the QAT model.

    Args:
        model: a float TopdownPoseEstimator (its weights are the starting point; load them first, or
            give ``qcfg.float_checkpoint``).
        qcfg: ``cfg.quantization``: ``mode='qat'``, optional ``float_checkpoint`` (loaded before
            preparing), ``observer_momentum`` (moving-average constant of the range observers, 0.01).

    Returns:
        the QAT model, in training mode, on the model's device.
    """
    qcfg = dict(qcfg or {})
    unknown = set(qcfg) - QAT_KEYS
    if unknown:
        raise KeyError(f'cfg.quantization has unknown keys {sorted(unknown)}; '
                       f'expected some of {sorted(QAT_KEYS)}')
    if qcfg.get('mode', 'qat') != 'qat':
        raise ValueError(f"prepare_qat needs cfg.quantization.mode='qat', got {qcfg.get('mode')!r}")
    if qcfg.get('float_checkpoint'):
        load_checkpoint(model, qcfg['float_checkpoint'])
    device = next(model.parameters()).device
    size = model.head.decoder.input_size if getattr(model.head, 'decoder', None) is not None else (192, 192)
    example = torch.zeros(1, 3, size[1], size[0], device=device)
    float_network = _Network(model)
    mapping = qconfig_mapping(float_network, qcfg.get('observer_momentum', 0.01))
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch.ao.quantization announces its future move to torchao
        network = prepare_qat_fx(float_network, mapping, (example,))
    _drop_observers_before_clamps(network)
    return QATTopdownPoseEstimator(model, network).to(device).train()
