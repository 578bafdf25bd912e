"""Thread settings on a loaded machine: the demo's frames/s and a batch-1 forward's latency with torch's own
thread default, with this project's default (``utils.threads``: the free cores) and with ``--threads 1``.

    python benchmarks/bench_threads.py [CONFIG [CHECKPOINT]] [--video FILE] [--frames 10]
        [--load N] [--load-seconds 600] [--iters 10] [--settings torch default 1]

It starts ``--load`` busy processes (default: one per usable core), which stop by themselves after
``--load-seconds`` and are ended when the benchmark ends, then runs, per setting and in fresh processes,
``topdown_demo_with_mmdet.py none none CONFIG CKPT --input VIDEO --max-frames N`` (the whole frame as the
person box; drawn video into a temporary folder) and ``benchmarks/bench_inference.py CONFIG CKPT --batch 1
--modes eager``. ``OMP_NUM_THREADS`` is removed from their environment, so the default is the rule's own
choice. Defaults: the RLE-0.5x COCO+AIC config with the sample weights (seeded random weights for another
config, or when the sample weights are missing) and the sample video in ``../shared`` (else a synthetic
960x540 one). Prints one JSON line per setting and a table.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `python tools/x.py`

import json
import os
import re
import subprocess
import tempfile

import cv2
import numpy as np

from models.checkpoints.model_zoo import add_checkpoint_argument, resolve_checkpoint
from utils import cli
from utils.config import load_config
from utils.threads import usable_cores

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('MMPOSE_CLEAN_SHARED') or REPO.parent / 'shared')
CONFIG = REPO / 'configs' / 'rle' / 'rle_mbv2-0.5x_aic-coco-192x192.py'
WEIGHTS = SHARED / 'weights' / 'rle_mbv2-0.5x_aic-coco-192x192_202403131203.pth'
VIDEO = SHARED / 'data' / 'video' / 'demo.mp4'
SETTINGS = ('torch', 'default', '1')
BUSY = 'import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n'


def start_load(processes: int, seconds: int) -> list[subprocess.Popen]:
    """``processes`` Python processes spinning on one core each for at most ``seconds``."""
    return [subprocess.Popen([sys.executable, '-c', BUSY.format(seconds=seconds)]) for _ in range(processes)]


def synthetic_video(path: Path, frames: int) -> Path:
    """A 960x540 mp4 of a moving bright rectangle on noise (when the sample video is missing)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 25.0, (960, 540))
    rng = np.random.default_rng(0)
    for i in range(frames):
        frame = rng.integers(0, 80, (540, 960, 3), dtype=np.uint8)
        cv2.rectangle(frame, (300 + 10 * i, 60), (560 + 10 * i, 500), (200, 180, 160), -1)
        writer.write(frame)
    writer.release()
    return path


def random_weights(config: str, path: Path) -> Path:
    """The config's model with seeded random weights, saved as a checkpoint (timing only)."""
    import torch

    from models import build_pose_estimator
    from models.checkpoints import save_checkpoint

    torch.manual_seed(0)
    cfg = load_config(config, ['model.backbone.init_cfg=None'])
    save_checkpoint(path, {'state_dict': build_pose_estimator(cfg.model).state_dict()})
    return path


