"""GenerateTarget: encode the crop's keypoints into training targets with a codec."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from codec import build_codec
from datasets.transforms.base import BaseTransform
from utils.registry import TRANSFORMS

logger = logging.getLogger('mmpose_clean.datasets')


@TRANSFORMS.register_module()
class GenerateTarget(BaseTransform):
    """Run ``encoder.encode(transformed_keypoints, keypoints_visible)`` and merge its outputs
    (e.g. ``keypoint_labels`` (1, K, 2), ``keypoint_weights`` (1, K)) into the sample.

    Args:
        encoder: a codec config dict, or a list of them (outputs merged; keys must not overlap
            except ``keypoint_weights``, which becomes a list).
        use_dataset_keypoint_weights: multiply ``keypoint_weights`` by the dataset's joint weights.
        target_type: deprecated in MMPose 1.x (the codec decides the targets); accepted and ignored,
            with a warning when set.
        multilevel: multi-level heatmaps are not supported (``True`` raises).

    ``encoder`` holds the built codec, or the list of codecs for a list of configs.

    A (1, K, 2) ``keypoints_visible`` (from ``KeypointConverter``) is split into
    ``keypoints_visible`` (1, K) and ``keypoints_visible_weights`` (1, K) first.
    """

    def __init__(self, encoder: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                 target_type: str | None = None, multilevel: bool = False,
                 use_dataset_keypoint_weights: bool = False) -> None:
        if multilevel:
            raise NotImplementedError('GenerateTarget(multilevel=True) is not supported')
        if target_type is not None:
            logger.warning('GenerateTarget: target_type=%r is ignored (deprecated in MMPose 1.x: the '
                           'encoder decides the targets)', target_type)
        self.encoder_cfg = encoder
        self.use_dataset_keypoint_weights = use_dataset_keypoint_weights
        self.encoder = (build_codec(encoder) if isinstance(encoder, Mapping)
                        else [build_codec(c) for c in encoder])

    def _encode(self, codec: Any, keypoints: np.ndarray, visible: np.ndarray, results: dict) -> dict:
        aux = {k: results.get(k) for k in getattr(codec, 'auxiliary_encode_keys', ())}
        return codec.encode(keypoints=keypoints, keypoints_visible=visible, **aux)

    def transform(self, results: dict) -> dict:
        keypoints = results.get('transformed_keypoints')
        if keypoints is None:
            keypoints = results.get('keypoints')
        if keypoints is None:
            raise KeyError("GenerateTarget needs 'transformed_keypoints' or 'keypoints' in the sample")
        visible = results['keypoints_visible']
        if visible.ndim == 3 and visible.shape[2] == 2:
            visible, results['keypoints_visible_weights'] = visible[..., 0], visible[..., 1]
            results['keypoints_visible'] = visible
        if not isinstance(self.encoder, list):
            encoded = self._encode(self.encoder, keypoints, visible, results)
        else:
            encoded, weights = {}, []
            for codec in self.encoder:
                for key, value in self._encode(codec, keypoints, visible, results).items():
                    if key == 'keypoint_weights':
                        weights.append(value)
                    elif key in encoded:
                        raise ValueError(f'GenerateTarget: two encoders both produce {key!r}')
                    else:
                        encoded[key] = value
            if weights:
                encoded['keypoint_weights'] = weights
        if self.use_dataset_keypoint_weights and 'keypoint_weights' in encoded:
            joint_w = results['dataset_keypoint_weights']
            w = encoded['keypoint_weights']
            encoded['keypoint_weights'] = [x * joint_w for x in w] if isinstance(w, list) else w * joint_w
        results.update(encoded)
        return results
