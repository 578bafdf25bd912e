"""Everything CUDA-only, checked with one command on one GPU in at most 6 minutes (``--quick``: 3 minutes).

    python benchmarks/gpu_check.py --shared DIR --out-dir OUT_DIR [--quick] [--only PATTERNS]
    python benchmarks/gpu_check.py --shared DIR --out-dir OUT_DIR --dry-run   # on the CPU: the plumbing

Rows, most telling first (README, "GPU check", says what each proves): ``preflight`` (imports, versions,
the device, its memory and compute capability, cuDNN / pinned memory / nvJPEG / NCCL smoke tests,
/dev/shm, the sample data); ``cuda-tests`` (``pytest -m cuda``); ``no-sync`` (the training step under
``torch.cuda.set_sync_debug_mode('error')``); ``train`` / ``resume`` (``train.py --amp`` on the sample
config for 1 epoch, then ``--resume`` to epoch 2); ``stages`` (the device pipeline's ms per stage for a
batch of 256 synthetic JPEGs, decode-only images/s, ATen ops per batch); ``bench-<recipe>-<variant>``
(``bench_train.py`` for RLE-0.5x and SimCC-0.75x at the recipes' batch 256: synthetic batches with AMP and
in fp32, 256 synthetic JPEGs through the device and the per-sample input pipelines, the sample images
through the recipe's train loader; images/s, data-wait share, peak memory). ``--quick`` keeps preflight,
cuda-tests, no-sync, train, stages and RLE's synthetic-AMP and JPEG-device rows, with fewer iterations.

Every row has a timeout and the run a deadline (``--time-limit``, default 360 s, 180 with ``--quick``): a
row that cannot start in time is listed as NOT RUN. A row passes only when its command succeeded: a
skipped test, missing sample data (SKIP) or a row left out by the deadline count as not passed. OUT_DIR
gets ``gpu_check.json`` (listing every planned row from the start, rewritten atomically after each one),
``gpu_check.txt`` (the table), ``gpu_check.log`` (each command and its output's tail) and, on a rerun,
``gpu_check.previous.json``; training runs and JPEGs go to a temporary folder, so reruns never collide.
``--only`` runs the rows whose ids match comma-separated shell patterns (e.g. ``'train,bench-rle-*'``).
``--dry-run`` runs the rows on the CPU with tiny sizes (CUDA tests collected, not run; the meta-device
step tests instead of the sync-debug ones). Without CUDA and without ``--dry-run`` it stops with one
``error:`` line. Exit status: 0 when every row passed, 1 otherwise, 2 for a usage error.
"""
import sys
import time
from pathlib import Path

STARTED = time.monotonic()  # the time limit counts from here: imports included
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository root, for `python benchmarks/x.py`

import argparse
import fnmatch
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone

from benchmarks.gpu_check_rows import SIZES, Check, JpegFolder, Row, Settings, dry_run_commands, plan
from utils import cli
from utils.errors import ArgumentError
from utils.output_files import write_text_atomic
from utils.sample_data import SHARED_ENV, shared_dir

TIME_LIMITS = {'full': 360.0, 'quick': 180.0}  # seconds of wall time on the GPU machine
DRY_RUN_SCALE = 5.0  # a dry run's limit and row timeouts: the CPU, tiny sizes, but a busy 2-core machine
MIN_START_S = 10.0  # a row with less time left is not started
FINISH_S = 3.0  # kept for the final table and files
LOG_TAIL = 40_000  # characters of each command's output kept in gpu_check.log
Runner = Callable[[list[str], float, dict], tuple[int | None, str]]


