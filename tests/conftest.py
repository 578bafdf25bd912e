"""What the tests share: where the sample data and weights live, the markers that skip without them, the
fixtures, and the small configs, models and batches several test modules build.

The sample data (``data/``: 4 COCO images, 3 AI Challenger images, a video) and the original project's
weights (``weights/``) live in one folder: the environment variable ``MMPOSE_CLEAN_SHARED``, by default
``shared`` beside the repository (``../shared``). Tests that need them carry :data:`needs_coco` (the COCO
sample), :data:`needs_data` (all the sample data) or :data:`needs_weights`, and skip without them. Tests
marked ``cuda`` skip on machines without a CUDA GPU. Test modules import what they need from here
(``from tests.conftest import DATA, needs_data``), never from each other.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from utils.cli import run_main
from utils.sample_data import shared_dir
from utils.threads import THREADS_ENV, set_threads

REPO = Path(__file__).resolve().parents[1]

# One compute thread in the test process and in every process it starts (the scripts' thread rule,
# utils.threads, reads OMP_NUM_THREADS; a test that checks the rule sets or removes it itself): the tests'
# tensors are tiny, and threads beyond the free cores make each parallel region wait for the slowest one,
# up to 10x slower on a busy machine. An OMP_NUM_THREADS set by the caller is kept.
os.environ.setdefault(THREADS_ENV, '1')
set_threads()

# ------------------------------------------------------------------------------ sample data and weights
SHARED = shared_dir()  # $MMPOSE_CLEAN_SHARED, else ../shared
DATA = SHARED / 'data'
WEIGHTS = SHARED / 'weights'
COCO = DATA / 'coco'
COCO_ANN = COCO / 'test_coco.json'  # 4 images, 14 annotations
COCO_DETS = COCO / 'test_coco_det_AP_H_56.json'  # person detections of those images
AIC_ANN = DATA / 'aic' / 'test_aic.json'
VIDEO = DATA / 'video' / 'demo.mp4'
RLE_WEIGHTS = WEIGHTS / 'rle_mbv2-0.5x_aic-coco-192x192_202403131203.pth'  # the trained RLE-0.5x model
RLE_CONFIG = WEIGHTS / 'rle_mbv2-0.5x_aic-coco-192x192_202403131203.config.py'  # the original's config
UDP_BACKBONE = WEIGHTS / 'mobilenetv2_0.5x_udp_coco_aic_backbone_192x192.pth'
HEATMAP_BACKBONE = WEIGHTS / 'mobilenetv2_0.5x_heatmap_coco_backbone_192x192.pth'
IMAGENET_BACKBONE = WEIGHTS / 'mobilenet_v2_0.5x_imagenet_backbone.pth'
SAMPLE_CONFIG = REPO / 'configs' / 'rle' / 'rle_mbv2-0.5x_coco-sample-192x192.py'  # the quick start's


def sample_config_options() -> list[str]:
    """``--cfg-options`` that point :data:`SAMPLE_CONFIG` (written for ``../shared``, relative to the
    repository) at :data:`SHARED`."""
    root = f'{DATA}/'
    return [f'train_dataloader.dataset.datasets.0.data_root={root}',
            f'val_dataloader.dataset.data_root={root}', f'test_dataloader.dataset.data_root={root}',
            f'val_evaluator.ann_file={COCO_ANN}',
            f'test_evaluator.ann_file={COCO_ANN}', f'load_from={RLE_WEIGHTS}',
            f'model.backbone.init_cfg.checkpoint={UDP_BACKBONE}']


def _skip_unless(files: tuple[Path, ...], what: str) -> pytest.MarkDecorator:
    missing = [f for f in files if not f.is_file()]
    reason = f'{what} not found ({missing[0]}; set MMPOSE_CLEAN_SHARED)' if missing else ''
    return pytest.mark.skipif(bool(missing), reason=reason)


needs_coco = _skip_unless((COCO_ANN, COCO_DETS), 'the COCO sample')
needs_data = _skip_unless((COCO_ANN, COCO_DETS, AIC_ANN, VIDEO), 'the sample data (COCO, AIC, video)')
needs_weights = _skip_unless((RLE_WEIGHTS, RLE_CONFIG, UDP_BACKBONE, HEATMAP_BACKBONE, IMAGENET_BACKBONE),
                             'the sample weights')


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU (benchmarks/gpu_check.py runs these)')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


def _visible_entries(folder: Path) -> set[Path]:
    """Entries of ``folder`` but hidden ones and ``__pycache__`` (pytest's and Python's own)."""
    if not folder.is_dir():
        return set()
    return {p for p in folder.iterdir() if not p.name.startswith('.') and p.name != '__pycache__'}


def _git_changes() -> set[str] | None:
    """``git status --porcelain`` lines of the repository (files git does not ignore that are new, changed
    or gone); None outside a git work tree (e.g. the copy on the GPU machine)."""
    try:
        result = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=all'], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(result.stdout.splitlines()) if result.returncode == 0 else None


@pytest.fixture(autouse=True, scope='session')
def _repository_untouched():
    """Tests write only to temporary folders: no new entry in the repository's top folder (a default
    output folder such as vis_results/ or vis_data/, even a git-ignored one), work_dirs/ or
    pretrained_weight/ (e.g. a training run without --work-dir), and nothing that ``git status`` shows
    (a file written, changed or removed anywhere else) after the session."""
    folders = [REPO, REPO / 'work_dirs', REPO / 'pretrained_weight']
    before = {f: _visible_entries(f) for f in folders}
    git_before = _git_changes()
    yield
    new = sorted(str(p) for f in folders for p in _visible_entries(f) - before[f])
    assert not new, f'tests left files in the repository: {new}'
    git_after = _git_changes()
    if git_before is not None and git_after is not None:
        changed = sorted(git_after - git_before)
        assert not changed, f'tests changed the repository (git status): {changed}'


def clear_project_logger(keep: logging.Handler | None = None) -> None:
    """Remove every handler of the project logger (``train.main`` and ``get_logger`` add them, on a test's
    captured stdout or a train.log) and close it, except ``keep`` (a caplog handler pytest closes)."""
    logger = logging.getLogger('mmpose_clean')
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        if handler is not keep:
            handler.close()


@pytest.fixture
def fresh_project_logger():
    """For tests that run ``train.main`` in this process: the project logger has no handlers afterwards."""
    yield
    clear_project_logger()


@pytest.fixture
def project_log(caplog):
    """caplog receiving the project logger's records (INFO and up; the logger does not propagate to the
    root once a script set it up); afterwards the logger has no handlers again (``train.main`` replaces
    them with its own, on the test's captured stdout)."""
    logger = logging.getLogger('mmpose_clean')
    level, propagate = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # caplog's handler also sits on the root logger: each record once
    yield caplog
    clear_project_logger(keep=caplog.handler)
    logger.setLevel(level)
    logger.propagate = propagate


# ------------------------------------------------------------------------------ dataset configs
AIC_TO_COCO = [(0, 6), (1, 8), (2, 10), (3, 5), (4, 7), (5, 9), (6, 12), (7, 14), (8, 16), (9, 11), (10, 13),
               (11, 15)]


def coco_cfg(**kw) -> dict:
    """The COCO sample as a ``CocoDataset`` config (``kw`` added); for tests marked :data:`needs_data`."""
    return dict(type='CocoDataset', data_root=str(DATA) + '/', ann_file='coco/test_coco.json',
                data_prefix=dict(img='coco/'), **kw)


def aic_cfg(**kw) -> dict:
    """The AI Challenger sample as an ``AicDataset`` config; for tests marked :data:`needs_data`."""
    return dict(type='AicDataset', data_root=str(DATA) + '/', ann_file='aic/test_aic.json',
                data_prefix=dict(img='aic/'), **kw)


def combined_cfg(pipeline=(), pipeline_stage2=None) -> dict:
    """COCO x3 + AIC (mapped onto COCO's keypoints) as the COCO+AIC recipes combine them."""
    return dict(type='CombinedDataset', metainfo=dict(from_file='configs/_base_/datasets/coco.py'),
                datasets=[dict(type='RepeatDataset', times=3, dataset=coco_cfg(pipeline=[])),
                          aic_cfg(pipeline=[dict(type='KeypointConverter', num_keypoints=17,
                                                 mapping=AIC_TO_COCO)])],
                pipeline=list(pipeline), pipeline_stage2=pipeline_stage2)


def rle_pipelines() -> dict:
    """train_pipeline, train_pipeline_stage2, val_pipeline and codec of the original RLE config (in
    the sample weights' folder: for tests marked :data:`needs_weights`)."""
    from utils.config import Config

    text = RLE_CONFIG.read_text().replace("_base_ = ['../../../_base_/default_runtime.py']", '')
    cfg = Config.fromstring(text, directory=Path(__file__).resolve().parent)
    return {k: cfg[k] for k in ('train_pipeline', 'train_pipeline_stage2', 'val_pipeline', 'codec')}


def write_tiny_coco(folder: Path, n_people: int = 2, image_size: tuple[int, int] = (120, 160)) -> Path:
    """A COCO keypoint file with one random image holding ``n_people`` people; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = image_size
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / 'img1.jpg'), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    anns = []
    for i in range(n_people):
        kpts = np.zeros((17, 3))
        kpts[:, 0] = rng.uniform(20, w - 20, 17)
        kpts[:, 1] = rng.uniform(20, h - 20, 17)
        kpts[:, 2] = 2
        anns.append(dict(id=i + 1, image_id=1, category_id=1, bbox=[10.0, 10.0, w - 30.0, h - 30.0],
                         keypoints=kpts.ravel().tolist(), num_keypoints=17, area=1000.0, iscrowd=0))
    data = dict(images=[dict(id=1, file_name='img1.jpg', height=h, width=w)], annotations=anns,
                categories=[dict(id=1, name='person')])
    path = folder / 'ann.json'
    path.write_text(json.dumps(data))
    return path


# ------------------------------------------------------------------------------ the batched pipeline
RLE_CODEC = dict(type='RegressionLabel', input_size=(192, 192))
CROP_MEAN_ABS_BOUND = 0.5  # grey levels, per crop; observed <= 0.26 on the COCO + AIC samples
DAMAGED_NAME = '000000196141.jpg'  # instances 8.. of the COCO sample (ann order): the image tests damage


def geometric_pipeline(codec: dict, use_udp: bool = False, flip: dict | None = None) -> list[dict]:
    """A photometric-free training pipeline (MMPose's COCO recipe with a stronger box jitter)."""
    return [
        dict(type='LoadImage'),
        dict(type='GetBBoxCenterScale'),
        dict(type='RandomFlip', **(flip or dict(direction='horizontal'))),
        dict(type='RandomHalfBody', prob=0.5),
        dict(type='RandomBBoxTransform', scale_factor=[0.6, 1.4], rotate_factor=80),
        dict(type='TopdownAffine', input_size=codec['input_size'], use_udp=use_udp),
        dict(type='GenerateTarget', encoder=codec),
        dict(type='PackPoseInputs'),
    ]


def assert_crops_close(expected: torch.Tensor, got: torch.Tensor) -> None:
    """uint8 crops (B, 3, H, W) of the batched pipeline within :data:`CROP_MEAN_ABS_BOUND` of the
    per-sample ones (OpenCV's warpAffine quantises positions and weights; the batched warp does not)."""
    assert got.dtype == torch.uint8 and got.shape == expected.shape
    diff = (expected.int() - got.int()).abs().float().mean(dim=(1, 2, 3))
    assert diff.max() < CROP_MEAN_ABS_BOUND, diff


def copy_sample(tmp_path: Path, damage: dict[str, bytes]) -> dict:
    """The 4-image COCO sample copied to ``tmp_path``; files named in ``damage`` get those bytes
    (``b''``: the file is left out). Returns its dataset config with :func:`geometric_pipeline`."""
    ann = json.loads(COCO_ANN.read_text())
    for img in ann['images']:
        data = (COCO / img['file_name']).read_bytes()
        data = damage.get(img['file_name'], data)
        if data:
            (tmp_path / img['file_name']).write_bytes(data)
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    return dict(type='CocoDataset', ann_file=str(tmp_path / 'ann.json'), data_prefix=dict(img=str(tmp_path)),
                pipeline=geometric_pipeline(RLE_CODEC))


# ------------------------------------------------------------------------------ training
FAMILIES = {
    'rle': 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py',
    'simcc': 'configs/simcc/simcc_mbv2-0.75x-wo-deconv_aic-coco-192x192.py',
    'heatmap': 'configs/heatmap/td-hm_mbv2-0.5x_coco-192x192.py',
}


def tiny_config(tmp_path: Path, family: str = 'rle', max_epochs: int = 2, batch_size: int = 4,
                extra: str = '', train_dataset_args: str = '') -> Path:
    """A config inheriting the family's README config, trained and validated on the COCO sample (tests
    marked :data:`needs_data`); ``extra`` lines are appended, ``train_dataset_args`` go into the train
    dataset dict."""
    base = REPO / FAMILIES[family]
    combined = family != 'heatmap'  # the COCO+AIC recipes train on a CombinedDataset
    files = f"data_root='{DATA}/', ann_file='coco/test_coco.json', data_prefix=dict(img='coco/')"
    sample = f"dict(type='CocoDataset', data_mode='topdown', {files}, pipeline=[])"
    train_dataset = (f'dict(datasets=[{sample}], {train_dataset_args})' if combined
                     else f'dict({files}, {train_dataset_args})')
    text = f"""
        _base_ = ['{base}']
        max_epochs = {max_epochs}
        train_cfg = dict(max_epochs={max_epochs}, val_interval=1)
        stage2_num_epochs = 1
        log_interval = 1
        randomness = dict(seed=7)
        model = dict(backbone=dict(init_cfg=None))
        param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3)]
        train_dataloader = dict(batch_size={batch_size}, num_workers=0, persistent_workers=False,
                                dataset={train_dataset})
        val_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False,
                              dataset=dict({files}, bbox_file=None))
        val_evaluator = dict(ann_file='{COCO_ANN}')
    """
    path = tmp_path / f'tiny_{family}.py'
    path.write_text(textwrap.dedent(text) + textwrap.dedent(extra))
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


TRAIN_ENV = {**os.environ, THREADS_ENV: '1'}  # runs alike, whatever the caller's OMP_NUM_THREADS


def train_command(cfg_file: Path, work_dir: Path, *extra: str) -> list[str]:
    """``python train.py`` on the CPU, deterministic, for :func:`run_training` and
    :func:`start_and_wait_for`."""
    return [sys.executable, 'train.py', '--cfg_file', str(cfg_file), '--work-dir', str(work_dir),
            '--device', 'cpu', '--deterministic', *extra]


@pytest.fixture
def run_training(monkeypatch):
    """Run a :func:`train_command` to its end in this process (``train.main``: a new interpreter and its
    imports cost ~5 s of CPU and prove nothing more); it must succeed. ``--deterministic``'s torch settings
    and the project logger's handlers are put back afterwards."""
    import train

    monkeypatch.chdir(REPO)
    environment = dict(os.environ)  # --deterministic sets CUBLAS_WORKSPACE_CONFIG
    algorithms = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark

    def run(cmd: list[str]) -> None:
        assert cmd[:2] == [sys.executable, 'train.py'], cmd
        assert train.main(cmd[2:]) == 0

    yield run
    for key in set(os.environ) - set(environment):
        del os.environ[key]
    torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    clear_project_logger()


def start_and_wait_for(cmd: list[str], log: Path, marker: str, timeout: float = 300) -> subprocess.Popen:
    """Start ``cmd`` and return once ``marker`` appears in ``log`` (the process keeps running)."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=TRAIN_ENV)
    deadline = time.monotonic() + timeout
    while not (log.is_file() and marker in log.read_text()):
        if proc.poll() is not None:
            err = proc.stderr.read().decode()[-2000:]
            raise AssertionError(f'training exited early ({proc.returncode}): {err}')
        assert time.monotonic() < deadline, f'{marker!r} not logged within {timeout} s'
        time.sleep(0.01)
    return proc


STEP_RECIPES = {
    'rle': REPO / 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py',
    'simcc': REPO / 'configs/simcc/simcc_mbv2-0.75x-wo-deconv_aic-coco-192x192.py',
}


def step_recipe(family: str, amp: bool, device_type: str):
    """The recipe's config with clipping and an EMA hook added (the training step's every part runs), and
    no pretrained backbone file (the GPU machine has neither them nor a network to download them)."""
    from utils.config import load_config

    cfg = load_config(STEP_RECIPES[family])
    cfg.model['backbone']['init_cfg'] = None
    cfg.optim_wrapper['clip_grad'] = dict(max_norm=1.0)
    cfg['custom_hooks'] = [dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, gamma=2000,
                                update_buffers=True)]
    if amp:  # autocast has no 'meta' device type: the AMP wrapper's CPU autocast is active around meta ops
        cfg.optim_wrapper.update(type='AmpOptimWrapper', dtype='bfloat16', device_type=device_type)
    return cfg


def codec_batch(cfg, batch_size: int = 4) -> dict:
    """A CPU batch shaped like the train pipeline's: uint8 images and the codec's targets."""
    from codec import build_codec

    codec = build_codec(cfg.codec)
    width, height = cfg.codec['input_size']
    rng = np.random.default_rng(0)
    encoded = [codec.encode(rng.uniform(0, [width, height], (1, 17, 2)).astype(np.float32),
                            np.ones((1, 17), np.float32)) for _ in range(batch_size)]
    targets = {name: torch.from_numpy(np.stack([np.asarray(e[name])[0] for e in encoded]).astype(np.float32))
               for name in encoded[0]}
    inputs = torch.from_numpy(rng.integers(0, 256, (batch_size, 3, height, width), dtype=np.uint8))
    return {'inputs': inputs, 'targets': targets}


def cuda_batch(cfg, batch_size: int = 8) -> dict:
    """:func:`codec_batch` as train.py feeds it on CUDA: pinned, copied non-blocking, channels_last."""
    from engine import prepare_batch

    cpu = codec_batch(cfg, batch_size)
    pinned = {'inputs': cpu['inputs'].pin_memory(),
              'targets': {k: v.pin_memory() for k, v in cpu['targets'].items()}}
    return prepare_batch(pinned, torch.device('cuda'), channels_last=True)


# ------------------------------------------------------------------------------ small models
FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # COCO's left/right swap
PREPROCESSOR = dict(type='PoseDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                    bgr_to_rgb=True)


def rle_cfg(size: tuple[int, int] = (64, 64)) -> dict:
    """A small RLE MobileNetV2-0.5x pose config (64x64 crops keep the tests fast)."""
    codec = dict(type='RegressionLabel', input_size=size)
    return dict(codec=codec, model=dict(
        type='TopdownPoseEstimator', data_preprocessor=PREPROCESSOR,
        backbone=dict(type='MobileNetV2', widen_factor=0.5, out_indices=(7,)),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='RLEHead', in_channels=1280, num_joints=17, decoder=codec,
                  loss=dict(type='RLELoss', use_target_weight=True)),
        test_cfg=dict(flip_test=True, shift_coords=True)))


def simcc_cfg() -> dict:
    """A small SimCC MobileNetV2-0.5x config without deconvolutions (64x64 crops, 2x2 feature map)."""
    codec = dict(type='SimCCLabel', input_size=(64, 64), sigma=(4.9, 5.66), simcc_split_ratio=2.0,
                 normalize=False)
    return dict(codec=codec, model=dict(
        type='TopdownPoseEstimator', data_preprocessor=PREPROCESSOR,
        backbone=dict(type='MobileNetV2', widen_factor=0.5, out_indices=(7,)),
        head=dict(type='SimCCHead', in_channels=1280, out_channels=17, input_size=codec['input_size'],
                  in_featuremap_size=(2, 2), simcc_split_ratio=2.0, deconv_out_channels=None, decoder=codec),
        test_cfg=dict(flip_test=True)))


def build_small(cfg: dict) -> torch.nn.Module:
    """The estimator of :func:`rle_cfg` / :func:`simcc_cfg`, seeded, in eval mode."""
    from models import build_pose_estimator

    torch.manual_seed(0)
    model = build_pose_estimator(cfg['model']).eval()
    if hasattr(model.head, 'mlp_head_x'):  # well separated SimCC maxima: argmax must not hinge on 1e-7
        with torch.no_grad():
            model.head.mlp_head_x.bias.copy_(torch.randn_like(model.head.mlp_head_x.bias) * 5)
            model.head.mlp_head_y.bias.copy_(torch.randn_like(model.head.mlp_head_y.bias) * 5)
    return model


def crops(batch: int, size: tuple[int, int] = (64, 64)) -> torch.Tensor:
    """Seeded random uint8 crops (batch, 3, h, w) for ``size`` (w, h)."""
    torch.manual_seed(1)
    return torch.randint(0, 256, (batch, 3, size[1], size[0]), dtype=torch.uint8)


RTMDET_TINY = REPO / 'configs' / 'detection' / 'rtmdet_tiny_8xb32-300e_coco.py'


def seeded_state_dict(template: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic weights in state-dict order (BN stats included); person logits biased up so
    that some boxes pass typical thresholds, other classes down so that post-processing stays fast."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in template.items():
        if k.endswith('num_batches_tracked'):
            out[k] = torch.zeros_like(v)
        elif k.endswith('running_var') or (v.ndim == 1 and k.endswith('weight')):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        elif v.ndim == 4:
            out[k] = torch.randn(v.shape, generator=g) / math.sqrt(v[0].numel())
        else:
            out[k] = 0.1 * torch.randn(v.shape, generator=g)
        if 'rtm_cls' in k and k.endswith('bias'):
            out[k] = out[k] - 8.0
            out[k][0] += 7.0
        if 'rtm_reg' in k and k.endswith('bias'):
            out[k] = out[k] + 2.0
    return out


@pytest.fixture(scope='session')
def seeded_rtmdet_tiny(tmp_path_factory) -> Path:
    """RTMDet-tiny with :func:`seeded_state_dict` weights, saved as an MMDetection checkpoint
    ({'meta', 'state_dict'})."""
    from utils.config import Config
    from utils.registry import MODELS

    model = MODELS.build(Config.fromfile(RTMDET_TINY).model)
    model.load_state_dict(seeded_state_dict(model.state_dict()))  # shared convs: the last level wins
    path = tmp_path_factory.mktemp('rtmdet') / 'rtmdet_tiny_seeded.pth'
    torch.save({'meta': {'mmdet_version': '3.3.0'}, 'state_dict': model.state_dict()}, path)
    return path


class HistoryBuffer:
    """Stands for mmengine's ``HistoryBuffer``: a class this project does not know, in ``message_hub``."""

    def __init__(self) -> None:
        self._log_history = np.array([1.5, 2.5])
        self.max_length = 1000000


# ------------------------------------------------------------------ helpers of the user-error tests
ERROR_LINE_MAX = 400  # "one short line": at most this many characters, the test's temporary folder aside
_TMP_FOLDER = re.compile(r'\S*/pytest-\d+/(?:popen-gw\d+/)?')  # pytest's basetemp (per xdist worker)


def run_entry_point(main, argv, capsys) -> tuple[int, str]:
    """(exit status, stderr) of ``utils.cli.run_main(main, argv)``: the path every script's __main__ takes.

    The reported error's frames are cleared: ``run_main`` exits inside its ``except`` block, so its frame
    and the error reference each other, and what the failed run held (e.g. a data-loader iterator whose
    worker raised) would wait for the garbage collector; collected there in no particular order, such an
    iterator takes torch's 5 s worker-join timeout in whichever later test the collection falls."""
    with pytest.raises(SystemExit) as info:
        run_main(main, [str(a) for a in argv])
    error = info.value.__context__
    while error is not None:
        traceback.clear_frames(error.__traceback__)
        error = error.__context__
    return info.value.code, capsys.readouterr().err


def one_error_line(status: int, err: str, *needles: str, expected: int = 2) -> str:
    """Assert one short ``error:`` line holding every regex in ``needles``, no traceback; return it."""
    assert 'Traceback' not in err, err
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1, err
    shown = _TMP_FOLDER.sub('<tmp>/', lines[0])  # the user's own paths are as long as they are
    assert len(shown) <= ERROR_LINE_MAX, f'{len(shown)} characters: {lines[0]}'
    for needle in needles:
        assert re.search(needle, lines[0]), f'{needle!r} not in {lines[0]!r}'
    assert status == expected, (status, err)
    return lines[0]


def file_states(root) -> dict:
    """{path: (sha256, mtime)} of every file under ``root``, to show that a run left them as they were."""
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in Path(root).rglob('*') if p.is_file()}


