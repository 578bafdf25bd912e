"""Known checkpoints by name, downloading checkpoints given as http(s) URLs, and the checkpoint argument.

A checkpoint argument (``val.py``, the demo, ``tools/``, ``benchmarks/``, ``apis.init_model`` /
``init_detector``, ``init_cfg`` of configs) may be a file path, a training run's work dir (its
``best.pth``, else ``last.pth``), a model name from :data:`MODEL_ZOO`, or an http(s) URL. Names and URLs
are downloaded once into ``pretrained_weight/`` (resuming a partial ``.part`` file when the server allows
it), and checked against the zoo's SHA-256 or the one published in the file name (the 8+ hex digits after
the last ``-``, as OpenMMLab and ``tools/publish_model.py`` name files).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tqdm import tqdm

from utils.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO_ROOT / 'pretrained_weight'
_HASH_IN_NAME = re.compile(r'-([0-9a-f]{8,64})(?:_\d{8})?\.pth$')
_CHUNK = 1 << 16


class ModelZooError(UserError, RuntimeError):
    """A checkpoint that is neither a file, a known name nor a downloadable URL, or a bad download."""


@dataclass(frozen=True)
class ZooEntry:
    """One known checkpoint: its file name, download URL (None: not public), SHA-256 (or its published
    prefix), the config (relative to the repository root) that builds its model, and a description."""

    filename: str
    url: str | None
    sha256: str | None
    config: str | None
    description: str


_MMDET = 'https://download.openmmlab.com/mmdetection/v3.0/rtmdet/'
_MMPOSE = 'https://download.openmmlab.com/mmpose/v1/body_2d_keypoint/'
_ORIGINAL = ('the original MMPose_Clean project\'s checkpoint with this log name (its work_dirs/); '
             'no public URL')
# The original project's published files, pinned to one commit of github.com/neesetifa/MMPose_Clean.
ORIGINAL_COMMIT = '8031fae883696075a3e4b6b1f7bcaf93950f6ca8'
ORIGINAL_RAW = f'https://github.com/neesetifa/MMPose_Clean/raw/{ORIGINAL_COMMIT}/'

MODEL_ZOO: dict[str, ZooEntry] = {
    'rtmdet-tiny': ZooEntry(
        'rtmdet_tiny_8xb32-300e_coco_20220902_112414-78e30dcc.pth',
        _MMDET + 'rtmdet_tiny_8xb32-300e_coco/rtmdet_tiny_8xb32-300e_coco_20220902_112414-78e30dcc.pth',
        '78e30dcc', 'configs/detection/rtmdet_tiny_8xb32-300e_coco.py', 'RTMDet-tiny, COCO 40.5 box AP'),
    'rtmdet-s': ZooEntry(
        'rtmdet_s_8xb32-300e_coco_20220905_161602-387a891e.pth',
        _MMDET + 'rtmdet_s_8xb32-300e_coco/rtmdet_s_8xb32-300e_coco_20220905_161602-387a891e.pth',
        '387a891e', 'configs/detection/rtmdet_s_8xb32-300e_coco.py', 'RTMDet-s, COCO 44.6 box AP'),
    'rtmdet-m': ZooEntry(
        'rtmdet_m_8xb32-300e_coco_20220719_112220-229f527c.pth',
        _MMDET + 'rtmdet_m_8xb32-300e_coco/rtmdet_m_8xb32-300e_coco_20220719_112220-229f527c.pth',
        '229f527c', 'configs/detection/rtmdet_m_8xb32-300e_coco.py', 'RTMDet-m, COCO 49.4 box AP'),
    'mmpose-rle-mbv2-256x192': ZooEntry(
        'td-reg_mobilenetv2_rle-pretrained-8xb64-210e_coco-256x192-39b73bd5_20220922.pth',
        _MMPOSE + 'topdown_regression/coco/'
        'td-reg_mobilenetv2_rle-pretrained-8xb64-210e_coco-256x192-39b73bd5_20220922.pth',
        '39b73bd5', 'configs/rle/td-reg_mobilenetv2_rle-pretrained-8xb64-210e_coco-256x192.py',
        'MMPose RLE MobileNetV2-1.0x 256x192, COCO 59.3 AP'),
    'mmpose-simcc-mbv2-256x192': ZooEntry(
        'simcc_mobilenetv2_wo-deconv-8xb64-210e_coco-256x192-4b0703bb_20221010.pth',
        _MMPOSE + 'simcc/coco/simcc_mobilenetv2_wo-deconv-8xb64-210e_coco-256x192-4b0703bb_20221010.pth',
        '4b0703bb', 'configs/simcc/simcc_mobilenetv2_wo-deconv-8xb64-210e_coco-256x192.py',
        'MMPose SimCC MobileNetV2-1.0x 256x192, COCO 62.0 AP'),
    'rle-mbv2-0.5x-192x192': ZooEntry(
        'rle_mbv2-0.5x_aic-coco-192x192_202403131203.pth',
        ORIGINAL_RAW + 'work_dirs/202403131203_rle_coco_aic_mb_050_quant/202403281820_ptq/last.pth',
        'f3707015e1365b7a946ec592b772fbc13dff1430ca8f92ac5ed66a8aa747f878',
        'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py',
        'RLE MobileNetV2-0.5x 192x192, COCO 48.81 AP, log 202403131203 (the original project\'s float '
        'weights of the best epoch)'),
    'mbv2-0.5x-imagenet-backbone': ZooEntry(
        'mobilenet_v2_0.5x_imagenet_backbone.pth',
        ORIGINAL_RAW + 'pretrained_weight/0_imagenet/mobilenet_v2_0.5x_pretrained_backbone.pth',
        '69e4e1ab09f5711916bf3a312e11829d1e773cfa0908a1e3f5cfdf00edffbbcd', None,
        'ImageNet-pretrained MobileNetV2-0.5x backbone (no prefix); init of the 0.5x heatmap models'),
    'mbv2-0.5x-heatmap-coco-backbone-192x192': ZooEntry(
        'mobilenetv2_0.5x_heatmap_coco_backbone_192x192.pth',
        ORIGINAL_RAW + 'pretrained_weight/1_heatmap/'
        'mobilenetv2_0.50x_heatmap_coco_pretrained_backbone_192x192.pth',
        '884adfb84de5fa38b66c3163cf915a6cbb39ad7530d0f6ff88004781d701698e', None,
        'backbone (backbone.*) of the original project\'s COCO heatmap MobileNetV2-0.5x 192x192'),
    'mbv2-0.5x-udp-coco-aic-backbone-192x192': ZooEntry(
        'mobilenetv2_0.5x_udp_coco_aic_backbone_192x192.pth',
        ORIGINAL_RAW + 'pretrained_weight/2_udp_heatmap/'
        'mobilenetv2_0.5x_udp_coco_aic_pretrained_backbone_192x192.pth',
        'b925c2799c6941f703f7e1238fcd5fee05b021738355992092a7449cdbf1a011', None,
        'backbone (backbone.*) of the original project\'s COCO+AIC UDP-heatmap MobileNetV2-0.5x 192x192; '
        'init of the RLE-0.5x model'),
    'rle-mbv2-0.75x-192x192': ZooEntry(
        'rle_mobilenet_0.75x_192x192_mmpose_202404121425.pth', None, None,
        'configs/rle/rle_mbv2-0.75x_aic-coco-192x192.py',
        'RLE MobileNetV2-0.75x 192x192, COCO 57.20 AP, log 202404121425; ' + _ORIGINAL),
    'simcc-mbv2-0.75x-192x192': ZooEntry(
        'simcc_mbv2-0.75x_aic-coco-192x192_202412301530.pth', None, None,
        'configs/simcc/simcc_mbv2-0.75x-wo-deconv_aic-coco-192x192.py',
        'SimCC MobileNetV2-0.75x 192x192, COCO 58.60 AP, log 202412301530; ' + _ORIGINAL),
    'simcc-mbv2-0.75x-256x192': ZooEntry(
        'simcc_mbv2-0.75x_aic-coco-256x192_202405131104.pth', None, None,
        'configs/simcc/simcc_mbv2-0.75x-wo-deconv_aic-coco-256x192.py',
        'SimCC MobileNetV2-0.75x 256x192, COCO 60.44 AP, log 202405131104; ' + _ORIGINAL),
}


def zoo_config(name: str) -> Path | None:
    """The config file of a known model name (None for other strings or entries without a config)."""
    entry = MODEL_ZOO.get(name)
    return REPO_ROOT / entry.config if entry is not None and entry.config else None


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def hash_prefix_from_name(filename: str) -> str | None:
    """The SHA-256 prefix OpenMMLab puts in file names (``..._112414-78e30dcc.pth`` -> ``78e30dcc``)."""
    match = _HASH_IN_NAME.search(filename)
    return match.group(1) if match else None


def download(url: str, dst: str | os.PathLike, sha256: str | None = None, progress: bool = True,
             timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dst`` through ``dst.part`` (resumed with an HTTP Range request when it
    exists and the server answers 206), then check that the file's SHA-256 starts with ``sha256``.

    Raises:
        ModelZooError: on network errors (saying where to put the file by hand) or a hash mismatch
            (the bad file is deleted).
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(dst.name + '.part')
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={'Range': f'bytes={have}-'} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = have > 0 and response.status == 206
            length = response.headers.get('Content-Length')
            total = (int(length) + (have if resumed else 0)) if length else None
            with open(part, 'ab' if resumed else 'wb') as f, tqdm(
                    total=total, initial=have if resumed else 0, unit='B', unit_scale=True,
                    desc=dst.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b''):
                    f.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        if err.code != 416 or not have:  # 416 after a Range request: the .part file is complete
            raise ModelZooError(f'downloading {url} failed: HTTP {err.code} {err.reason}. Download it '
                                f'by other means and put it at {dst}') from err
    except (urllib.error.URLError, OSError) as err:
        raise ModelZooError(f'cannot download {url} ({err}); without network access, download it '
                            f'elsewhere and put it at {dst}') from err
    if sha256:
        actual = sha256_of(part)
        if not actual.startswith(sha256.lower()):
            part.unlink()
            raise ModelZooError(f'{url}: downloaded file has SHA-256 {actual}, expected it to start with '
                                f'{sha256}; the file was deleted, try again')
    part.replace(dst)
    return dst


CHECKPOINT_HELP = ('checkpoint: a file (.pth; .onnx where ONNX Runtime serves the model), a training run\'s '
                   'work dir (its best.pth, else last.pth), a model-zoo name '
                   '(models/checkpoints/model_zoo.py) or an http(s) URL (downloaded into pretrained_weight/)')


def add_checkpoint_argument(parser: Any, required: bool = True, option: bool = False,
                            help: str = CHECKPOINT_HELP) -> None:
    """Add the positional ``CHECKPOINT`` argument (``args.checkpoint``), described the same everywhere.

    With ``option`` it may also be given as ``--checkpoint CHECKPOINT`` (not both); without ``required``
    it may be left out (``args.checkpoint`` is None).
    """
    if not option:
        parser.add_argument('checkpoint', nargs=None if required else '?', metavar='CHECKPOINT', help=help)
        return
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument('checkpoint', nargs='?', default=argparse.SUPPRESS, metavar='CHECKPOINT', help=help)
    group.add_argument('--checkpoint', dest='checkpoint', metavar='CHECKPOINT',
                       help='the checkpoint given as an option (alias of the positional CHECKPOINT)')


def run_checkpoint(work_dir: str | os.PathLike) -> Path:
    """The checkpoint of a training run's work dir: its ``best.pth``, else its ``last.pth``."""
    work_dir = Path(work_dir)
    for name in ('best.pth', 'last.pth'):
        if (work_dir / name).is_file():
            return work_dir / name
    raise ModelZooError(f'{work_dir} is a folder that holds neither best.pth nor last.pth; expected a '
                        "checkpoint file or a training run's work dir")


