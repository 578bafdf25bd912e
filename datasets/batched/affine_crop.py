"""The top-down crops of a batch as bilinear warps (``cv2.warpAffine`` semantics, on any device).

Images of one size are warped together; each image is sampled in its own normalised coordinates,
so no zero-padded canvas is needed (outside the image is the black border of ``BORDER_CONSTANT``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def invert_affines(mat: torch.Tensor) -> torch.Tensor:
    """Inverses of (B, 3, 3) affine matrices (last row 0, 0, 1), in closed form: unlike
    ``torch.linalg.inv`` it never checks for singular matrices, so it never waits for the device."""
    a, b, tx = mat[:, 0].unbind(-1)
    c, d, ty = mat[:, 1].unbind(-1)
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    first = torch.stack([ia, ib, -(ia * tx + ib * ty)], -1)
    second = torch.stack([ic, id_, -(ic * tx + id_ * ty)], -1)
    return torch.stack([first, second, mat[:, 2]], 1)


def sampling_grids(image_to_crop: torch.Tensor, img_hw: torch.Tensor,
                   output_size: tuple[int, int]) -> torch.Tensor:
    """Where each crop pixel samples its image, for ``torch.grid_sampler_2d`` with aligned corners.

    Args:
        image_to_crop: (B, 3, 3) affine from image px to crop px (pixel centres at integers).
        img_hw: (B, 2) (h, w) of each sample's image.
        output_size: (w, h) of the crops.

    Returns:
        (B, h, w, 2) float32 (x, y) in the image's normalised coordinates (-1 and 1: the centres
        of its first and last pixels).
    """
    w, h = output_size
    inv = invert_affines(image_to_crop.double())[:, :2]  # crop px -> image px
    half_w, half_h = (w - 1) / 2, (h - 1) / 2  # crop normalised u -> crop px (u + 1) * half
    lin = torch.stack([inv[..., 0] * half_w, inv[..., 1] * half_h], -1)  # (B, 2, 2)
    trans = inv[..., 0] * half_w + inv[..., 1] * half_h + inv[..., 2]  # (B, 2)
    norm = 2 / (img_hw.flip(1).double() - 1).clamp(min=1)  # image px -> normalised, per axis (x, y)
    theta = torch.cat([lin * norm[..., None], (trans * norm - 1)[..., None]], -1).float()  # (B, 2, 3)
    dev = {'dtype': torch.float32, 'device': theta.device}
    base = torch.stack([torch.linspace(-1, 1, w, **dev).expand(h, w),
                        torch.linspace(-1, 1, h, **dev)[:, None].expand(h, w),
                        torch.ones(h, w, **dev)], -1)  # (h, w, 3) crop-normalised (u, v, 1)
    return (base.view(1, h * w, 3) @ theta.transpose(1, 2)).view(-1, h, w, 2)


def warp_group(canvas: torch.Tensor, grids: Sequence[torch.Tensor]) -> torch.Tensor:
    """Bilinear samples (n, C, h, w) float32 of n same-size images ``canvas`` (n, C, H, W) float32 at
    their grids (h, w, 2) (:func:`sampling_grids` rows); zero outside the image.

    PyTorch's own kernel (``grid_sampler_2d``), not cuDNN's, so CUDA computes what the CPU does.
    OpenCV quantises the sampling positions to 1/32 px and the weights to fixed point, so crops may
    differ from ``cv2.warpAffine`` by a few levels at edges.
    """
    return torch.grid_sampler_2d(canvas, torch.stack(list(grids)), 0, 0, True)  # bilinear, zeros, aligned


def to_uint8(crops: torch.Tensor) -> torch.Tensor:
    """Float samples rounded and clipped to uint8, as ``cv2.warpAffine`` stores them."""
    return crops.round_().clamp_(0, 255).to(torch.uint8)
