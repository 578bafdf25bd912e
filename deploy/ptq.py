"""Post-training static int8 quantisation of an exported ONNX graph with ONNX Runtime (QDQ format).

Weights: per-channel symmetric int8, [-64, 64] (ONNX Runtime's ``reduce_range``) except in depthwise
convolutions, [-127, 127]. Activations: per-tensor uint8, ranges calibrated on real crops (the val
pipeline's uint8 crops, preprocessed the way the graph expects). Preprocessing and decoding ops stay
in float; only the network's Conv / Add / activations / pooling are quantised (the heads' Linear layers
stay float, see DEFAULT_OP_TYPES).

Why 7-bit weights: on x86 CPUs without VNNI (AVX2, AVX-512 without VNNI) ONNX Runtime's u8 x s8 int8
GEMM / convolution kernels add each pair of adjacent products in int16 with saturation (``vpmaddubsw``):
with uint8 activations up to 255 and int8 weights up to 127 a pair reaches 64770 and is clipped to 32767,
silently (microsoft/onnxruntime#16105, #24220). MobileNetV2's ReLU6 activations sit at 255 all the time,
so full-range weights gave 19 px keypoint errors on such CPUs (and none on VNNI ones, where the same file
computes exactly). With |w| <= 64 every pair stays within int16, on every CPU. The depthwise kernel has no
int16 sum and keeps the full range (:func:`models.int8_grid.weight_levels`).
"""
from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from deploy.deps import require
from deploy.export import export_pose_model
from deploy.metadata import read_metadata, write_metadata
from deploy.ort_backend import create_session, graph_input, session_metadata
from deploy.weight_rounding import prepare_weights_for_int8

# Gemm/MatMul (the pose heads' Linear layers) stay float: their outputs (normalised coordinates, SimCC
# logits) would lose ~1 px to a per-tensor uint8 grid, and they cost next to nothing.
DEFAULT_OP_TYPES = ('Conv', 'Add', 'Clip', 'Relu', 'GlobalAveragePool')
CALIBRATION_METHODS = ('minmax', 'entropy', 'percentile')


class ArrayCalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over an array of graph inputs.

    Args:
        input_name: the graph input's name.
        inputs: (N, 3, H, W) graph inputs (uint8 crops or normalised float32), fed ``batch_size`` at a time.
    """

    def __init__(self, input_name: str, inputs: np.ndarray, batch_size: int = 1) -> None:
        if inputs.ndim != 4 or len(inputs) == 0:
            raise ValueError(f'calibration inputs must be a non-empty (N, 3, H, W) array, got {inputs.shape}')
        self.input_name = input_name
        self.inputs = inputs
        self.batch_size = batch_size
        self._iter: Iterator[dict[str, np.ndarray]] | None = None
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = ({self.input_name: self.inputs[i:i + self.batch_size]}
                      for i in range(0, len(self.inputs), self.batch_size))


def _calibration_method(name: str) -> Any:
    quant = require('onnxruntime.quantization', 'int8 quantisation')
    if name not in CALIBRATION_METHODS:
        raise ValueError(f'calibration method must be one of {CALIBRATION_METHODS}, got {name!r}')
    return {'minmax': quant.CalibrationMethod.MinMax, 'entropy': quant.CalibrationMethod.Entropy,
            'percentile': quant.CalibrationMethod.Percentile}[name]


def _depthwise_weight_overrides(model: Any, per_channel: bool) -> dict[str, list[dict[str, Any]]]:
    """ONNX Runtime ``TensorQuantOverrides`` that keep the full int8 range for the weights of depthwise
    Conv nodes (one input and one output channel per group) of an ``onnx.ModelProto``."""
    onnx = require('onnx', 'int8 quantisation')
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    overrides = {}
    for node in model.graph.node:
        shape = shapes.get(node.input[1]) if node.op_type == 'Conv' and len(node.input) > 1 else None
        group = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == 'group'), 1)
        if shape is not None and len(shape) > 1 and shape[1] == 1 and shape[0] == group > 1:
            overrides[node.input[1]] = [dict(axis=0, reduce_range=False) if per_channel else
                                        dict(reduce_range=False)]
    return overrides


def quantize_static_int8(float_path: str | os.PathLike, output_path: str | os.PathLike,
                         calib_inputs: np.ndarray, *, per_channel: bool = True, method: str = 'minmax',
                         op_types: Sequence[str] = DEFAULT_OP_TYPES,
                         nodes_to_exclude: Sequence[str] = ()) -> str:
    """Quantise ``float_path`` to an int8 QDQ graph at ``output_path``; export metadata is kept.

    Args:
        calib_inputs: (N, 3, H, W) inputs in the float graph's input format (dtype included).
        per_channel: per-output-channel weight scales (symmetric int8; [-64, 64] except in depthwise
            convolutions, see the module docstring).
        method: activation range calibration ('minmax', 'entropy' or 'percentile').
        op_types: ONNX op types to quantise.
        nodes_to_exclude: node names kept in float.

    Returns:
        ``output_path`` as a string.
    """
    onnx = require('onnx', 'int8 quantisation')
    quant = require('onnxruntime.quantization', 'int8 quantisation')
    shape_inference = require('onnxruntime.quantization.shape_inference', 'int8 quantisation')

    float_path, output_path = os.fspath(float_path), os.fspath(output_path)
    input_name = create_session(float_path, threads=1).get_inputs()[0].name
    metadata = read_metadata(float_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, 'prepared.onnx')
        shape_inference.quant_pre_process(float_path, prepared, skip_symbolic_shape=True)
        overrides = _depthwise_weight_overrides(onnx.load(prepared), per_channel)
        quant.quantize_static(
            prepared, output_path, ArrayCalibrationReader(input_name, calib_inputs),
            quant_format=quant.QuantFormat.QDQ, activation_type=quant.QuantType.QUInt8,
            weight_type=quant.QuantType.QInt8, per_channel=per_channel, reduce_range=True,
            calibrate_method=_calibration_method(method), op_types_to_quantize=list(op_types),
            nodes_to_exclude=list(nodes_to_exclude),
            extra_options={'ActivationSymmetric': False, 'WeightSymmetric': True,
                           'TensorQuantOverrides': overrides})
    model = onnx.load(output_path)
    quantization = dict(mode='ptq', method=method, per_channel=per_channel)
    write_metadata(model, {**metadata, 'quantization': quantization})
    onnx.save(model, output_path)
    return output_path


def quantize_pose_model(model: Any, cfg: Any, output_path: str | os.PathLike, crops: np.ndarray, *,
                        prepare_weights: bool = True, per_channel: bool = True, method: str = 'minmax',
                        **graph: Any) -> str:
    """Export a float pose model and quantise it to int8 in one go.

    Args:
        model: float TopdownPoseEstimator (not modified).
        cfg: its config.
        crops: uint8 BGR calibration crops (N, 3, H, W), e.g. from :func:`deploy.data.stack_inputs`.
        prepare_weights: fold BN, snap weights to least-squares int8 grids and correct biases first
            (:func:`deploy.weight_rounding.prepare_weights_for_int8`; with ``per_channel=False`` also
            cross-layer equalization, :mod:`deploy.equalization`, without which per-tensor int8 weights
            collapse MobileNetV2).
        graph: graph options of :func:`deploy.export.export_pose_model` (``with_decode``, ...).

    Returns:
        ``output_path`` as a string.
    """
    with tempfile.TemporaryDirectory() as tmp:
        float_path = os.path.join(tmp, 'float.onnx')
        source = model
        if prepare_weights:
            source = copy.deepcopy(model)
            prepare_weights_for_int8(source, model.preprocess(torch.from_numpy(crops)),
                                     per_channel=per_channel)
        export_pose_model(source, cfg, float_path, **graph)
        meta = session_metadata(create_session(float_path, threads=1))
        return quantize_static_int8(float_path, output_path, graph_input(crops, meta),
                                    per_channel=per_channel, method=method)
