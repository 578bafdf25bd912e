"""Quantisation-aware training (QAT) with torch.fx graph mode on the traceable pose network.

``prepare_qat(model, qcfg)`` returns a :class:`QATTopdownPoseEstimator`: the same ``preprocess`` / ``loss``
/ ``predict`` as the float model (inherited), but ``forward`` runs an FX-prepared copy of the network
with conv+BN fused and fake-quantised (per-channel symmetric int8 weights, per-tensor affine uint8
activations). Its state dict has stable keys (``network.*``, ``head.*``), so a run is resumed by calling
``prepare_qat`` on a freshly built model and loading the checkpoint.
``export_qat_onnx`` folds BN into the convolutions, freezes the learned ranges and writes a QDQ ONNX graph
that ONNX Runtime runs with int8 kernels.
"""
from __future__ import annotations

import copy
import logging
import types
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from deploy.loading import is_qat_config
from models.pose_estimator import TopdownPoseEstimator
from utils.logger import LOGGER_NAME

QAT_KEYS = {'mode', 'float_checkpoint', 'observer_momentum'}


def qat_qconfig(averaging_constant: float = 0.01) -> Any:
    """QConfig: per-tensor affine uint8 activations, per-channel symmetric int8 weights in [-127, 127]
    (moving-average min/max observers with ``averaging_constant``). The symmetric [-127, 127] grid puts a
    channel's largest weight exactly on a level (with [-128, 127] it sits on a rounding tie that PyTorch
    and ONNX Runtime break differently), and matches ONNX Runtime's own symmetric int8 weights.
    The fake-quant modules are the fused kind: observing and fake-quantising is one op that reads its
    enable flags on the device (plain ``FakeQuantize`` tests them with ``if flag[0] == 1`` in Python, a
    host read-back per module per step on CUDA)."""
    from torch.ao import quantization as tq

    activation = tq.FusedMovingAvgObsFakeQuantize.with_args(
        observer=tq.MovingAverageMinMaxObserver, averaging_constant=averaging_constant, quant_min=0,
        quant_max=255, dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    weight = tq.FusedMovingAvgObsFakeQuantize.with_args(
        observer=tq.MovingAveragePerChannelMinMaxObserver, averaging_constant=averaging_constant,
        quant_min=-127, quant_max=127, dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0)
    return tq.QConfig(activation=activation, weight=weight)


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
    from torch.ao.quantization import QConfigMapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    qcfg = dict(qcfg or {})
    unknown = set(qcfg) - QAT_KEYS
    if unknown:
        raise KeyError(f'cfg.quantization has unknown keys {sorted(unknown)}; '
                       f'expected some of {sorted(QAT_KEYS)}')
    if qcfg.get('mode', 'qat') != 'qat':
        raise ValueError(f"prepare_qat needs cfg.quantization.mode='qat', got {qcfg.get('mode')!r}")
    if qcfg.get('float_checkpoint'):
        from utils.checkpoint import load_checkpoint
        load_checkpoint(model, qcfg['float_checkpoint'])
    device = next(model.parameters()).device
    size = model.head.decoder.input_size if getattr(model.head, 'decoder', None) is not None else (192, 192)
    example = torch.zeros(1, 3, size[1], size[0], device=device)
    # The head stays float: its outputs (normalised coordinates next to sigma logits, or SimCC logits)
    # would lose ~1 px to a per-tensor uint8 grid, and its Linear layers cost next to nothing.
    mapping = QConfigMapping().set_global(qat_qconfig(qcfg.get('observer_momentum', 0.01)))
    mapping.set_module_name('head', None)
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # torch.ao.quantization announces its future move to torchao
        network = prepare_qat_fx(_Network(model), mapping, (example,))
    _drop_observers_before_clamps(network)
    return QATTopdownPoseEstimator(model, network).to(device).train()


def prepare_for_training(model: TopdownPoseEstimator, cfg: Mapping[str, Any]) -> nn.Module:
    """``model`` prepared for QAT when ``cfg.quantization.mode == 'qat'`` (see :func:`prepare_qat`), else
    ``model`` itself; ``engine.setup.build_train_model``'s ``prepare`` step."""
    if not is_qat_config(cfg):
        return model
    logging.getLogger(LOGGER_NAME).info('quantisation-aware training: %s', dict(cfg['quantization']))
    return prepare_qat(model, cfg['quantization'])


def _fold_bn(network: nn.Module) -> None:
    """Replace each QAT conv+BN(+ReLU) module by a QAT conv(+ReLU) with BN folded into its weight and bias,
    keeping the trained weight fake-quant (its scales were learned on the folded weight), in place."""
    from torch.ao.nn import intrinsic, qat
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    folds = {intrinsic.qat.ConvBn2d: qat.Conv2d, intrinsic.qat.ConvBnReLU2d: intrinsic.qat.ConvReLU2d}
    for name, module in list(network.named_modules()):
        target = folds.get(type(module))
        if target is None:
            continue
        weight, bias = fuse_conv_bn_weights(module.weight, module.bias, module.bn.running_mean,
                                            module.bn.running_var, module.bn.eps, module.bn.weight,
                                            module.bn.bias)
        folded = target(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                        module.padding, module.dilation, module.groups, True, module.padding_mode,
                        qconfig=module.qconfig).to(weight.device)
        folded.weight, folded.bias = weight, bias
        folded.weight_fake_quant = module.weight_fake_quant
        parent_name, _, child = name.rpartition('.')
        setattr(network.get_submodule(parent_name) if parent_name else network, child, folded)


def export_qat_onnx(model: QATTopdownPoseEstimator, cfg: Mapping[str, Any], path: str, **export_args: Any
                    ) -> tuple[str, nn.Module, torch.Tensor]:
    """Export a trained QAT model to an int8 QDQ ONNX graph (weights per-channel int8, activations uint8).

    The model is copied to the CPU, its observers frozen and BN folded; the result is exported with
    :func:`deploy.export.export_pose_model` (``export_args``: ``with_decode``, ``with_preprocess``,
    ``dynamic_batch``, ``flip_indices``, ``opset`` >= 13). Returns what that function returns.
    """
    from torch.ao.quantization import FakeQuantize, disable_observer

    from deploy.deps import require
    from deploy.export import export_pose_model, read_metadata, write_metadata
    from deploy.qdq import clean_qdq_graph

    onnx = require('onnx', 'QAT export')
    frozen = copy.deepcopy(model).cpu().eval()
    frozen.apply(disable_observer)
    for module in frozen.modules():
        if not isinstance(module, FakeQuantize):
            continue
        # the fused training op has no ONNX form; frozen, the plain FakeQuantize forward computes the same
        module.forward = types.MethodType(FakeQuantize.forward, module)
        if module.activation_post_process.quant_min == -127:  # [-127, 127] weights are [-128, 127] ones that
            module.quant_min = module.activation_post_process.quant_min = -128  # never use -128: ONNX's range
    _fold_bn(frozen.network)
    export_args['opset'] = export_args.get('opset') or 17
    if export_args['opset'] < 13:
        raise ValueError('QAT export needs opset >= 13 (per-channel QuantizeLinear)')
    result = export_pose_model(frozen, cfg, path, **export_args)
    proto = onnx.load(path)
    metadata = read_metadata(path)
    clean_qdq_graph(proto)
    write_metadata(proto, {**metadata, 'quantization': dict(mode='qat')})
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    return result
