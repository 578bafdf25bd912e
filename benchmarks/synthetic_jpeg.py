"""Synthetic COCO-format keypoint data with realistic JPEGs, so that decode cost in benchmarks is real.

    python benchmarks/synthetic_jpeg.py OUT_DIR [--images 64]

Each image is 640x480, textured like a photograph (smooth lighting, mid-frequency texture, sensor
noise) and holds several drawn people whose 17 COCO keypoints and boxes are annotated; saved at
JPEG quality 92 the files come out at about 100-150 kB, like COCO's.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import json

import cv2
import numpy as np

from utils import cli

# A standing person's 17 COCO keypoints in box units (x, y in [0, 1]).
_POSE = np.array([[.50, .08], [.54, .06], [.46, .06], [.58, .08], [.42, .08], [.66, .22], [.34, .22],
                  [.74, .38], [.26, .38], [.78, .52], [.22, .52], [.60, .55], [.40, .55], [.62, .76],
                  [.38, .76], [.63, .96], [.37, .96]])
_LIMBS = [(5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (11, 12), (5, 11), (6, 12), (11, 13), (13, 15), (12, 14),
          (14, 16)]


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(60, 200, 3).astype(np.float32)
    light = (xx / w - 0.5) * rng.uniform(-80, 80) + (yy / h - 0.5) * rng.uniform(-80, 80)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (h, w, 3)).astype(np.float32), (0, 0), 3) * 90
    return base + light[..., None] + texture


def _draw_person(img: np.ndarray, rng: np.random.Generator, box: np.ndarray) -> np.ndarray:
    """Draw a person in ``box`` (x, y, w, h); return its keypoints (17, 3) with COCO visibility."""
    x, y, bw, bh = box
    kpts = _POSE * [bw, bh] + [x, y] + rng.normal(0, 0.02, (17, 2)) * [bw, bh]
    colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
    thickness = max(2, int(bw * 0.12))
    for a, b in _LIMBS:
        cv2.line(img, tuple(int(v) for v in kpts[a]), tuple(int(v) for v in kpts[b]), colour, thickness)
    cv2.circle(img, tuple(int(v) for v in kpts[0]), max(3, int(bw * 0.12)), colour, -1)
    visible = np.where(rng.random(17) < 0.85, 2, 0)
    return np.concatenate([kpts, visible[:, None]], axis=1)


def write_synthetic_coco(folder: str | Path, n_images: int = 64, seed: int = 0,
                         size: tuple[int, int] = (640, 480), quality: int = 92) -> Path:
    """Write ``n_images`` JPEGs of ``size`` (w, h) with 2-6 people each and ``ann.json`` (COCO
    keypoints format) into ``folder``; returns the annotation file's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    images, anns = [], []
    for i in range(n_images):
        img = _background(rng, h, w)
        for _ in range(int(rng.integers(2, 7))):
            bh = rng.uniform(0.3, 0.9) * h
            bw = bh * rng.uniform(0.35, 0.6)
            box = np.array([rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh])
            kpts = _draw_person(img, rng, box)
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=1, bbox=box.round(2).tolist(),
                             keypoints=kpts.round(2).ravel().tolist(),
                             num_keypoints=int((kpts[:, 2] > 0).sum()), area=float(bw * bh), iscrowd=0))
        img += rng.normal(0, 7.5, img.shape).astype(np.float32)  # sensor noise: what makes photos ~120 kB
        name = f'{i + 1:012d}.jpg'
        pixels = np.clip(img, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / name), pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
        images.append(dict(id=i + 1, file_name=name, height=h, width=w))
    path = folder / 'ann.json'
    path.write_text(json.dumps(dict(images=images, annotations=anns, categories=[dict(id=1, name='person')])))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_out_argument(parser, cli.output_dir, folder=True, positional='OUT_DIR',
                         help='folder for the JPEGs and their ann.json')
    parser.add_argument('--images', type=cli.positive_int, default=64)
    args = parser.parse_args(argv)
    ann = write_synthetic_coco(args.out_dir, args.images)
    sizes = [p.stat().st_size for p in Path(args.out_dir).glob('*.jpg')]
    print(f'wrote {ann} and {len(sizes)} images, {np.mean(sizes) / 1000:.0f} kB mean '
          f'({min(sizes) / 1000:.0f}-{max(sizes) / 1000:.0f} kB)')
    return 0


if __name__ == '__main__':
    cli.run_main(main)
