"""The GPU check's first row: what the other rows need, checked in a few seconds.

    python benchmarks/gpu_preflight.py [--shared DIR] [--cpu] [--json]

Checks the imports (torch, torchvision, OpenCV, numpy, pycocotools, tensorboard, matplotlib, ONNX Runtime,
onnx, scipy, pytest, tqdm) and their versions (torch >= 2.11, torchvision >= 0.26); the CUDA device, its
memory and compute capability; then what fails first on a new GPU machine: a bf16 channels_last
convolution forward and backward through cuDNN, pinned memory with a non-blocking copy, nvJPEG
(``torchvision.io.decode_jpeg(device='cuda')`` against OpenCV's decode), NCCL; on the host the CPU count,
the free space in /dev/shm (loader workers hand batches over through it) and the multiprocessing start
method; and the sample data and weights the GPU check uses (``--shared``, default
``$MMPOSE_CLEAN_SHARED``, else ``../shared``). ``--cpu`` leaves the CUDA items out (``gpu_check.py
--dry-run``). Prints one line per item, then with ``--json`` one JSON line; exit status 0 when nothing is
missing, 1 when something is (each problem is a ``PROBLEM`` line and in ``problems``).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import argparse
import importlib
import importlib.metadata
import json
import multiprocessing
import os
import platform
import time
from typing import Any

from utils import cli
from utils.sample_data import SHARED_ENV, shared_dir

# module to import -> distribution whose version is reported
PACKAGES = {'torch': 'torch', 'torchvision': 'torchvision', 'cv2': 'opencv-python-headless', 'numpy': 'numpy',
            'pycocotools.cocoeval': 'pycocotools', 'torch.utils.tensorboard': 'tensorboard',
            'matplotlib.pyplot': 'matplotlib', 'onnxruntime': 'onnxruntime', 'onnx': 'onnx', 'scipy': 'scipy',
            'pytest': 'pytest', 'tqdm': 'tqdm'}
MIN_VERSIONS = {'torch': '2.11', 'torchvision': '0.26'}
# what the GPU check's rows read from the sample data folder
SHARED_FILES = ('data/coco/test_coco.json', 'data/aic/test_aic.json',
                'weights/rle_mbv2-0.5x_aic-coco-192x192_202403131203.pth',
                'weights/mobilenetv2_0.5x_udp_coco_aic_backbone_192x192.pth')
MIN_SHM_GIB = 1.0  # 8 loader workers x 2 prefetched batches of 256 crops or JPEGs: ~0.5 GiB


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_imports(problems: list[str]) -> dict[str, str | None]:
    """{distribution: version, or None when its module does not import}."""
    import matplotlib

    matplotlib.use('Agg')
    found = {}
    for module, dist in PACKAGES.items():
        try:
            imported = importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - any import failure is reported, not raised
            found[dist] = None
            problems.append(f'import {module} fails: {type(error).__name__}: {error}'.splitlines()[0])
            continue
        found[dist] = getattr(imported, '__version__', None) if module in ('torch', 'torchvision') \
            else _version(dist) or getattr(imported, '__version__', 'unknown')
    from torch.torch_version import TorchVersion

    for dist, floor in MIN_VERSIONS.items():
        if found.get(dist) and TorchVersion(found[dist].split('+')[0]) < floor:
            problems.append(f'{dist} {found[dist]} is older than {floor}, the oldest supported')
    return found


def check_cuda(problems: list[str]) -> dict[str, Any]:
    """The device and a smoke test of what training uses on it (each failure is a problem)."""
    import cv2
    import numpy as np
    import torch
    import torch.distributed as dist
    from torchvision.io import ImageReadMode, decode_jpeg

    if not torch.cuda.is_available():
        problems.append('no CUDA device: torch.cuda.is_available() is False '
                        f'(torch {torch.__version__}, built for CUDA {torch.version.cuda})')
        return {'available': False}
    props = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info(0)
    info: dict[str, Any] = dict(
        available=True, devices=torch.cuda.device_count(), name=props.name,
        memory_gib=round(total / 2 ** 30, 1), free_memory_gib=round(free / 2 ** 30, 1),
        compute_capability=f'{props.major}.{props.minor}', multiprocessors=props.multi_processor_count,
        torch_cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
        bf16=torch.cuda.is_bf16_supported(), nccl=dist.is_available() and dist.is_nccl_available())
    steps = {
        'first CUDA call': lambda: torch.zeros(1, device='cuda').add_(1).sum().item(),
        'cuDNN bf16 channels_last conv forward + backward': lambda: _conv_step(torch),
        'pinned memory, non-blocking copy': lambda: _pinned_copy(torch),
        'nvJPEG decode (torchvision.io.decode_jpeg on cuda)': lambda: _nvjpeg(torch, np, cv2, decode_jpeg,
                                                                               ImageReadMode),
    }
    for name, step in steps.items():
        start = time.perf_counter()
        try:
            step()
            torch.cuda.synchronize()
            info[f'{name} (s)'] = round(time.perf_counter() - start, 3)
        except Exception as error:  # noqa: BLE001 - reported as a problem of this machine
            problems.append(f'{name} fails: {type(error).__name__}: {error}'.splitlines()[0])
    if not info['nccl']:
        problems.append('NCCL is not available in this torch build (multi-GPU training and the DDP test)')
    if not info['bf16']:
        problems.append(f'{props.name} has no bfloat16: --amp falls back to float16 with loss scaling')
    return info


def _conv_step(torch: Any) -> None:
    torch.backends.cudnn.benchmark = True
    conv = torch.nn.Conv2d(16, 32, 3, padding=1).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(8, 16, 48, 48, device='cuda').to(memory_format=torch.channels_last)
    with torch.autocast('cuda', torch.bfloat16):
        y = conv(x)
    y.float().square().mean().backward()
    assert conv.weight.grad is not None and bool(torch.isfinite(conv.weight.grad).all())


def _pinned_copy(torch: Any) -> None:
    host = torch.arange(1 << 20, dtype=torch.uint8).pin_memory()
    device = host.to('cuda', non_blocking=True)
    assert host.is_pinned() and torch.equal(device.cpu(), host)


def _nvjpeg(torch: Any, np: Any, cv2: Any, decode_jpeg: Any, mode: Any) -> None:
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 0)
    data = torch.from_numpy(cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].ravel().copy())
    decoded = decode_jpeg([data], mode=mode.RGB, device='cuda')[0]
    bgr = cv2.imdecode(data.numpy(), cv2.IMREAD_COLOR)
    reference = torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1)
    diff = (decoded.cpu().int() - reference.int()).abs().float().mean().item()
    assert decoded.is_cuda and decoded.shape == (3, 48, 64) and diff < 2.0, f'mean difference {diff:.2f}'


def check_host(problems: list[str]) -> dict[str, Any]:
    info: dict[str, Any] = dict(python=platform.python_version(), platform=platform.platform(),
                                cpus=os.cpu_count(), usable_cpus=len(os.sched_getaffinity(0)),
                                start_method=multiprocessing.get_start_method(allow_none=False))
    try:
        info['ram_gib'] = round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30, 1)
    except (ValueError, OSError):
        info['ram_gib'] = None
    try:
        shm = os.statvfs('/dev/shm')
        info['shm_free_gib'] = round(shm.f_bavail * shm.f_frsize / 2 ** 30, 2)
        if info['shm_free_gib'] < MIN_SHM_GIB:
            problems.append(f'/dev/shm has {info["shm_free_gib"]} GiB free (< {MIN_SHM_GIB}): loader workers '
                            'fail to hand over batches (docker: --shm-size=8g)')
    except OSError as error:
        info['shm_free_gib'] = None
        problems.append(f'/dev/shm: {error}')
    return info


def check_shared(shared: Path, problems: list[str]) -> dict[str, Any]:
    missing = [name for name in SHARED_FILES if not (shared / name).is_file()]
    if missing:
        problems.append(f'the sample data folder {shared} lacks {", ".join(missing)} (give --shared DIR, '
                        f'e.g. gpu_bundle/shared from tools/prepare_gpu_bundle.py, or set {SHARED_ENV})')
    return {'folder': str(shared), 'missing': missing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--shared', help=f'the sample data folder (default: ${SHARED_ENV}, else ../shared)')
    parser.add_argument('--cpu', action='store_true', help='leave out the CUDA items (a CPU-only dry run)')
    parser.add_argument('--json', action='store_true', help='also print the figures as one JSON line')
    args = parser.parse_args(argv)
    problems: list[str] = []
    report: dict[str, Any] = {'host': check_host(problems), 'packages': check_imports(problems)}
    if not args.cpu and report['packages'].get('torch'):
        report['cuda'] = check_cuda(problems)
    report['shared'] = check_shared(shared_dir(args.shared), problems)
    report['problems'] = problems
    for section in ('host', 'packages', 'cuda', 'shared'):
        if section in report:
            print(f'{section}: ' + ', '.join(f'{k} {v}' for k, v in report[section].items()))
    for problem in problems:
        print(f'PROBLEM {problem}')
    if args.json:
        print(json.dumps(report))
    return 1 if problems else 0


if __name__ == '__main__':
    cli.run_main(main)
