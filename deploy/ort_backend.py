"""ONNX Runtime inference with the same ``predict`` interface as the PyTorch pose model.

``load_onnx_pose_model(path, cfg)`` returns an :class:`OrtPoseModel` whose ``predict(inputs, meta)`` takes
the batch of ``datasets.collate.pose_collate`` (uint8 BGR crops and their meta) and returns keypoints in
original-image px, like ``TopdownPoseEstimator.predict``. How the graph was exported (preprocessing,
decoding, flip test inside or not) is read from the metadata that ``deploy.export`` writes.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from deploy.deps import require
from deploy.export import METADATA_KEY

_ORT_TYPES = {'tensor(uint8)': np.uint8, 'tensor(float)': np.float32}


def create_session(path: str | os.PathLike, threads: int = 2, providers: Sequence[str] | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path`` with ``threads`` intra-op threads (sequential
    execution, all graph optimisations); CPU provider unless ``providers`` is given."""
    ort = require('onnxruntime', 'ONNX Runtime inference')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'ONNX model not found: {path}')
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(os.fspath(path), sess_options=options,
                                providers=list(providers or ['CPUExecutionProvider']))


def session_metadata(session: Any) -> dict[str, Any]:
    """The export metadata of a session's model (``{}`` when the file was not exported by ``deploy``)."""
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def crop_to_image(keypoints: np.ndarray, input_size: np.ndarray, bbox_center: np.ndarray,
                  bbox_scale: np.ndarray) -> np.ndarray:
    """Keypoints (B, K, 2) in input-crop px -> original image px (MMPose's top-down mapping).

    ``input_size`` (B, 2) or (2,) is (w, h); ``bbox_center``/``bbox_scale`` (B, 2) image px.
    """
    input_size = np.asarray(input_size, dtype=np.float32).reshape(-1, 1, 2)
    center = np.asarray(bbox_center, dtype=np.float32).reshape(-1, 1, 2)
    scale = np.asarray(bbox_scale, dtype=np.float32).reshape(-1, 1, 2)
    return (keypoints / input_size * scale + center - 0.5 * scale).astype(np.float32)


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


class OrtPoseModel:
    """A top-down pose model served by ONNX Runtime.

    Args:
        path: ONNX file written by ``tools/export_onnx.py`` (or ``deploy.export.export_pose_model``).
        cfg: the model's config; needed when the graph has no decode (its head decodes the raw outputs)
            and for ``model.test_cfg.flip_test``.
        threads: ONNX Runtime intra-op threads.
        flip_test: override ``cfg.model.test_cfg.flip_test``. A graph exported with the flip test inside
            always flips; one exported with decode but without the flip cannot flip (a warning says so).
    """

    def __init__(self, path: str | os.PathLike, cfg: Mapping[str, Any] | None = None, threads: int = 2,
                 flip_test: bool | None = None) -> None:
        self.path = os.fspath(path)
        self.session = create_session(self.path, threads=threads)
        self.meta = session_metadata(self.session)
        if self.meta.get('kind') != 'pose':
            raise ValueError(f'{self.path}: not a pose model exported by deploy.export (metadata '
                             f'{METADATA_KEY!r} kind={self.meta.get("kind")!r}); re-export it with '
                             'tools/export_onnx.py')
        self.cfg = cfg
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.input_dtype = _ORT_TYPES[graph_input.type]
        self.fixed_batch = graph_input.shape[0] if isinstance(graph_input.shape[0], int) else None
        self.input_size = tuple(self.meta['input_size'])
        test_cfg = dict(self.meta.get('test_cfg') or {})
        if cfg is not None:
            test_cfg.update(cfg['model'].get('test_cfg') or {})
        self.test_cfg = test_cfg
        want_flip = test_cfg.get('flip_test', False) if flip_test is None else flip_test
        self.runtime_flip = bool(want_flip) and not self.meta.get('flip_test', False)
        if self.runtime_flip and self.meta.get('with_decode'):
            warnings.warn(f'{self.path}: decoded graph exported without the flip test; predicting without '
                          'it (export with --flip-test, or without --with-decode, to flip)', stacklevel=2)
            self.runtime_flip = False
        self._head = None
        if not self.meta.get('with_decode'):
            if cfg is None:
                raise ValueError(f'{self.path}: the graph outputs raw head outputs; pass the model config '
                                 'so its head can decode them')
            from utils.registry import MODELS
            self._head = MODELS.build(cfg['model']['head']).eval()

    def preprocess(self, inputs: Any) -> np.ndarray:
        """uint8 BGR (B, 3, H, W) tensor/array -> what the graph takes (the same uint8, or normalised)."""
        crops = _numpy(inputs)
        if self.meta.get('with_preprocess'):
            return np.ascontiguousarray(crops, dtype=np.uint8)
        x = crops.astype(np.float32)
        if self.meta.get('bgr_to_rgb'):
            x = x[:, ::-1]
        mean = np.asarray(self.meta['mean'], dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.meta['std'], dtype=np.float32).reshape(1, 3, 1, 1)
        return np.ascontiguousarray((x - mean) / std, dtype=np.float32)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Run the graph on an already-preprocessed batch; a fixed-batch graph is run sample by sample."""
        if self.fixed_batch is None or self.fixed_batch == x.shape[0]:
            return self.session.run(None, {self.input_name: x})
        if self.fixed_batch != 1:
            raise ValueError(f'{self.path}: graph has fixed batch {self.fixed_batch}, got {x.shape[0]} crops')
        parts = [self.session.run(None, {self.input_name: x[i:i + 1]}) for i in range(x.shape[0])]
        return [np.concatenate(outs) for outs in zip(*parts)]

    def predict_crops(self, inputs: Any, flip_indices: Sequence[int] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """uint8 BGR crops (B, 3, H, W) -> keypoints (B, K, 2) input-crop px, scores (B, K), float32."""
        x = self.preprocess(inputs)
        outputs = self.run(x)
        if self.meta.get('with_decode'):
            return outputs[0].astype(np.float32), outputs[1].astype(np.float32)
        raw = self._as_head_outputs(outputs)
        if self.runtime_flip:
            if flip_indices is None:
                raise ValueError('flip test needs flip_indices (meta["flip_indices"])')
            flipped = self._as_head_outputs(self.run(np.ascontiguousarray(x[..., ::-1])))
            raw = self._head.flip_merge(raw, flipped, list(flip_indices), self.test_cfg)
        keypoints, scores = self._head.decode(raw)
        return _numpy(keypoints).astype(np.float32), _numpy(scores).astype(np.float32)

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
            indices = _numpy(meta['flip_indices'])
            flip_indices = indices.reshape(-1, indices.shape[-1])[0].tolist()
        keypoints, scores = self.predict_crops(inputs, flip_indices)
        input_size = _numpy(meta['input_size']) if 'input_size' in meta else np.asarray(self.input_size)
        keypoints = crop_to_image(keypoints, input_size, _numpy(meta['bbox_center']),
                                  _numpy(meta['bbox_scale']))
        return {'keypoints': keypoints, 'keypoint_scores': scores}


def load_onnx_pose_model(path: str | os.PathLike, cfg: Mapping[str, Any] | None = None,
                         threads: int = 2) -> OrtPoseModel:
    """An :class:`OrtPoseModel` for ``path`` (the hook for ``apis.init_model`` on ``*.onnx`` files)."""
    return OrtPoseModel(path, cfg, threads=threads)
