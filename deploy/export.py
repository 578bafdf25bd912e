"""Export a pose network (or any traceable module) to ONNX, record how it was exported, and check it
against PyTorch with ONNX Runtime."""
from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from deploy.deps import require
from deploy.graph import DetectorExportModule, PoseExportModule, Preprocess
from deploy.metadata import read_metadata, write_metadata
from deploy.ort_backend import create_session

EXPORTERS = ('torchscript', 'dynamo')
DYNAMO_MIN_OPSET = 18


def default_opset(exporter: str) -> int:
    """The opset written when none is asked for: 17 (TorchScript), 18 (dynamo: its lowest)."""
    return DYNAMO_MIN_OPSET if exporter == 'dynamo' else 17


def export_module(module: nn.Module, example: torch.Tensor, path: str | os.PathLike, *,
                  input_name: str, output_names: Sequence[str], opset: int | None = None,
                  dynamic_batch: bool = False, exporter: str = 'torchscript',
                  metadata: Mapping[str, Any] | None = None) -> str:
    """Export ``module(example)`` to ``path`` and attach ``metadata`` (JSON under key 'mmpose_clean').

    Args:
        module: a traceable module taking one (B, ...) tensor; put in eval mode by this function.
        example: example input; its batch size is free when ``dynamic_batch``.
        opset: ONNX opset (default :func:`default_opset`); the dynamo exporter needs 18 or newer.
        exporter: 'torchscript' (``dynamo=False``, fast and stable for these CNNs) or 'dynamo'
            (``torch.export`` + onnxscript).

    The graph's outputs get their exact shapes, with the batch dimension named ``batch`` when
    ``dynamic_batch``.

    Returns:
        the written path as a string.
    """
    onnx = require('onnx', 'ONNX export')
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    opset = default_opset(exporter) if opset is None else opset
    if exporter == 'dynamo' and opset < DYNAMO_MIN_OPSET:
        raise ValueError(f'the dynamo exporter writes opset {DYNAMO_MIN_OPSET} or newer, got opset {opset}; '
                         f'pass --opset {DYNAMO_MIN_OPSET} or use the TorchScript exporter')
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    module = module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the TorchScript exporter announces its deprecation on every call
        if exporter == 'torchscript':
            axes = {name: {0: 'batch'} for name in (input_name, *output_names)} if dynamic_batch else None
            torch.onnx.export(module, (example,), path, dynamo=False, opset_version=opset,
                              input_names=[input_name], output_names=list(output_names),
                              dynamic_axes=axes, do_constant_folding=True)
        else:
            shapes = ({'x': {0: torch.export.Dim('batch', min=1, max=4096)}} if dynamic_batch else None)
            program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset,
                                        input_names=[input_name], output_names=list(output_names),
                                        dynamic_shapes=shapes, verbose=False)
            program.save(path)
    model = onnx.load(path)
    with torch.no_grad():
        outputs = module(example)
    _set_output_shapes(model, [outputs] if isinstance(outputs, torch.Tensor) else outputs, dynamic_batch)
    write_metadata(model, metadata or {})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _set_output_shapes(model: Any, outputs: Sequence[torch.Tensor], dynamic_batch: bool) -> None:
    """Give every graph output of an ``onnx.ModelProto`` the shape of the matching PyTorch output (the
    exporters leave names like ``Mulkeypoints_dim_1`` on dimensions they could not infer)."""
    for graph_output, tensor in zip(model.graph.output, outputs):
        dims = graph_output.type.tensor_type.shape.dim
        del dims[:]
        for i, size in enumerate(tensor.shape):
            dim = dims.add()
            if i == 0 and dynamic_batch:
                dim.dim_param = 'batch'
            else:
                dim.dim_value = int(size)


def pose_output_names(codec_cfg: Mapping[str, Any], with_decode: bool) -> list[str]:
    """Graph output names: decoded ('keypoints', 'scores') or the head's raw outputs."""
    if with_decode:
        return ['keypoints', 'scores']
    if codec_cfg.get('type') == 'SimCCLabel':
        return ['simcc_x', 'simcc_y']
    return ['output']