# ------------------------------------------------------------------------------ int8 graphs
def assert_no_int16_saturation(path) -> None:
    """The int8 weights of every convolution but the depthwise ones lie in [-64, 64], so that no pair of
    u8 x s8 products can overflow int16 in ONNX Runtime's x86 kernels without VNNI (``vpmaddubsw``);
    depthwise ones (computed exactly) keep the full [-127, 127] range; every weight zero point is 0 (ONNX
    Runtime's int8 convolutions compute per-channel weights only when symmetric). Checked on the file: it
    holds on every CPU, whatever this machine's kernels do."""
    import onnx
    from onnx import numpy_helper

    from models.int8_grid import INT8_LEVELS, REDUCED_LEVELS

    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    weights = {node.output[0]: (inits[node.input[0]], inits.get(node.input[2] if len(node.input) > 2 else ''))
               for node in graph.node if node.op_type == 'DequantizeLinear' and node.input[0] in inits
               and inits[node.input[0]].dtype == np.int8}
    levels = {'dense': set(), 'depthwise': set()}
    for node in graph.node:
        if node.op_type == 'Conv' and node.input[1] in weights:
            q, zero_point = weights[node.input[1]]
            assert zero_point is None or not zero_point.any(), (node.name, zero_point)
            group = next((a.i for a in node.attribute if a.name == 'group'), 1)
            kind = 'depthwise' if q.shape[1] == 1 and q.shape[0] == group > 1 else 'dense'
            levels[kind].add(int(np.abs(q.astype(np.int32)).max()))
    assert levels['dense'] and max(levels['dense']) <= REDUCED_LEVELS, levels
    assert levels['depthwise'] and max(levels['depthwise']) == INT8_LEVELS, levels


