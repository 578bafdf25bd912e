"""Everything CUDA-only, checked with one command on one GPU (about 8-12 minutes), summarised in one table.

    python benchmarks/gpu_check.py --out-dir gpu_check/          # on a machine with a CUDA GPU
    python benchmarks/gpu_check.py --out-dir gpu_check/ --dry-run  # on the CPU: checks this script's plumbing

Rows: the environment; the CUDA-marked tests (``pytest -m cuda``: AMP bf16/fp16 steps, channels_last, fused
AdamW, EMA, resume, evaluation, one-process NCCL DDP, QAT); the no-host-sync check (the training step under
``torch.cuda.set_sync_debug_mode('error')``); a 1-epoch ``train.py --device cuda --amp`` run on the sample
config and its ``--resume`` to epoch 2; ``bench_train.py`` for the RLE-0.5x and SimCC-0.75x recipes with
synthetic batches (fp32 and AMP), with the real train loader (the sample images beside the repository) and
with 256 synthetic JPEGs through the per-sample and the device-side input pipelines (AMP),
giving images/s, data-wait share and peak memory. The table is printed and written, with every figure and
the tail of each failed command, to ``OUT_DIR/gpu_check.json``. Needs only requirements.txt (and
requirements-test.txt for pytest); the sample data and weights in ``../shared`` for the rows that use them.

``--dry-run`` runs the same rows on the CPU with tiny sizes (tests collected, not run; the meta-device step
test instead of the CUDA one); without CUDA and without ``--dry-run`` it stops with one ``error:`` line.
Exit status: 0 when every row passed, 1 when one failed, 2 for a usage error.
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository root, for `python benchmarks/x.py`

import argparse
import json
import os
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field

import torch

from models.checkpoints import read_checkpoint
from utils.cli import run_main

SAMPLE_CONFIG = 'configs/rle/rle_mbv2-0.5x_coco-sample-192x192.py'
RECIPES = {'RLE-0.5x': 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py',
           'SimCC-0.75x': 'configs/simcc/simcc_mbv2-0.75x-wo-deconv_aic-coco-192x192.py'}
SHARED_DATA = REPO.parent / 'shared' / 'data'
SHARED_WEIGHTS = REPO.parent / 'shared' / 'weights'
# the recipes' COCO + AIC train sets, pointed at the sample images beside the repository (12 + 3 people,
# the COCO ones repeated so that an epoch holds many batches)
SAMPLE_TRAIN_DATA = [
    f"train_dataloader.dataset.datasets.0.dataset.data_root='{SHARED_DATA}/'",
    "train_dataloader.dataset.datasets.0.dataset.ann_file='coco/test_coco.json'",
    "train_dataloader.dataset.datasets.0.dataset.data_prefix.img='coco/'",
    'train_dataloader.dataset.datasets.0.times=400',
    f"train_dataloader.dataset.datasets.1.data_root='{SHARED_DATA}/'",
    "train_dataloader.dataset.datasets.1.ann_file='aic/test_aic.json'",
    "train_dataloader.dataset.datasets.1.data_prefix.img='aic/'",
]


@dataclass
class Row:
    """One line of the summary: what was checked, whether it passed, its figures, what it ran."""
    name: str
    passed: bool
    summary: str
    seconds: float
    figures: dict = field(default_factory=dict)
    command: list = field(default_factory=list)
    output_tail: str = ''


def run(name: str, cmd: list[str], timeout: float, env: dict | None = None) -> tuple[Row, str]:
    """Run ``cmd`` from the repository root; a row (passed = exit status 0) and the command's output."""
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        output, passed = done.stdout + done.stderr, done.returncode == 0
        summary = 'ok' if passed else f'exit status {done.returncode}'
    except subprocess.TimeoutExpired as err:
        output, passed = f'{err.stdout or ""}{err.stderr or ""}', False
        summary = f'timed out after {timeout:.0f} s'
    seconds = time.perf_counter() - start
    tail = '' if passed else output[-3000:]
    print(f'[{"pass" if passed else "FAIL"}] {name} ({seconds:.0f} s)', flush=True)
    return Row(name, passed, summary, round(seconds, 1), command=cmd, output_tail=tail), output


def pytest_row(name: str, args: list[str], dry_run: bool, timeout: float) -> Row:
    """``pytest -m cuda`` (collected only in a dry run); the summary is pytest's last line."""
    cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *args]
    if dry_run:
        cmd.append('--collect-only')
    row, output = run(name, cmd, timeout)
    lines = [line for line in output.splitlines() if line.strip()]
    row.summary = lines[-1] if lines else row.summary
    if dry_run and row.passed and 'collected' not in row.summary and 'tests' not in row.summary:
        row.passed, row.summary = False, f'no tests collected ({row.summary})'
    return row


