"""The rows of ``benchmarks/gpu_check.py``: what each runs (command line), how its output is judged
(status, one-line summary, figures), its timeout and expected time on the GPU machine, and what it needs.

A row's command runs in a subprocess from the repository root; ``judge(settings, exit status, output)``
returns ``(status, summary, figures)`` with status 'pass', 'FAIL' or 'SKIP'.
"""
import json
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.gpu_preflight import SHARED_FILES
from benchmarks.synthetic_jpeg import write_synthetic_coco
from models.checkpoints import read_checkpoint

SAMPLE_CONFIG = 'configs/rle/rle_mbv2-0.5x_coco-sample-192x192.py'
RECIPES = {'rle': ('RLE-0.5x', 'configs/rle/rle_mbv2-0.5x_aic-coco-192x192.py'),
           'simcc': ('SimCC-0.75x', 'configs/simcc/simcc_mbv2-0.75x-wo-deconv_aic-coco-192x192.py')}
SIZES = {'full': dict(iters=30, warmup=10, jpegs=256, stage_batch=256, stage_repeats=3),
         'quick': dict(iters=20, warmup=8, jpegs=256, stage_batch=256, stage_repeats=2),
         'dry-run': dict(iters=1, warmup=1, jpegs=4, stage_batch=4, stage_repeats=1)}
TARGET = dict(images_per_s=10_000, data_wait_share=0.10)  # RLE-0.5x, batch 256, end to end (issue 20)


@dataclass
class Settings:
    """How this run runs its rows: ``mode`` ('full', 'quick' or 'dry-run'), the sample data folder and a
    temporary folder for training runs and synthetic JPEGs."""
    mode: str
    shared: Path
    work: Path
    jpegs: 'JpegFolder | None' = None

    @property
    def dry_run(self) -> bool:
        return self.mode == 'dry-run'

    @property
    def device(self) -> str:
        return 'cpu' if self.dry_run else 'cuda'

    @property
    def sizes(self) -> dict:
        return SIZES[self.mode]


@dataclass
class Row:
    """One line of the summary. ``status``: 'pass', 'FAIL', 'SKIP' (a precondition is missing), 'NOT RUN'
    (the deadline) or 'pending' (not reached yet); only 'pass' counts as passed."""
    id: str
    name: str
    status: str = 'pending'
    summary: str = ''
    seconds: float = 0.0
    timeout_s: float = 0.0
    figures: dict = field(default_factory=dict)
    command: list = field(default_factory=list)
    output_tail: str = ''


Judge = Callable[[Settings, int, str], tuple[str, str, dict]]


@dataclass
class Check:
    """A row to run: ``command`` builds its command line, ``judge`` turns (exit status, output) into
    (status, summary, figures). ``cap_s``: its timeout on the GPU machine; ``estimate_s``: the time it
    is expected to take there (the first CUDA call and cuDNN autotuning included); ``needs``: 'shared'
    (the sample data), 'jpegs' (the synthetic JPEGs), 'train' (the train row passed)."""
    id: str
    name: str
    cap_s: float
    estimate_s: float
    quick: bool
    command: Callable[[Settings], list[str]]
    judge: Judge
    needs: tuple[str, ...] = ()


class JpegFolder:
    """Synthetic JPEGs written once in a background thread (while the first rows run)."""

    def __init__(self, folder: Path, n_images: int) -> None:
        self.folder, self.n_images, self.error = folder, n_images, None
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self) -> None:
        try:
            write_synthetic_coco(self.folder, self.n_images)
        except Exception as error:  # noqa: BLE001 - reported by the rows that need the images
            self.error = f'writing the synthetic JPEGs failed: {type(error).__name__}: {error}'

    def wait(self, timeout: float) -> str | None:
        """None once the images are written, else why not."""
        self.thread.join(timeout)
        return 'the synthetic JPEGs were not written in time' if self.thread.is_alive() else self.error