def ort_session(model, optimized: bool = True):
    """One-thread ONNX Runtime CPU session of ``model`` (a path or an ``onnx.ModelProto``) with all graph
    optimisations (QDQ groups fused into int8 kernels) or none (every node run as written)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized else
                                        ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=['CPUExecutionProvider'])


def ort_run(session, inputs: np.ndarray) -> list[np.ndarray]:
    """All outputs of ``session`` on ``inputs``, fed in chunks of the graph's batch size when it is fixed."""
    node = session.get_inputs()[0]
    size = node.shape[0] if isinstance(node.shape[0], int) else len(inputs)
    runs = [session.run(None, {node.name: inputs[i:i + size]}) for i in range(0, len(inputs), size)]
    return [np.concatenate(outputs) for outputs in zip(*runs)]


def int8_conv_level_errors(path, inputs: np.ndarray) -> dict[str, int]:
    """For every ``DequantizeLinear -> Conv -> QuantizeLinear`` group of a QDQ file: the largest difference,
    in output levels, between ONNX Runtime's int8 kernel (the group alone, optimised into QLinearConv) and
    the group run op by op (float Conv on the dequantised values), both fed the group's input from an op
    by op run of the whole graph on ``inputs``. 0, or 1 at a rounding tie, where the kernel computes what
    the file says; int16 saturation or a non-zero weight zero point gives tens of levels."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    quantized = [node.output[0] for node in graph.node
                 if node.op_type == 'QuantizeLinear' and node.input[0] not in inits]
    del graph.output[:]
    graph.output.extend(helper.make_tensor_value_info(name, TensorProto.UINT8, None) for name in quantized)
    values = dict(zip(quantized, ort_run(ort_session(model, optimized=False), inputs)))
    errors = {}
    for conv in (node for node in graph.node if node.op_type == 'Conv'):
        x_dq, w_dq = producer[conv.input[0]], producer[conv.input[1]]
        (q,) = consumers[conv.output[0]]
        nodes = [x_dq, w_dq, conv, q]
        group = helper.make_graph(
            nodes, conv.name, [helper.make_tensor_value_info(x_dq.input[0], TensorProto.UINT8, None)],
            [helper.make_tensor_value_info(q.output[0], TensorProto.UINT8, None)],
            [inits[name] for name in {n for node in nodes for n in node.input} if name in inits])
        alone = helper.make_model(group, opset_imports=model.opset_import)
        feed = {x_dq.input[0]: values[x_dq.input[0]]}
        kernel, op_by_op = (ort_session(alone, optimized).run(None, feed)[0].astype(np.int32)
                            for optimized in (True, False))
        errors[conv.name] = int(np.abs(kernel - op_by_op).max())
    return errors