def train_rows(out_dir: Path, device: str, dry_run: bool) -> list[Row]:
    """train.py for one epoch on the sample config, then --resume to a second epoch."""
    work_dir = out_dir / 'train_sample'
    base = [sys.executable, 'train.py', '--cfg_file', SAMPLE_CONFIG, '--work-dir', str(work_dir),
            '--device', device, '--amp']
    tiny = ['train_dataloader.batch_size=12'] if dry_run else []
    rows = []
    if not SHARED_WEIGHTS.is_dir():
        return [Row('train.py', True, f'skipped: {SHARED_WEIGHTS} (sample weights) not found', 0.0)]
    runs = (('train.py --amp, 1 epoch', [], 1), ('train.py --resume, epoch 2', ['--resume'], 2))
    for name, extra, epochs in runs:
        cmd = base + extra + ['--cfg-options', f'train_cfg.max_epochs={epochs}', *tiny]
        row, _ = run(name, cmd, 600)
        if row.passed:
            saved = read_checkpoint(work_dir / 'last.pth')['epoch']
            resumed = 'Resumed from' in (work_dir / 'train.log').read_text()
            row.passed = saved == epochs and (resumed or not extra)
            row.summary = f'last.pth at epoch {saved}' + (', resumed' if resumed and extra else '')
        rows.append(row)
        if not row.passed:
            break
    return rows


def bench_rows(device: str, dry_run: bool) -> list[Row]:
    """bench_train.py per recipe: synthetic fp32, synthetic AMP, real loader AMP, and synthetic JPEGs through
    the per-sample (cpu) and the batched (device) input pipelines, AMP."""
    size = ['--iters', '1', '--warmup', '1', '--batch-size', '2'] if dry_run else \
        ['--iters', '60', '--warmup', '15']
    workers = ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False'] \
        if dry_run else []
    variants = [('synthetic fp32', ['--synthetic']), ('synthetic AMP', ['--synthetic', '--amp'])]
    if SHARED_DATA.is_dir():
        variants.append(('train loader AMP', ['--amp', '--cfg-options', *SAMPLE_TRAIN_DATA, *workers]))
    jpegs = '4' if dry_run else '256'
    for pipeline in ('cpu', 'device'):
        variants.append((f'{jpegs} JPEGs, {pipeline} input pipeline, AMP',
                         ['--amp', '--synthetic-jpeg', jpegs, '--input-pipeline', pipeline,
                          *(['--cfg-options', *workers] if workers else [])]))
    rows = []
    for recipe, config in RECIPES.items():
        for label, extra in variants:
            cmd = [sys.executable, 'benchmarks/bench_train.py', config, '--device', device, '--json', *size,
                   *extra]
            row, output = run(f'bench_train {recipe}, {label}', cmd, 300)
            if row.passed:
                row.figures = json.loads(output.strip().splitlines()[-1])
                f = row.figures
                memory = f'{f["peak_memory_mb"]} MB' if f['peak_memory_mb'] is not None else 'n/a'
                row.summary = (f'{f["images_per_s"]} img/s, batch {f["batch"]}, data wait '
                               f'{100 * f["data_wait_share"]:.0f} %, peak memory {memory}')
                if f.get('input_pipeline'):
                    row.summary += (f', {f["input_pipeline"]} input pipeline, host '
                                    f'{f["host_ms_per_sample"]} CPU ms/sample')
            rows.append(row)
    return rows


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as JSON atomically (temporary file, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    with os.fdopen(fd, 'w') as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out-dir', required=True, help='folder for gpu_check.json and the training run')
    parser.add_argument('--dry-run', action='store_true',
                        help='check the plumbing on the CPU (tiny sizes; tests collected, not run)')
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print('error: no CUDA device is visible (torch.cuda.is_available() is False); run this on a GPU '
              'machine, or use --dry-run to check the script itself on the CPU', file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = 'cpu' if args.dry_run else 'cuda'
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'
    env = dict(torch=torch.__version__, cuda=torch.version.cuda, gpu=gpu, dry_run=args.dry_run,
               cpu_threads=os.cpu_count())
    rows = [Row('environment', True, f'torch {torch.__version__}, CUDA {torch.version.cuda}, GPU {gpu}', 0.0,
                figures=env)]
    if args.dry_run:
        rows.append(pytest_row('CUDA-marked tests', ['-m', 'cuda'], True, 300))
        rows.append(pytest_row('no host sync (meta device)', ['tests/test_train_step.py', '-k', 'meta'],
                               False, 300))
    else:
        rows.append(pytest_row('CUDA-marked tests', ['-m', 'cuda', '-k', 'not never_synchronises'], False,
                               300))
        rows.append(pytest_row('no host sync (sync debug mode error)',
                               ['-m', 'cuda', '-k', 'never_synchronises'], False, 300))
    rows += train_rows(out_dir, device, args.dry_run)
    rows += bench_rows(device, args.dry_run)

    width = max(len(r.name) for r in rows)
    print(f'{"check":<{width}}  result  seconds  summary')
    for r in rows:
        print(f'{r.name:<{width}}  {"pass" if r.passed else "FAIL":<6}  {r.seconds:>7.1f}  {r.summary}')
    report = out_dir / 'gpu_check.json'
    write_json(report, {'environment': env, 'rows': [asdict(r) for r in rows]})
    failed = [r.name for r in rows if not r.passed]
    print(f'{len(rows) - len(failed)}/{len(rows)} passed; written to {report}')
    return 1 if failed else 0


if __name__ == '__main__':
    run_main(main)