# ------------------------------------------------------------------ commands and judges
def _last_json(output: str) -> dict | None:
    for line in reversed(output.strip().splitlines()):
        if line.startswith('{'):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def _failed(rc: int, output: str) -> tuple[str, str, dict]:
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(('error:', 'E ', 'FAILED', 'ERROR'))]
    return 'FAIL', f'exit status {rc}: {(errors or lines or ["no output"])[-1].strip()[:300]}', {}


def preflight_command(s: Settings) -> list[str]:
    return [sys.executable, 'benchmarks/gpu_preflight.py', '--shared', str(s.shared), '--json',
            *(['--cpu'] if s.dry_run else [])]


def judge_preflight(s: Settings, rc: int, output: str) -> tuple[str, str, dict]:
    report = _last_json(output)
    if report is None:
        return _failed(rc, output)
    problems = report.get('problems', [])
    cuda, host, pkgs = report.get('cuda', {}), report['host'], report['packages']
    device = (f"{cuda['name']}, {cuda['memory_gib']} GiB, compute {cuda['compute_capability']}"
              if cuda.get('available') else 'no GPU (dry run)' if s.dry_run else 'no GPU')
    summary = (f"{device}; torch {pkgs.get('torch')}, torchvision {pkgs.get('torchvision')}, CUDA "
               f"{cuda.get('torch_cuda', '-')}, Python {host['python']}, {host['usable_cpus']} CPUs, "
               f"/dev/shm {host.get('shm_free_gib')} GiB free")
    if problems:
        return 'FAIL', f'{len(problems)} problem(s): ' + '; '.join(problems), report
    return 'pass', summary, report


def pytest_command(*args: str, collect_only: bool = False) -> Callable[[Settings], list[str]]:
    def command(s: Settings) -> list[str]:
        return [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rs', *args,
                *(['--collect-only'] if collect_only else [])]
    return command


