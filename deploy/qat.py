"""Export a QAT-trained pose model (``models.qat``) to an int8 QDQ ONNX graph.

``export_qat_onnx`` folds BN into the convolutions, freezes the learned ranges and writes a QDQ ONNX graph
that ONNX Runtime runs with int8 kernels.
"""
from __future__ import annotations

import copy
import types
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.ao.nn import intrinsic, qat
from torch.ao.quantization import FakeQuantize, disable_observer
from torch.nn.utils.fusion import fuse_conv_bn_weights

from deploy.deps import require
from deploy.export import export_pose_model
from deploy.metadata import read_metadata, write_metadata
from deploy.qdq import clean_qdq_graph
from models.qat import QATTopdownPoseEstimator


def _fold_bn(network: nn.Module) -> None:
    """Replace each QAT conv+BN(+ReLU) module by a QAT conv(+ReLU) with BN folded into its weight and bias,
    keeping the trained weight fake-quant (its scales were learned on the folded weight), in place."""
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
