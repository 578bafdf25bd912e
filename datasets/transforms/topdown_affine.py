"""TopdownAffine: crop the (rotated, scaled) box into the network input with one affine warp."""
from __future__ import annotations

import cv2
import numpy as np

from datasets.transforms.base import BaseTransform
from structures.bbox import fix_aspect_ratio, get_udp_warp_matrix, get_warp_matrix
from utils.registry import TRANSFORMS


@TRANSFORMS.register_module()
class TopdownAffine(BaseTransform):
    """Warp the box ``bbox_center``/``bbox_scale``/``bbox_rotation`` to ``input_size`` (w, h).

    The box scale is first widened to the input's aspect ratio (``bbox_scale`` is updated).
    Outputs: ``img`` (h, w, 3) the crop; ``transformed_keypoints`` (1, K, 2) in input-crop px;
    ``input_size`` (w, h), ``input_center`` (2,), ``input_scale`` (2,).

    Args:
        input_size: (w, h) of the network input.
        use_udp: use the unbiased (UDP) warp, whose box edges map to pixel centres 0 and w - 1.
    """

    def __init__(self, input_size: tuple[int, int], use_udp: bool = False) -> None:
        if len(input_size) != 2 or not all(isinstance(v, int) for v in input_size):
            raise ValueError(f'input_size must be two ints (w, h), got {input_size!r}')
        self.input_size = tuple(input_size)
        self.use_udp = use_udp

    def transform(self, results: dict) -> dict:
        w, h = self.input_size
        results['bbox_scale'] = fix_aspect_ratio(results['bbox_scale'], aspect_ratio=w / h)
        if results['bbox_center'].shape[0] != 1:
            raise ValueError('TopdownAffine handles one instance per sample; got bbox_center of shape '
                             f'{results["bbox_center"].shape}')
        center = results['bbox_center'][0]
        scale = results['bbox_scale'][0]
        rot = float(results['bbox_rotation'][0]) if 'bbox_rotation' in results else 0.0
        if self.use_udp:
            warp_mat = get_udp_warp_matrix(center, scale, rot, output_size=(w, h))
        else:
            warp_mat = get_warp_matrix(center, scale, rot, output_size=(w, h))
        img = results['img']
        if isinstance(img, list):
            results['img'] = [cv2.warpAffine(i, warp_mat, (w, h), flags=cv2.INTER_LINEAR) for i in img]
        else:
            results['img'] = cv2.warpAffine(img, warp_mat, (w, h), flags=cv2.INTER_LINEAR)
        if results.get('keypoints') is not None:
            kpts = results['keypoints']
            prev = results.get('transformed_keypoints')
            out = np.array(kpts if prev is None else prev, dtype=np.float32, copy=True)
            out[..., :2] = kpts[..., :2] @ warp_mat[:, :2].T + warp_mat[:, 2]
            results['transformed_keypoints'] = out
        else:
            results['transformed_keypoints'] = np.zeros([])
            results['keypoints_visible'] = np.ones((1, 1, 1))
        results['input_size'] = (w, h)
        results['input_center'] = center
        results['input_scale'] = scale
        return results
