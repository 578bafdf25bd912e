"""KeypointConverter: map one dataset's keypoints onto another's layout (e.g. AIC 14 -> COCO 17)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from datasets.transforms.base import BaseTransform
from utils.registry import TRANSFORMS


@TRANSFORMS.register_module()
class KeypointConverter(BaseTransform):
    """Rearrange ``keypoints`` (N, K_src, 2) into (N, ``num_keypoints``, 2).

    Args:
        num_keypoints: keypoints of the target layout.
        mapping: (source, target) index pairs; a source may be a pair (a, b), giving the midpoint
            (visible only when both are).

    Outputs (MMPose semantics): unmapped targets are zero with visibility 0; ``keypoints_visible``
    becomes (N, K, 2) holding (visibility, weight) where weight is 1 at mapped targets and 0
    elsewhere (``GenerateTarget`` splits it). ``flip_indices`` is left for the wrapping dataset to
    set, except when sources are interpolated, where it is remapped as MMPose does.
    """

    def __init__(self, num_keypoints: int, mapping: Sequence[tuple]) -> None:
        self.num_keypoints = num_keypoints
        self.mapping = [tuple(m) for m in mapping]
        src1, src2, self.interpolation = [], [], False
        for src, _ in self.mapping:
            if isinstance(src, (list, tuple)):
                if len(src) != 2:
                    raise ValueError(f'an interpolated source must be a pair of indices, got {src!r}')
                src1.append(src[0])
                src2.append(src[1])
                self.interpolation = True
            else:
                src1.append(src)
                src2.append(src)
        self.source_index, self.source_index2 = src1, src2
        self.target_index = [t for _, t in self.mapping]
        if any(not 0 <= t < num_keypoints for t in self.target_index):
            raise ValueError(f'target indices must be in [0, {num_keypoints}), got {self.target_index}')

    def transform(self, results: dict) -> dict:
        src_kpts = results['keypoints']
        n = src_kpts.shape[0]
        vis = results.get('keypoints_visible')
        if vis is None:
            vis = np.ones(src_kpts.shape[:2], dtype=np.float32)
        if vis.ndim > 2:
            vis = vis[:, :, 0]
        keypoints = np.zeros((n, self.num_keypoints, 2), dtype=np.float32)
        visible = np.zeros((n, self.num_keypoints), dtype=np.float32)
        weights = np.zeros((n, self.num_keypoints), dtype=np.float32)
        weights[:, self.target_index] = 1.0
        if self.interpolation:
            keypoints[:, self.target_index] = 0.5 * (src_kpts[:, self.source_index, :2]
                                                     + src_kpts[:, self.source_index2, :2])
            visible[:, self.target_index] = vis[:, self.source_index] * vis[:, self.source_index2]
            flip = results.get('flip_indices')
            if flip is not None:
                flip = list(flip)
                for i, (a, b) in enumerate(zip(self.source_index, self.source_index2)):
                    idx = flip[a] if a == b else i
                    flip[i] = idx if idx < self.num_keypoints else i
                results['flip_indices'] = flip[:len(self.source_index)]
        else:
            keypoints[:, self.target_index] = src_kpts[:, self.source_index, :2]
            visible[:, self.target_index] = vis[:, self.source_index]
        results['keypoints'] = keypoints
        results['keypoints_visible'] = np.stack([visible, weights], axis=2)
        return results