def export_pose_model(estimator: nn.Module, cfg: Mapping[str, Any], path: str | os.PathLike, *,
                      opset: int | None = None, dynamic_batch: bool = False, with_decode: bool = False,
                      with_preprocess: bool = False, flip_indices: Sequence[int] | None = None,
                      exporter: str = 'torchscript', batch_size: int = 1
                      ) -> tuple[str, PoseExportModule, torch.Tensor]:
    """Export a TopdownPoseEstimator (``forward(x normalised) -> head outputs``) with its ``cfg``.

    Args:
        estimator: the network; its ``forward`` is traced, ``estimator.head.decode``/``flip_merge`` are
            used for the in-graph decode / flip test.
        cfg: the full config (uses ``codec``, ``model.data_preprocessor`` and ``model.test_cfg``).
        with_decode: outputs keypoints (B, K, 2) in input-crop px and scores (B, K) instead of raw
            head outputs.
        with_preprocess: graph input is uint8 BGR (B, 3, H, W) instead of float normalised.
        flip_indices: (K,) left/right partner of each keypoint; puts the flip test in the graph.

    Returns:
        (path, the exported wrapper module, the example input used for tracing).
    """
    codec_cfg = cfg['codec']
    width, height = codec_cfg['input_size']
    test_cfg = dict(cfg['model'].get('test_cfg') or {})
    preprocess = Preprocess.from_module(estimator.data_preprocessor)
    wrapper = PoseExportModule(estimator, preprocess if with_preprocess else None, with_decode, flip_indices,
                               test_cfg).eval()
    if with_preprocess:
        example = torch.randint(0, 256, (batch_size, 3, height, width), dtype=torch.uint8)
    else:
        example = torch.randn(batch_size, 3, height, width)
    metadata = dict(kind='pose', input_size=[width, height], with_decode=with_decode,
                    with_preprocess=with_preprocess, dynamic_batch=dynamic_batch,
                    flip_test=flip_indices is not None, **preprocess.describe(),
                    test_cfg=_jsonable(test_cfg), codec=_jsonable(codec_cfg))
    export_module(wrapper, example, path, input_name='input',
                  output_names=pose_output_names(codec_cfg, with_decode), opset=opset,
                  dynamic_batch=dynamic_batch, exporter=exporter, metadata=metadata)
    return os.fspath(path), wrapper, example


def detector_input_size(cfg: Mapping[str, Any]) -> tuple[int, int]:
    """(w, h) of the detector's network input: the Pad size of its test pipeline (else the Resize scale)."""
    pipeline = cfg.get('test_pipeline') or cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline')
    for kind in ('Pad', 'Resize'):
        for step in pipeline or []:
            if step.get('type') in (kind, 'mmdet.' + kind) and (step.get('size') or step.get('scale')):
                return tuple(step.get('size') or step.get('scale'))
    raise ValueError('detector config has no test_pipeline with a Pad size or Resize scale; cannot tell '
                     'the network input size for export')