def judge_pytest(s: Settings, rc: int, output: str) -> tuple[str, str, dict]:
    """Passed: tests ran (or were collected) and none failed, errored or was skipped."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    last = lines[-1] if lines else 'no output'
    counts = {k: int(n) for n, k in re.findall(r'(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|'
                                                 r'deselected|tests? collected)', last)}
    collected = re.search(r'(\d+)(?:/\d+)? tests? collected', last)
    skips = [line for line in lines if line.startswith('SKIPPED')]
    if rc != 0 or counts.get('failed') or counts.get('error') or counts.get('errors'):
        return 'FAIL', f'exit status {rc}: {last}', counts
    if skips or counts.get('skipped'):
        return 'SKIP', f'{last} (a skipped test is not a pass: {skips[0][:200] if skips else ""})', counts
    if not counts.get('passed') and not (collected and int(collected.group(1))):
        return 'FAIL', f'no test ran: {last}', counts
    return 'pass', last, counts


def sample_options(s: Settings) -> list[str]:
    """--cfg-options pointing the sample config at the sample data folder (data_root re-evaluates every
    dataset and evaluator path; the two checkpoints are set on their own)."""
    return [f'data_root={s.shared}/data/', f'load_from={s.shared}/{SHARED_FILES[2]}',
            f'model.backbone.init_cfg.checkpoint={s.shared}/{SHARED_FILES[3]}']


def train_command(epochs: int, *extra: str) -> Callable[[Settings], list[str]]:
    def command(s: Settings) -> list[str]:
        tiny = ['train_dataloader.batch_size=12'] if s.dry_run else []
        return [sys.executable, 'train.py', SAMPLE_CONFIG, '--work-dir', str(s.work / 'train_sample'),
                '--device', s.device, '--amp', *extra, '--cfg-options', f'train_cfg.max_epochs={epochs}',
                *sample_options(s), *tiny]
    return command


def _newest(folder: Path, name: str) -> Path:
    """The newest file ``name`` in ``folder`` or below it."""
    found = sorted(folder.rglob(name), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f'train.py wrote no {name} under {folder}')
    return found[-1]


def judge_train(epochs: int) -> Judge:
    def judge(s: Settings, rc: int, output: str) -> tuple[str, str, dict]:
        if rc != 0:
            return _failed(rc, output)
        work_dir = s.work / 'train_sample'
        last, log = _newest(work_dir, 'last.pth'), _newest(work_dir, 'train.log')
        saved = read_checkpoint(last)['epoch']
        resumed = re.search(r'resum(ed|ing) from', log.read_text(), re.IGNORECASE) is not None
        ap = re.findall(r'coco/AP: ([0-9.]+)', output)
        figures = {'epoch': saved, 'resumed': resumed, 'coco_ap': float(ap[-1]) if ap else None}
        ok = saved == epochs and (resumed or epochs == 1)
        summary = f'last.pth at epoch {saved}' + (', resumed' if resumed else '') + \
            (f', coco/AP {ap[-1]}' if ap else '')
        return ('pass' if ok else 'FAIL'), summary, figures
    return judge


def stages_command(s: Settings) -> list[str]:
    z = s.sizes
    return [sys.executable, 'benchmarks/bench_pipeline.py', RECIPES['rle'][1], '--data-dir',
            str(s.jpegs.folder), '--ann-file', 'ann.json', '--n', str(z['stage_batch']), '--repeats',
            str(z['stage_repeats']), '--workers', '0', '--batch-size', str(z['stage_batch']), '--batched',
            '--device', s.device, '--json']


def judge_stages(s: Settings, rc: int, output: str) -> tuple[str, str, dict]:
    figures = _last_json(output)
    if rc != 0 or figures is None or 'batched' not in figures:
        return _failed(rc, output)
    b = figures['batched']
    ms = ', '.join(f'{k} {b["stage_ms"][k]:.1f}' for k in ('decode', 'canvas', 'warp', 'photometric',
                                                             'targets', 'total'))
    return 'pass', (f'ms per batch of {b["batch"]} on {b["device"]}: {ms}; decode alone '
                    f'{b["decode_images_per_s"]:.0f} img/s; {b["aten_ops"]} ATen ops per batch '
                    f'(+{b["aten_ops_per_added_sample"]} per added sample)'), figures


BENCH_VARIANTS = {  # id -> (label, arguments, in --quick for RLE)
    'synthetic-amp': ('synthetic batches, AMP', ['--synthetic', '--amp'], True),
    'jpeg-device': ('JPEGs, device input pipeline, AMP', ['--amp', '--input-pipeline', 'device'], True),
    'jpeg-cpu': ('JPEGs, per-sample input pipeline, AMP', ['--amp', '--input-pipeline', 'cpu'], False),
    'synthetic-fp32': ('synthetic batches, fp32', ['--synthetic'], False),
    'loader': ('sample images, train loader, AMP', ['--amp'], False),
}


def sample_train_data(s: Settings) -> list[str]:
    """The recipes' COCO + AIC train sets pointed at the sample images (12 + 3 people, COCO x400)."""
    data = f'{s.shared}/data/'
    return [f"train_dataloader.dataset.datasets.0.dataset.data_root='{data}'",
            "train_dataloader.dataset.datasets.0.dataset.ann_file='coco/test_coco.json'",
            "train_dataloader.dataset.datasets.0.dataset.data_prefix.img='coco/'",
            'train_dataloader.dataset.datasets.0.times=400',
            f"train_dataloader.dataset.datasets.1.data_root='{data}'",
            "train_dataloader.dataset.datasets.1.ann_file='aic/test_aic.json'",
            "train_dataloader.dataset.datasets.1.data_prefix.img='aic/'"]


