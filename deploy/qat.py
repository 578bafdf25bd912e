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


def _snap_to_int8_grids(network: torch.fx.GraphModule) -> None:
    """Put every fake-quantised layer's weight and bias on the integer grids ONNX Runtime computes with,
    in place: weights on their trained int8 grid, biases on the int32 grid of step (input scale x weight
    scale) of each output channel; the weight quantisers' range is widened to int8's [-128, 127].

    Weights: the exported ``QuantizeLinear`` (whose only signed range in the exporter is [-128, 127]) then
    gives exactly the integers the fake-quant model computed with ([-64, 64] or [-127, 127] levels, see
    :func:`models.qat.qconfig_mapping`), including for weights grown past the observed range (clipped in
    training, not by [-128, 127]). Biases: ONNX Runtime's int8 convolution adds the bias as
    ``round(bias / (input scale x weight scale))``, up to half an input-times-weight step from the float
    bias, which is more than an output level in layers whose BN-folded weights are large; on the grid,
    the int8 kernels and the graph run op by op (and PyTorch) compute the same."""
    modules = dict(network.named_modules())
    for node in network.graph.nodes:
        layer = modules.get(node.target) if node.op == 'call_module' else None
        fake_quant = getattr(layer, 'weight_fake_quant', None)
        if fake_quant is None:
            continue
        with torch.no_grad():
            layer.weight = nn.Parameter(fake_quant(layer.weight))
            source = node.args[0]
            input_quant = modules.get(source.target) if isinstance(source, torch.fx.Node) and \
                source.op == 'call_module' else None
            if layer.bias is not None and isinstance(input_quant, FakeQuantize):
                step = input_quant.scale * fake_quant.scale
                layer.bias = nn.Parameter(torch.round(layer.bias / step) * step)
        fake_quant.quant_min = fake_quant.activation_post_process.quant_min = -128
        fake_quant.quant_max = fake_quant.activation_post_process.quant_max = 127


def export_qat_onnx(model: QATTopdownPoseEstimator, cfg: Mapping[str, Any], path: str, **export_args: Any
                    ) -> tuple[str, nn.Module, torch.Tensor]:
    """Export a trained QAT model to an int8 QDQ ONNX graph (weights per-channel int8, activations uint8).

    The model is copied to the CPU, its observers frozen, BN folded, the weights and biases put on the
    integer grids of the int8 kernels (:func:`_snap_to_int8_grids`; 7-bit weights in every convolution but
    the depthwise ones, so that no CPU's kernel saturates); the result is exported with
    :func:`deploy.export.export_pose_model` (``export_args``: ``with_decode``, ``with_preprocess``,
    ``dynamic_batch``, ``flip_indices``, ``opset`` >= 13). Returns what that function returns.
    """
    onnx = require('onnx', 'QAT export')
    frozen = copy.deepcopy(model).cpu().eval()
    frozen.apply(disable_observer)
    _fold_bn(frozen.network)
    _snap_to_int8_grids(frozen.network)
    for module in frozen.modules():
        if isinstance(module, FakeQuantize):
            # the fused training op has no ONNX form; frozen, the plain FakeQuantize forward computes the same
            module.forward = types.MethodType(FakeQuantize.forward, module)
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
