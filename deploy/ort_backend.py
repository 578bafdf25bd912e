"""ONNX Runtime inference with the same ``predict`` interface as the PyTorch pose model.

``load_onnx_pose_model(path, cfg)`` returns an :class:`OrtPoseModel` whose ``predict(inputs, meta)`` takes
the batch of ``datasets.collate.pose_collate`` (uint8 BGR crops and their meta) and returns keypoints in
original-image px, like ``TopdownPoseEstimator.predict``. How the graph was exported (preprocessing,
decoding, flip test inside or not) is read from the metadata that ``deploy.export`` writes
(``deploy.metadata``).
"""
from __future__ import annotations

import collections
import json
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from deploy.deps import require
from deploy.metadata import METADATA_KEY
from models.pose_estimator import crop_to_image
from structures.arrays import to_numpy
from utils.registry import MODELS


def create_session(path: str | os.PathLike, threads: int | None = None,
                   providers: Sequence[str] | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path`` with ``threads`` intra-op threads (default: as many
    as torch uses, which ``utils.threads.set_threads`` sets for the scripts), sequential execution and all
    graph optimisations; CPU provider unless ``providers`` is given."""
    ort = require('onnxruntime', 'ONNX Runtime inference')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'ONNX model not found: {path}')
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(os.fspath(path), sess_options=options,
                                providers=list(providers or ['CPUExecutionProvider']))


def optimized_op_counts(path: str | os.PathLike) -> dict[str, int]:
    """Node counts by op type of the graph ONNX Runtime actually runs (after its CPU optimisations),
    e.g. to confirm an int8 model runs as QLinearConv rather than float Conv."""
    ort = require('onnxruntime', 'ONNX Runtime inference')
    onnx = require('onnx', 'reading the optimised graph')
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = os.path.join(tmp, 'optimized.onnx')
        options.log_severity_level = 3
        ort.InferenceSession(os.fspath(path), sess_options=options, providers=['CPUExecutionProvider'])
        graph = onnx.load(options.optimized_model_filepath).graph
    return dict(collections.Counter(node.op_type for node in graph.node))


def session_metadata(session: Any) -> dict[str, Any]:
    """The export metadata of a session's model (``{}`` when the file was not exported by ``deploy``)."""
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def graph_input(inputs: Any, meta: Mapping[str, Any]) -> np.ndarray:
    """uint8 BGR images (B, 3, H, W) -> the input of a graph exported with ``meta``: the same uint8
    array when preprocessing is in the graph, else float32 channel-swapped and normalised."""
    images = to_numpy(inputs)
    if meta.get('with_preprocess'):
        return np.ascontiguousarray(images, dtype=np.uint8)
    x = images.astype(np.float32)
    if meta.get('bgr_to_rgb'):
        x = x[:, ::-1]
    mean = np.asarray(meta['mean'], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(meta['std'], dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def _open(path: str | os.PathLike, kind: str, threads: int | None) -> tuple[Any, dict[str, Any]]:
    session = create_session(path, threads=threads)
    meta = session_metadata(session)
    if meta.get('kind') != kind:
        raise ValueError(f'{path}: not a {kind} model exported by deploy.export (metadata {METADATA_KEY!r} '
                         f'kind={meta.get("kind")!r}); re-export it with tools/export_onnx.py')
    return session, meta


def run_batched(session: Any, x: np.ndarray) -> list[np.ndarray]:
    """Run a session on a batch; a graph with a fixed batch of 1 is run sample by sample."""
    graph_input_ = session.get_inputs()[0]
    fixed = graph_input_.shape[0] if isinstance(graph_input_.shape[0], int) else None
    if fixed is None or fixed == x.shape[0]:
        return session.run(None, {graph_input_.name: x})
    if fixed != 1:
        raise ValueError(f'graph has a fixed batch of {fixed}, got {x.shape[0]} inputs')
    parts = [session.run(None, {graph_input_.name: x[i:i + 1]}) for i in range(x.shape[0])]
    return [np.concatenate(outs) for outs in zip(*parts)]


class _HostSide:
    """The bits of ``nn.Module`` that inference code calls on a model: ``eval``/``train``/``to`` (no-ops,
    ONNX Runtime runs on the CPU) and ``training`` (always False)."""

    training = False

    def eval(self) -> _HostSide:
        return self

    def train(self, mode: bool = True) -> _HostSide:
        return self

    def to(self, *args: Any, **kwargs: Any) -> _HostSide:
        return self


class OrtPoseModel(_HostSide):
    """A top-down pose model served by ONNX Runtime.

    Args:
        path: ONNX file written by ``tools/export_onnx.py`` or ``tools/quantize.py`` (float or int8).
        cfg: the model's config; needed when the graph has no decode (its head decodes the raw outputs)
            and for ``model.test_cfg.flip_test``.
        threads: ONNX Runtime intra-op threads (default: as many as torch uses).
        flip_test: override ``cfg.model.test_cfg.flip_test``. A graph exported with the flip test inside
            always flips. Otherwise the flip runs here, on a second run of the graph on the mirrored crops,
            wherever that is exact: raw head outputs (merged by the head's ``flip_merge``) and decoded
            regression / RLE outputs (keypoints mirrored back and averaged, scores averaged). A decoded
            SimCC / heatmap graph cannot be flipped afterwards (its decoding is not linear): a warning says
            so and it predicts without the flip.

    Attributes:
        flip_test: whether predictions use the flip test (in the graph or here).
        is_quantized: the graph is int8 (written by ``tools/quantize.py`` or a QAT export).
    """

    def __init__(self, path: str | os.PathLike, cfg: Mapping[str, Any] | None = None,
                 threads: int | None = None, flip_test: bool | None = None) -> None:
        self.path = os.fspath(path)
        self.session, self.meta = _open(self.path, 'pose', threads)
        self.cfg = cfg
        self.input_size = tuple(self.meta['input_size'])
        self.is_quantized = 'quantization' in self.meta
        test_cfg = dict(self.meta.get('test_cfg') or {})
        if cfg is not None:
            test_cfg.update(cfg['model'].get('test_cfg') or {})
        self.test_cfg = test_cfg
        want_flip = test_cfg.get('flip_test', False) if flip_test is None else flip_test
        decoded = bool(self.meta.get('with_decode'))
        self.runtime_flip = bool(want_flip) and not self.meta.get('flip_test', False)
        if self.runtime_flip and decoded and (self.meta.get('codec') or {}).get('type') != 'RegressionLabel':
            warnings.warn(f'{self.path}: decoded {self.meta["codec"].get("type")} graph exported without the '
                          'flip test; predicting without it (export it with the flip inside, the default, or '
                          'without --with-decode)', stacklevel=2)
            self.runtime_flip = False
        self.flip_test = self.runtime_flip or bool(self.meta.get('flip_test', False))
        self._head = None
        if not decoded:
            if cfg is None:
                raise ValueError(f'{self.path}: the graph outputs raw head outputs; pass the model config '
                                 'so its head can decode them')
            self._head = MODELS.build(cfg['model']['head']).eval()

    def preprocess(self, inputs: Any) -> np.ndarray:
        """uint8 BGR (B, 3, H, W) tensor/array -> what the graph takes (the same uint8, or normalised)."""
        return graph_input(inputs, self.meta)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Run the graph on an already-preprocessed batch (see :func:`run_batched`)."""
        return run_batched(self.session, x)

    def predict_crops(self, inputs: Any, flip_indices: Sequence[int] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """uint8 BGR crops (B, 3, H, W) -> keypoints (B, K, 2) input-crop px, scores (B, K), float32."""
        x = self.preprocess(inputs)
        outputs = self.run(x)
        flipped = None
        if self.runtime_flip:
            if flip_indices is None:
                raise ValueError('flip test needs flip_indices (meta["flip_indices"])')
            flipped = self.run(np.ascontiguousarray(x[..., ::-1]))
        if self.meta.get('with_decode'):
            keypoints, scores = (torch.from_numpy(o).float() for o in outputs)
            if flipped is not None:
                keypoints, scores = self._merge_decoded_flip(keypoints, scores, flipped, flip_indices)
            return keypoints.numpy(), scores.numpy()
        raw = self._as_head_outputs(outputs)
        if flipped is not None:
            raw = self._head.flip_merge(raw, self._as_head_outputs(flipped), list(flip_indices),
                                        self.test_cfg)
        keypoints, scores = self._head.decode(raw)
        return to_numpy(keypoints).astype(np.float32), to_numpy(scores).astype(np.float32)

    def _merge_decoded_flip(self, keypoints: torch.Tensor, scores: torch.Tensor, flipped: list[np.ndarray],
                            flip_indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The regression heads' flip test on decoded outputs: keypoints (B, K, 2) crop px are linear in the
        normalised coordinates and scores (B, K) in the sigmoid sigmas, so mirroring the flipped crop's
        keypoints back (``structures.flip.flip_coordinates``) and averaging both equals the in-graph merge."""
        from structures.flip import flip_coordinates

        scale = torch.tensor(self.input_size, dtype=torch.float32)
        kpts_f, scores_f = (torch.from_numpy(o).float() for o in flipped)
        both = torch.cat([kpts_f / scale, scores_f[..., None]], dim=-1)
        unflipped = flip_coordinates(both, list(flip_indices), self.test_cfg.get('shift_coords', True),
                                     self.input_size)
        return (keypoints + unflipped[..., :2] * scale) * 0.5, (scores + unflipped[..., 2]) * 0.5

    @staticmethod
    def _as_head_outputs(outputs: list[np.ndarray]) -> torch.Tensor | tuple[torch.Tensor, ...]:
        tensors = tuple(torch.from_numpy(o) for o in outputs)
        return tensors[0] if len(tensors) == 1 else tensors

    def predict(self, inputs: Any, meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Same contract as ``TopdownPoseEstimator.predict``.

        Args:
            inputs: uint8 BGR crops (B, 3, H, W).
            meta: batch meta with ``bbox_center``, ``bbox_scale`` (B, 2) image px, optional
                ``input_size`` (B, 2) and ``flip_indices`` (B, K).

        Returns:
            ``{'keypoints': (B, K, 2) float32 original-image px, 'keypoint_scores': (B, K) float32}``.
        """
        flip_indices = None
        if self.runtime_flip:
            if 'flip_indices' not in meta:
                raise KeyError('meta has no "flip_indices", needed for the flip test')
            indices = to_numpy(meta['flip_indices'])
            flip_indices = indices.reshape(-1, indices.shape[-1])[0].tolist()
        keypoints, scores = self.predict_crops(inputs, flip_indices)
        input_size = to_numpy(meta['input_size']) if 'input_size' in meta else np.asarray(self.input_size)
        keypoints = crop_to_image(torch.from_numpy(keypoints), input_size, to_numpy(meta['bbox_center']),
                                  to_numpy(meta['bbox_scale']))
        return {'keypoints': keypoints, 'keypoint_scores': scores}


def load_onnx_pose_model(path: str | os.PathLike, cfg: Mapping[str, Any] | None = None,
                         threads: int | None = None) -> OrtPoseModel:
    """An :class:`OrtPoseModel` for ``path`` (the hook for ``apis.init_model`` on ``*.onnx`` files)."""
    return OrtPoseModel(path, cfg, threads=threads)


class OrtDetector(_HostSide):
    """A dense detector (RTMDet) served by ONNX Runtime, with ``RTMDet.predict``'s interface.

    The graph gives the raw per-level head outputs; box decoding, score filtering and NMS run in PyTorch
    through the ``bbox_head.predict_by_feat`` of a head built from ``cfg`` (its weights are unused), so
    results follow the same code path as the PyTorch detector.

    Args:
        path: ONNX file written by ``tools/export_onnx.py`` for a detector config.
        cfg: the detector's config (``model.bbox_head``, ``model.test_cfg``).
    """

    def __init__(self, path: str | os.PathLike, cfg: Mapping[str, Any], threads: int | None = None) -> None:
        self.path = os.fspath(path)
        self.session, self.meta = _open(self.path, 'detector', threads)
        self.cfg = cfg
        model_cfg = cfg['model']
        head_args = {'test_cfg': dict(model_cfg['test_cfg'])} if model_cfg.get('test_cfg') else {}
        self.bbox_head = MODELS.build(model_cfg['bbox_head'], **head_args).eval()

    def predict(self, inputs: Any, img_metas: Sequence[Mapping[str, Any]]) -> list[dict[str, torch.Tensor]]:
        """Detect objects in a batch of prepared images.

        Args:
            inputs: (B, 3, H, W) uint8 BGR, resized and padded by the detector's test transform.
            img_metas: per image ``img_shape`` and ``scale_factor`` from the test transform.

        Returns:
            per image ``{'bboxes': (K, 4) xyxy original-image px, 'scores': (K,), 'labels': (K,)}``.
        """
        outputs = [torch.from_numpy(o) for o in run_batched(self.session, graph_input(inputs, self.meta))]
        levels = len(outputs) // 2
        with torch.no_grad():
            return self.bbox_head.predict_by_feat(outputs[:levels], outputs[levels:], img_metas)


def load_onnx_detector(path: str | os.PathLike, cfg: Mapping[str, Any],
                       threads: int | None = None) -> OrtDetector:
    """An :class:`OrtDetector` for ``path`` (the hook for ``apis.init_detector`` on ``*.onnx`` files)."""
    return OrtDetector(path, cfg, threads=threads)