def run(cmd: list[str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}
    proc = subprocess.run([sys.executable, *cmd], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}')
    return proc.stdout


def torch_default_threads() -> int:
    """torch's own intra-op thread count in a fresh process without OMP_NUM_THREADS."""
    return int(run(['-c', 'import torch; print(torch.get_num_threads())']).strip())


def measure(flags: list[str], config: str, checkpoint: str, video: str, frames: int, iters: int,
            out_dir: str) -> dict:
    """Demo frames/s and batch-1 eager forward latency with the thread ``flags``."""
    demo = run(['topdown_demo_with_mmdet.py', 'none', 'none', config, checkpoint, '--input', video,
                '--max-frames', str(frames), '--device', 'cpu', '--out-dir', out_dir, *flags])
    fps = float(re.search(r'frames in [\d.]+ s: ([\d.]+) frames/s', demo).group(1))
    threads = re.search(r'^(\d+) CPU threads? \((.*)\), device', demo, re.M)
    bench = run(['benchmarks/bench_inference.py', config, checkpoint, '--batch', '1', '--modes', 'eager',
                 '--iters', str(iters), '--warmup', '2', *flags])
    forward = json.loads(bench.strip().splitlines()[-1])
    return dict(threads=int(threads.group(1)), chosen_by=threads.group(2), demo_fps=fps,
                forward_ms=forward['median_ms'], forward_p90_ms=forward['p90_ms'])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = cli.ArgumentParser(description=__doc__)
    cli.add_config_argument(parser, required=False, help='pose config (default: the RLE-0.5x COCO+AIC one)')
    add_checkpoint_argument(parser, required=False, option=True,
                            help='pose weights: a file, a work dir, a model-zoo name or a URL (default: the '
                                 'sample RLE-0.5x weights with the default config, else seeded random ones)')
    parser.add_argument('--video', type=cli.input_file('a video file'), help='default: the sample video, '
                        'else a synthetic 960x540 one')
    parser.add_argument('--frames', type=cli.positive_int, default=10, help='video frames per demo run')
    parser.add_argument('--iters', type=cli.positive_int, default=10, help='timed forwards per setting')
    parser.add_argument('--load', type=cli.positive_int, default=None,
                        help='busy processes started (default: one per usable core)')
    parser.add_argument('--load-seconds', type=cli.positive_int, default=600,
                        help='the busy processes stop by themselves after this long')
    parser.add_argument('--settings', nargs='+', choices=SETTINGS, default=list(SETTINGS),
                        help="torch: torch's own default; default: the scripts' rule; 1: --threads 1")
    args = parser.parse_args(argv)
    config = args.config or str(CONFIG)
    load_config(config)  # a bad config is one error line here, before the load starts
    with tempfile.TemporaryDirectory() as tmp:
        if args.checkpoint:
            checkpoint = str(resolve_checkpoint(args.checkpoint))
        elif Path(config).resolve() == CONFIG and WEIGHTS.is_file():
            checkpoint = str(WEIGHTS)
        else:
            checkpoint = str(random_weights(config, Path(tmp) / 'random.pth'))
        video = args.video or (str(VIDEO) if VIDEO.is_file() else
                               str(synthetic_video(Path(tmp) / 'video.mp4', args.frames)))
        cores = usable_cores()
        torch_default = torch_default_threads() if 'torch' in args.settings else None
        named = {'torch': (f"torch's default (--threads {torch_default})", ['--threads', str(torch_default)]),
                 'default': ('this default (free cores)', []), '1': ('--threads 1', ['--threads', '1'])}
        settings = [named[name] for name in args.settings]
        load = start_load(args.load or cores, args.load_seconds)
        print(f'{len(load)} busy processes on {cores} usable cores; demo: {args.frames} frames of {video}; '
              f'forward: batch 1, {args.iters} runs', flush=True)
        rows = []
        try:
            for name, flags in settings:
                row = dict(setting=name, **measure(flags, config, checkpoint, video, args.frames, args.iters,
                                                   os.path.join(tmp, 'out')))
                print(json.dumps(row), flush=True)
                rows.append(row)
        finally:
            for proc in load:
                proc.kill()
                proc.wait()
    print(f'{"setting":<34} {"threads":>7} {"demo frames/s":>13} {"forward ms":>10}')
    for row in rows:
        print(f'{row["setting"]:<34} {row["threads"]:>7} {row["demo_fps"]:>13.2f} {row["forward_ms"]:>10.1f}')
    return rows


if __name__ == '__main__':
    cli.run_main(main)
