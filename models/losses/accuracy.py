"""PCK accuracy reported beside the training losses (``acc_pose``), computed in torch float32.

Same definition as MMPose 1.3.2's ``keypoint_pck_accuracy``: per keypoint, the fraction of valid instances
whose normalised distance is below ``thr``; then the mean over keypoints that have any valid instance
(0 when none has).
"""
from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def keypoint_pck_accuracy(pred: Tensor, gt: Tensor, mask: Tensor, thr: float, norm_factor: Tensor) -> Tensor:
    """Average PCK over keypoints.

    Args:
        pred: predicted keypoints (N, K, 2), any unit.
        gt: ground-truth keypoints (N, K, 2), same unit.
        mask: (N, K) bool, which targets count.
        thr: threshold on the normalised distance.
        norm_factor: (N, 2) per-instance normaliser of each axis; an instance with a zero entry is ignored
            and non-positive entries are treated as 1e6 (MMPose's convention).

    Returns:
        0-dim float32 tensor on ``pred``'s device, computed without reading anything back to the host.
    """
    pred, gt, norm = pred.detach().float(), gt.detach().float(), norm_factor.detach().float().to(pred.device)
    valid = mask.to(pred.device).bool() & ~(norm == 0).any(dim=1, keepdim=True)
    norm = torch.where(norm <= 0, torch.full_like(norm, 1e6), norm)
    dist = torch.linalg.vector_norm((pred - gt) / norm[:, None, :], dim=-1)
    hits = ((dist < thr) & valid).sum(dim=0).float()
    counts = valid.sum(dim=0).float()
    has_valid = (counts > 0).float()  # masked arithmetic: no host read-back, no data-dependent shape
    per_kpt = hits / counts.clamp(min=1)
    return (per_kpt * has_valid).sum() / has_valid.sum().clamp(min=1)


def constant_norm(batch: int, values: tuple[float, float], device: torch.device | str) -> Tensor:
    """(batch, 2) float32 normaliser with every row ``values``, filled on ``device`` (no host-to-device
    copy, which would wait for the device)."""
    norm = torch.full((batch, 2), float(values[0]), device=device)
    norm[:, 1] = float(values[1])
    return norm