def run_command(cmd: list[str], timeout: float, env: dict) -> tuple[int | None, str]:
    """Run ``cmd`` from the repository root in a process group of its own: (exit status, or None when it
    ran past ``timeout`` and was killed with its children (loader workers, pytest's subprocesses);
    stdout and stderr together)."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors='replace', start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        return proc.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return None, output


class Outputs:
    """OUT_DIR's files: gpu_check.json and gpu_check.txt (rewritten atomically after every row),
    gpu_check.log (appended), gpu_check.previous.json (the JSON of the run before, on a rerun)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.json, self.txt = folder / 'gpu_check.json', folder / 'gpu_check.txt'
        self.log, self.previous = folder / 'gpu_check.log', folder / 'gpu_check.previous.json'

    def begin(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.json.is_file():
            os.replace(self.json, self.previous)
        self.log.write_text('')

    def write(self, header: dict, rows: list[Row]) -> None:
        write_text_atomic(self.json, json.dumps({**header, 'rows': [asdict(r) for r in rows]}, indent=1))
        write_text_atomic(self.txt, table(header, rows) + '\n')

    def append_log(self, row: Row, output: str) -> None:
        with self.log.open('a') as f:
            f.write(f'===== {row.id}: {row.name} [{row.status}, {row.seconds:.1f} s, timeout '
                    f'{row.timeout_s:.0f} s]\n$ {" ".join(row.command)}\n{output[-LOG_TAIL:]}\n\n')


def table(header: dict, rows: list[Row]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [f'gpu_check ({header["mode"]}, limit {header["time_limit_s"]:.0f} s), started '
             f'{header["started"]}',
             f'{"row":<{width}}  result   seconds  summary']
    lines += [f'{r.name:<{width}}  {r.status:<7}  {r.seconds:>7.1f}  {r.summary}' for r in rows]
    done = [r for r in rows if r.status != 'pending']
    lines.append(f'{sum(r.status == "pass" for r in rows)}/{len(rows)} passed'
                 + ('' if len(done) == len(rows) else f' ({len(rows) - len(done)} pending)'))
    return '\n'.join(lines)


def precondition(check: Check, settings: Settings, done: dict[str, Row], left: float) -> str | None:
    """Why ``check`` cannot run (a SKIP), or None."""
    if 'shared' in check.needs and not (settings.shared / 'data').is_dir():
        return (f'no sample data in {settings.shared} (give --shared DIR, e.g. gpu_bundle/shared from '
                f'tools/prepare_gpu_bundle.py)')
    if 'train' in check.needs and done.get('train', Row('', '')).status != 'pass':
        return 'needs the train row to pass in the same run'
    if 'jpegs' in check.needs:
        return settings.jpegs.wait(max(left - MIN_START_S, 0.0))
    return None


def run_rows(checks: list[Check], settings: Settings, outputs: Outputs, header: dict, deadline: float,
             scale: float = 1.0, runner: Runner | None = None) -> list[Row]:
    """Run ``checks`` in order until ``deadline`` (time.monotonic()); every row's timeout is its cap
    (times ``scale``) or the time left, whichever is less. The JSON lists every row from the start and is
    rewritten after each; each row is printed when it finishes."""
    runner = runner or run_command
    rows = [Row(c.id, c.name) for c in checks]
    outputs.write(header, rows)
    env = {**os.environ, SHARED_ENV: str(settings.shared)}
    for check, row in zip(checks, rows):
        start = time.monotonic()
        reason = None if deadline - start < MIN_START_S else \
            precondition(check, settings, {r.id: r for r in rows}, deadline - start)
        timeout = min(check.cap_s * scale, deadline - time.monotonic())
        if timeout < MIN_START_S:
            row.status = 'NOT RUN'
            row.summary = f'the time limit of the run ({header["time_limit_s"]:.0f} s) was reached'
        elif reason:
            row.status, row.summary = 'SKIP', reason
        else:
            row.command, row.timeout_s = check.command(settings), round(timeout, 1)
            rc, output = runner(row.command, timeout, env)
            try:
                row.status, row.summary, row.figures = (
                    ('FAIL', f'timed out after {timeout:.0f} s (its limit in this run)', {}) if rc is None
                    else check.judge(settings, rc, output))
            except Exception as error:  # noqa: BLE001 - an unexpected output is this row's failure
                row.status = 'FAIL'
                row.summary = f'its output could not be read: {type(error).__name__}: {error}'
            row.output_tail = '' if row.status == 'pass' else output[-3000:]
            row.seconds = round(time.monotonic() - start, 1)
            outputs.append_log(row, output)
        row.seconds = round(time.monotonic() - start, 1)
        if row.id == 'preflight' and row.figures:
            header['environment'] = row.figures
        print(f'[{row.status}] {row.name} ({row.seconds:.0f} s): {row.summary}', flush=True)
        outputs.write(header, rows)
    return rows


def select(checks: list[Check], quick: bool, only: str | None) -> list[Check]:
    if not only:
        return [c for c in checks if c.quick or not quick]
    patterns = [p.strip() for p in only.split(',') if p.strip()]
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(c.id, p) for c in checks)]
    if unknown or not patterns:
        raise ArgumentError(f'--only {only!r}: {", ".join(unknown) or "nothing"} matches no row; the rows '
                            'are ' + ', '.join(c.id for c in checks))
    return [c for c in checks if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out-dir', required=True, help='folder for gpu_check.json, .txt and .log')
    parser.add_argument('--shared', help=f'the sample data folder (default: ${SHARED_ENV}, else ../shared)')
    parser.add_argument('--quick', action='store_true', help='the most telling rows, fewer iterations: '
                                                             'at most 3 minutes')
    parser.add_argument('--only', metavar='PATTERNS', help="run only these rows (ids, shell patterns, "
                                                           "comma-separated, e.g. 'train,bench-rle-*')")
    parser.add_argument('--time-limit', type=float, metavar='SECONDS',
                        help='wall-time limit of the whole run (default 360, 180 with --quick)')
    parser.add_argument('--dry-run', action='store_true',
                        help='check the plumbing on the CPU (tiny sizes; CUDA tests collected, not run)')
    args = parser.parse_args(argv)
    mode = 'dry-run' if args.dry_run else 'quick' if args.quick else 'full'
    checks = select(plan(), args.quick, args.only)
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            raise ArgumentError('no CUDA device is visible (torch.cuda.is_available() is False); run this on '
                                'a GPU machine, or use --dry-run to check the script itself on the CPU')
    else:
        dry_run_commands(checks)
    scale = DRY_RUN_SCALE if args.dry_run else 1.0
    limit = args.time_limit or TIME_LIMITS['quick' if args.quick else 'full'] * scale
    outputs = Outputs(Path(args.out_dir))
    outputs.begin()
    header = {'command': ['benchmarks/gpu_check.py', *(argv if argv is not None else sys.argv[1:])],
              'mode': mode, 'quick': args.quick, 'time_limit_s': limit,
              'shared': str(shared_dir(args.shared)),
              'started': datetime.now(timezone.utc).isoformat(timespec='seconds'), 'finished': None,
              'environment': {}}
    deadline = STARTED + limit - FINISH_S
    with tempfile.TemporaryDirectory(prefix='gpu_check_') as work:
        settings = Settings(mode, shared_dir(args.shared), Path(work))
        if any('jpegs' in c.needs for c in checks):
            settings.jpegs = JpegFolder(Path(work) / 'jpegs', SIZES[mode]['jpegs'])
        rows = run_rows(checks, settings, outputs, header, deadline, scale)
    header.update(finished=datetime.now(timezone.utc).isoformat(timespec='seconds'),
                  passed=sum(r.status == 'pass' for r in rows), total=len(rows))
    outputs.write(header, rows)
    print(table(header, rows))
    print(f'written to {outputs.json}, {outputs.txt.name} and {outputs.log.name}')
    return 0 if header['passed'] == len(rows) else 1


if __name__ == '__main__':
    cli.run_main(main)