def resolve_checkpoint(checkpoint: str | os.PathLike, root: str | os.PathLike | None = None,
                       progress: bool = True) -> Path:
    """Local path of a checkpoint given as a file path, a work dir, a :data:`MODEL_ZOO` name, or an
    http(s) URL.

    Names and URLs are looked up in ``root`` (default :data:`DEFAULT_ROOT`, ``pretrained_weight/``) first
    and downloaded there when absent.

    Raises:
        ModelZooError: unknown name / missing file (listing the known names), a work dir without
            best.pth / last.pth, a known model without a public URL that is not in ``root`` (saying
            which file to put where), or a failed download.
    """
    text = os.fspath(checkpoint)
    if os.path.isfile(text):
        return Path(text)
    if os.path.isdir(text):
        return run_checkpoint(text)
    root = Path(DEFAULT_ROOT if root is None else root)
    if text in MODEL_ZOO:
        entry = MODEL_ZOO[text]
        dst = root / entry.filename
        if dst.is_file():
            return dst
        if entry.url is None:
            raise ModelZooError(f'{text!r} ({entry.description}) cannot be downloaded: put the file '
                                f'{entry.filename} at {dst}')
        return download(entry.url, dst, entry.sha256, progress)
    if urlparse(text).scheme in ('http', 'https'):
        filename = Path(urlparse(text).path).name
        if not filename:
            raise ModelZooError(f'URL {text!r} does not end in a file name')
        dst = root / filename
        if dst.is_file():
            return dst
        return download(text, dst, hash_prefix_from_name(filename), progress)
    if os.sep in text or Path(text).suffix in ('.pth', '.pt', '.onnx'):
        raise ModelZooError(f'checkpoint file not found: {text} (neither a file nor a work dir)')
    raise ModelZooError(f'checkpoint {text!r} is not a file, a work dir, a known model name '
                        f'({", ".join(MODEL_ZOO)}) or an http(s) URL')
