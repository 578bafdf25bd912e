"""The top-down crop of a whole batch as one bilinear warp (``cv2.warpAffine`` semantics, on any device)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


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


def affine_crop(canvas: torch.Tensor, image_to_crop: torch.Tensor,
                output_size: tuple[int, int]) -> torch.Tensor:
    """Warp each image of a zero-padded canvas into its crop.

    Args:
        canvas: (B, C, Hc, Wc) float32 (or uint8) pixel values; image i in its top-left corner, zeros
            elsewhere (the black border of ``cv2.warpAffine``'s ``BORDER_CONSTANT``).
        image_to_crop: (B, 3, 3) affine from image px to crop px (pixel centres at integers).
        output_size: (w, h) of the crops.

    Returns:
        uint8 (B, C, h, w): bilinear samples, rounded (OpenCV quantises the sampling positions to
        1/32 px and the weights to fixed point, so values may differ by a few levels at edges).
    """
    b, c, hc, wc = canvas.shape
    w, h = output_size
    f64 = {'dtype': torch.float64, 'device': canvas.device}
    # grid_sample with align_corners=True: -1 and 1 are the centres of the first and last pixels
    to_src_norm = torch.tensor([[2 / max(wc - 1, 1), 0, -1], [0, 2 / max(hc - 1, 1), -1], [0, 0, 1]], **f64)
    half_w, half_h = (w - 1) / 2, (h - 1) / 2
    from_out_norm = torch.tensor([[half_w, 0, half_w], [0, half_h, half_h], [0, 0, 1]], **f64)
    theta = to_src_norm @ invert_affines(image_to_crop.to(**f64)) @ from_out_norm
    grid = F.affine_grid(theta[:, :2].float(), [b, c, h, w], align_corners=True)
    out = F.grid_sample(canvas.float(), grid, mode='bilinear', padding_mode='zeros', align_corners=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)
