"""Write augmented crops of a config's dataset with keypoints and skeleton drawn, to check a pipeline.

    python tools/browse_dataset.py CONFIG --out-dir DIR [--phase train|val] [--n N] [--seed S]
    (--output-dir DIR, MMPose's spelling, works too)

The samples come from the config's ``train_dataloader.dataset`` (or ``val_dataloader.dataset``), built as
training builds it: a CombinedDataset's members run their own pipelines first (AIC's KeypointConverter),
then the dataset's pipeline runs (a RepeatDataset's is that of the dataset it repeats). Each file
``NNNNN_img<img_id>_ann<id>.jpg`` is the network input crop (after every transform but packing), drawn
with the metainfo's keypoint and link colours (RGB in the metainfo).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import cv2
import numpy as np

from datasets import RepeatDataset, build_dataset
from datasets.transforms import ImageLoadError, PackPoseInputs
from utils import cli
from utils.config import load_config, require_sections
from utils.output_files import write_image


def draw_pose(img: np.ndarray, keypoints: np.ndarray, visible: np.ndarray, metainfo: dict,
              radius: int = 2, thickness: int = 1) -> np.ndarray:
    """Draw (K, 2) ``keypoints`` (px of ``img``) whose ``visible`` (K,) > 0, and the skeleton links
    between visible pairs, on a copy of the BGR uint8 ``img``; colours from ``metainfo`` (RGB)."""
    out = np.ascontiguousarray(img).copy()
    kpt_colors = metainfo['keypoint_colors'][:, ::-1].tolist()
    link_colors = metainfo['skeleton_link_colors'][:, ::-1].tolist()
    for (a, b), color in zip(metainfo['skeleton_links'], link_colors):
        if a < len(visible) and b < len(visible) and visible[a] > 0 and visible[b] > 0:
            pa = tuple(int(round(v)) for v in keypoints[a])
            pb = tuple(int(round(v)) for v in keypoints[b])
            cv2.line(out, pa, pb, color, thickness, cv2.LINE_AA)
    for k, color in enumerate(kpt_colors[:len(visible)]):
        if visible[k] > 0:
            cv2.circle(out, tuple(int(round(v)) for v in keypoints[k]), radius, color, -1, cv2.LINE_AA)
    return out


def augmented_sample(dataset, index: int, seed: int) -> dict:
    """Sample ``index`` through the dataset's pipeline, stopping before ``PackPoseInputs``; None when the
    pipeline drops it or its image is bad and the dataset has ``skip_bad_images=True`` (logged)."""
    try:
        results = dataset.sample_info(index, np.random.default_rng(seed))
        for t in dataset.pipeline.transforms:
            if isinstance(t, PackPoseInputs) or results is None:
                break
            results = t(results)
    except ImageLoadError as error:
        dataset.skip_bad_image(error)
        return None
    return results


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_config_argument(parser, help='pose config file (its train_dataloader / val_dataloader dataset)')
    cli.add_out_argument(parser, cli.output_dir, folder=True, aliases=['--output-dir'],
                         help='folder for the drawn crops (.jpg; created when the first is written)')
    parser.add_argument('--phase', choices=('train', 'val'), default='train',
                        help='which dataloader to browse')
    parser.add_argument('--n', type=cli.positive_int, default=20, help='number of samples to write')
    parser.add_argument('--seed', type=cli.random_seed, default=0, help='seed of the augmentations')
    cli.add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    require_sections(cfg, [f'{args.phase}_dataloader.dataset'], 'tools/browse_dataset.py')
    dataset = build_dataset(cfg[f'{args.phase}_dataloader']['dataset'],
                            cfg_dir=Path(args.config).resolve().parent,
                            cfg_path=f'{args.phase}_dataloader.dataset')
    while isinstance(dataset, RepeatDataset):  # the pipeline is the repeated dataset's
        dataset = dataset.dataset
    out_dir = Path(args.out_dir)
    metainfo = dataset.metainfo
    rng = np.random.default_rng(args.seed)
    n = min(args.n, len(dataset))
    indices = rng.permutation(len(dataset))[:n] if args.phase == 'train' else range(n)
    written = 0
    for i, index in enumerate(indices):
        results = augmented_sample(dataset, int(index), int(rng.integers(2**63 - 1)))
        if results is None:
            continue
        kpts = results.get('transformed_keypoints', results['keypoints'])
        visible = np.asarray(results['keypoints_visible'])
        visible = visible[0, :, 0] if visible.ndim == 3 else visible[0]
        img = draw_pose(results['img'], np.asarray(kpts)[0], visible, metainfo)
        name = out_dir / f'{i:05d}_img{results.get("img_id", -1)}_ann{results.get("id", -1)}.jpg'
        write_image(name, img)
        written += 1
    print(f'wrote {written} crops to {out_dir}')
    return 0


if __name__ == '__main__':
    cli.run_main(main)