def export_detector(detector: nn.Module, cfg: Mapping[str, Any], path: str | os.PathLike, *,
                    opset: int | None = None, dynamic_batch: bool = False, with_preprocess: bool = False,
                    exporter: str = 'torchscript', batch_size: int = 1
                    ) -> tuple[str, DetectorExportModule, torch.Tensor]:
    """Export an RTMDet-like detector (``forward(x normalised) -> (cls_scores, bbox_preds)`` per level).

    The graph input is the padded test image (B, 3, H, W) (uint8 BGR with ``with_preprocess``); the
    outputs are the raw per-level head outputs. Returns (path, wrapper module, example input).
    """
    width, height = detector_input_size(cfg)
    preprocess = Preprocess.from_module(detector.data_preprocessor)
    wrapper = DetectorExportModule(detector, preprocess if with_preprocess else None).eval()
    if with_preprocess:
        example = torch.randint(0, 256, (batch_size, 3, height, width), dtype=torch.uint8)
    else:
        example = torch.randn(batch_size, 3, height, width)
    with torch.no_grad():
        num_levels = len(wrapper(example)) // 2
    names = [f'cls_score_{i}' for i in range(num_levels)] + [f'bbox_pred_{i}' for i in range(num_levels)]
    metadata = dict(kind='detector', input_size=[width, height], with_preprocess=with_preprocess,
                    dynamic_batch=dynamic_batch, num_levels=num_levels, **preprocess.describe())
    export_module(wrapper, example, path, input_name='input', output_names=names, opset=opset,
                  dynamic_batch=dynamic_batch, exporter=exporter, metadata=metadata)
    return os.fspath(path), wrapper, example


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def compare_with_torch(path: str | os.PathLike, module: nn.Module, inputs: torch.Tensor,
                       threads: int | None = None) -> dict[str, float]:
    """Run ``module`` (PyTorch) and the ONNX file on ``inputs``; max abs difference per graph output.

    Decoded SimCC graphs take an argmax of each vector: where two bins are equal up to float noise,
    ONNX Runtime and PyTorch may pick different ones (keypoints then differ by whole bins on random or
    untrained weights). Their ``keypoints`` entry is the max difference over keypoints whose ONNX bin is
    not such a tie of the PyTorch vectors, and ``argmax_ties`` counts the keypoints that were.
    """
    session = create_session(path, threads=threads)
    with torch.no_grad():
        expected = module.eval()(inputs)
    if isinstance(expected, torch.Tensor):
        expected = (expected,)
    got = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    names = [o.name for o in session.get_outputs()]
    if len(got) != len(expected):
        raise RuntimeError(f'{path}: ONNX graph has {len(got)} outputs, PyTorch module {len(expected)}')
    diffs = {name: float(np.abs(g - e.numpy()).max()) for name, g, e in zip(names, got, expected)}
    if isinstance(module, PoseExportModule) and module.with_decode and \
            hasattr(module.network.head, 'simcc_split_ratio'):
        diffs['keypoints'], diffs['argmax_ties'] = _simcc_keypoint_diff(module, inputs, got[0],
                                                                        expected[0].numpy())
    return diffs


def _simcc_keypoint_diff(module: PoseExportModule, inputs: torch.Tensor, got: np.ndarray,
                         expected: np.ndarray, rtol: float = 1e-5) -> tuple[float, int]:
    """(max keypoint difference (px) outside argmax ties, number of tied keypoints) of a decoded SimCC
    graph: a keypoint is tied when PyTorch's (flip-merged) SimCC vectors at the bins ONNX Runtime chose
    are within ``rtol`` x the vectors' magnitude of their maxima."""
    raw = PoseExportModule(module.network, module.preprocess, False, module.flip_indices, module.test_cfg)
    with torch.no_grad():
        vectors = [v.numpy() for v in raw.eval()(inputs)]  # (B, K, Wx), (B, K, Wy)
    ratio = module.network.head.simcc_split_ratio
    tied = np.ones(got.shape[:2], dtype=bool)
    for axis, vec in enumerate(vectors):
        bins = np.clip(np.rint(got[..., axis] * ratio).astype(np.int64), 0, vec.shape[-1] - 1)
        at_bin = np.take_along_axis(vec, bins[..., None], axis=-1)[..., 0]
        tol = rtol * np.maximum(np.abs(vec).max(axis=-1), 1.0)
        tied &= at_bin >= vec.max(axis=-1) - tol
    error = np.abs(got - expected).max(axis=-1)
    ties = int(((error > 0) & tied).sum())
    return float(np.where(tied, 0.0, error).max()), ties


def simplify_onnx(path: str | os.PathLike) -> str:
    """Simplify the ONNX file in place with onnxslim (or onnxsim); returns which tool ran.

    Raises:
        ImportError: when neither onnxslim nor onnxsim is installed.
    """
    onnx = require('onnx', 'ONNX simplification')
    path = os.fspath(path)
    metadata = read_metadata(path)
    if importlib.util.find_spec('onnxslim') is not None:
        import onnxslim
        model, tool = onnxslim.slim(onnx.load(path)), 'onnxslim'
    elif importlib.util.find_spec('onnxsim') is not None:
        import onnxsim
        model, ok = onnxsim.simplify(onnx.load(path))
        if not ok:
            raise RuntimeError(f'onnxsim could not validate the simplified {path}')
        tool = 'onnxsim'
    else:
        raise ImportError('--simplify needs onnxslim or onnxsim (python -m pip install onnxslim); '
                          'neither is installed')
    write_metadata(model, metadata)
    onnx.save(model, path)
    return tool