def bench_command(recipe: str, variant: str) -> Callable[[Settings], list[str]]:
    def command(s: Settings) -> list[str]:
        z = s.sizes
        cmd = [sys.executable, 'benchmarks/bench_train.py', RECIPES[recipe][1], '--device', s.device,
               '--json', '--iters', str(z['iters']), '--warmup', str(z['warmup']),
               *BENCH_VARIANTS[variant][1]]
        if variant.startswith('jpeg'):
            cmd += ['--synthetic-jpeg', str(z['jpegs']), '--jpeg-dir', str(s.jpegs.folder)]
        options = sample_train_data(s) if variant == 'loader' else []
        if s.dry_run:
            cmd += ['--batch-size', '2']
            options += ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False']
        return cmd + (['--cfg-options', *options] if options else [])
    return command


def judge_bench(recipe: str, variant: str) -> Judge:
    def judge(s: Settings, rc: int, output: str) -> tuple[str, str, dict]:
        f = _last_json(output)
        if rc != 0 or f is None:
            return _failed(rc, output)
        memory = f'{f["peak_memory_mb"]} MB' if f['peak_memory_mb'] is not None else 'n/a'
        summary = (f'{f["images_per_s"]:.0f} img/s at batch {f["batch"]}, data wait '
                   f'{100 * f["data_wait_share"]:.0f} %, peak memory {memory}')
        if f.get('input_pipeline'):
            summary += f', {f["input_pipeline"]} pipeline {f["host_ms_per_sample"]} host ms/sample'
        if recipe == 'rle' and variant == 'jpeg-device' and not s.dry_run:
            met = (f['images_per_s'] >= TARGET['images_per_s']
                   and f['data_wait_share'] < TARGET['data_wait_share'])
            summary += f'; target 10,000 img/s with data wait < 10 %: {"met" if met else "MISSED"}'
        return 'pass', summary, f
    return judge


def plan() -> list[Check]:
    """Every row, in the order they run."""
    checks = [
        Check('preflight', 'preflight: imports, versions, device, smoke tests, sample data', 60, 8, True,
              preflight_command, judge_preflight),
        Check('cuda-tests', 'CUDA-marked tests (pytest -m cuda)', 100, 35, True,
              pytest_command('-m', 'cuda', '-k', 'not never_synchronises and not train_amp_then_resume'),
              judge_pytest, ('shared',)),
        Check('no-sync', 'no host sync in the step (set_sync_debug_mode error)', 60, 20, True,
              pytest_command('tests/test_train_step.py', '-m', 'cuda', '-k', 'never_synchronises'),
              judge_pytest),
        Check('train', 'train.py --amp, 1 epoch (sample config)', 60, 20, True, train_command(1),
              judge_train(1), ('shared',)),
        Check('resume', 'train.py --resume to epoch 2', 60, 18, False, train_command(2, '--resume'),
              judge_train(2), ('shared', 'train')),
        Check('stages', 'device pipeline per stage (RLE recipe, synthetic JPEGs)', 60, 20, True,
              stages_command, judge_stages, ('jpegs',)),
    ]
    for recipe, (label, _) in RECIPES.items():
        for variant, (text, _, quick) in BENCH_VARIANTS.items():
            needs = ('jpegs',) if variant.startswith('jpeg') else ('shared',) if variant == 'loader' else ()
            estimate = {'synthetic-amp': 12, 'synthetic-fp32': 12, 'jpeg-device': 18, 'jpeg-cpu': 22,
                        'loader': 15}[variant]
            checks.append(Check(f'bench-{recipe}-{variant}', f'bench_train {label}: {text}', 60, estimate,
                                quick and recipe == 'rle', bench_command(recipe, variant),
                                judge_bench(recipe, variant), needs))
    return checks


def dry_run_commands(checks: list[Check]) -> None:
    """In a dry run the no-sync row runs the meta-device step tests; the CUDA tests are only collected."""
    for check in checks:
        if check.id == 'cuda-tests':
            check.command = pytest_command('-m', 'cuda', '-k', 'not never_synchronises and not '
                                           'train_amp_then_resume', collect_only=True)
        elif check.id == 'no-sync':
            check.command = pytest_command('tests/test_train_step.py', '-k', 'meta')
