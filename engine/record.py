"""The machine-readable record of a training run, in its work dir, and reading it back.

- ``results.csv``: one row per epoch (``epoch``, ``lr``, the epoch's mean losses, the validation
  metrics when it validated, ``time`` in seconds), rewritten atomically after every epoch; full precision.
- ``scalars.json``: MMPose 1.3.2's ``vis_data/scalars.json`` (mmengine ``LocalVisBackend``) format, one
  JSON object per line: per logged training iteration ``{lr, data_time, loss, <loss terms>, ..., time,
  epoch, iter, [memory], step}`` (``iter`` = ``step`` = global iteration, 1-based) and per validation
  ``{<metrics>, time, step}`` (``step`` = epoch). MMPose's ``analyze_logs.py`` reads it.

On resume both keep what belongs to the finished epochs and continue after them. :func:`run_series` reads
one key of a run back (``tools/plot_curves.py``); :func:`summary_table` is the per-epoch table for people.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from utils.errors import DataError
from utils.output_files import write_text_atomic

RESULTS_CSV = 'results.csv'
SCALARS_JSON = 'scalars.json'


def read_results(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a ``results.csv`` (``[]`` when it does not exist): column -> float (``epoch`` int);
    empty cells (an epoch without validation) are left out of the row."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline='', encoding='utf-8') as f:
        for line_no, raw in enumerate(csv.DictReader(f), start=2):
            try:
                row = {k: float(v) for k, v in raw.items() if k and v not in ('', None)}
                row['epoch'] = int(row['epoch'])
            except (KeyError, ValueError) as err:
                raise DataError(f'{path}:{line_no}: expected numbers and an "epoch" column ({err})') \
                    from None
            rows.append(row)
    return rows


def read_scalars(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON objects of a ``scalars.json`` (one per line; ``[]`` when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    with open(path, encoding='utf-8') as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f'{path}:{line_no}: not a JSON object ({err})') from None
    return records


def is_val_record(record: Mapping[str, Any]) -> bool:
    """A ``scalars.json`` validation line (its ``step`` is the epoch; training lines carry ``epoch``)."""
    return 'epoch' not in record


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    columns = ['epoch'] + [c for c in columns if c not in ('epoch', 'time')] + ['time']
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(float(v)) if k != 'epoch' else int(v) for k, v in row.items()})
    return buf.getvalue()


class RunRecord:
    """Writes ``results.csv`` and ``scalars.json`` in ``work_dir`` (main process only).

    Args:
        work_dir: the run's folder.
        resume_epoch: epochs already finished when resuming (rows / lines of later epochs, written
            before an interruption, are dropped); 0 for a new run, which replaces earlier files.
    """

    def __init__(self, work_dir: str | os.PathLike, resume_epoch: int = 0) -> None:
        self.csv_path = Path(work_dir) / RESULTS_CSV
        self.json_path = Path(work_dir) / SCALARS_JSON
        self.rows: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []
        if resume_epoch > 0:
            self.rows = [r for r in read_results(self.csv_path) if r['epoch'] <= resume_epoch]
            kept = [r for r in read_scalars(self.json_path)
                    if (r.get('step', 0) if is_val_record(r) else r['epoch']) <= resume_epoch]
        write_text_atomic(self.json_path, ''.join(json.dumps(r) + '\n' for r in kept))
        self._write_csv()

    def _append_json(self, record: Mapping[str, Any]) -> None:
        with open(self.json_path, 'a', encoding='utf-8') as f:
            f.write(json.dumps(record) + '\n')

    def log_train(self, scalars: Mapping[str, float], epoch: int, it: int, memory: int | None = None) -> None:
        """One logged training iteration: ``scalars`` (lr, data_time, loss, ..., time), 1-based ``epoch``,
        1-based global iteration ``it``, max GPU memory in MB when on CUDA."""
        record: dict[str, Any] = {**scalars, 'epoch': epoch, 'iter': it}
        if memory is not None:
            record['memory'] = memory
        record['step'] = it
        self._append_json(record)

    def log_val(self, metrics: Mapping[str, float], epoch: int, seconds_per_iter: float) -> None:
        """One validation after 1-based ``epoch``: its metrics and mean seconds per val iteration."""
        self._append_json({**metrics, 'time': seconds_per_iter, 'step': epoch})

    def add_epoch(self, row: Mapping[str, Any]) -> None:
        """Append one epoch's row (``epoch`` 1-based, values as numbers) and rewrite results.csv."""
        self.rows.append(dict(row))
        self._write_csv()

    def _write_csv(self) -> None:
        write_text_atomic(self.csv_path, _csv_text(self.rows) if self.rows else 'epoch,time\n')


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f'{value:.3e}'
    return f'{value:.4f}'


def summary_table(rows: Iterable[Mapping[str, Any]], best_key: str | None = None,
                  rule: str = 'greater', metric_keys: Sequence[str] | None = None) -> str:
    """Per-epoch table for people: epoch, loss, lr, the validation metrics ``metric_keys`` (default:
    ``best_key`` and the ``*/AR`` columns), time; numbers rounded, the best epoch by ``best_key``
    under ``rule`` ('greater' / 'less') marked with ``*``."""
    rows = list(rows)
    if not rows:
        return ''
    present = [k for r in rows for k in r]
    if metric_keys is None:
        metric_keys = [k for k in dict.fromkeys(present) if k == best_key or k.endswith('/AR')]
    metric_keys = [k for k in metric_keys if k in present]
    columns = ['epoch'] + [k for k in ('loss', 'lr') if k in present] + list(metric_keys) + ['time']
    scored = [r for r in rows if best_key in r]
    best = None
    if scored:
        pick = max if rule == 'greater' else min
        best = pick(scored, key=lambda r: r[best_key])['epoch']
    cells = [columns]
    for r in rows:
        mark = '*' if r['epoch'] == best else ' '
        cells.append([f"{r['epoch']}{mark}"] + [_fmt(r.get(k)) for k in columns[1:-1]]
                     + [f"{r.get('time', 0.0):.1f}s"])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ['  '.join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    if best is not None:
        lines.append(f'* best {best_key}: epoch {best}')
    return '\n'.join(lines)


def _epoch_of_iteration(records: list[dict[str, Any]]) -> dict[int, float]:
    """Global iteration -> fractional epoch, from scalars.json training lines (an epoch's last logged
    iteration is its end; the first recorded epoch is assumed as long as the average)."""
    ends: dict[int, int] = {}
    for r in records:
        ends[int(r['epoch'])] = max(ends.get(int(r['epoch']), 0), int(r.get('iter', r['step'])))
    out = {}
    for r in records:
        epoch, it = int(r['epoch']), int(r.get('iter', r['step']))
        start = ends.get(epoch - 1, ends[epoch] * (epoch - 1) / epoch)
        out[it] = epoch - 1 + (it - start) / max(ends[epoch] - start, 1)
    return out


def run_series(run: str | os.PathLike, key: str) -> tuple[list[float], list[float]]:
    """``(epochs, values)`` of ``key`` in a run: a work dir (its results.csv, else its scalars.json), or
    one results.csv / scalars.json file (MMPose's ``vis_data/scalars.json`` too). Per epoch from
    results.csv; from scalars.json per logged iteration (x = fractional epoch) or per validation."""
    path = Path(run)
    csv_path = path if path.suffix == '.csv' else path / RESULTS_CSV
    json_path = path if path.suffix == '.json' else path / SCALARS_JSON
    if not csv_path.is_file() and not json_path.is_file():
        raise FileNotFoundError(f'{run}: neither {RESULTS_CSV} nor {SCALARS_JSON} found')
    rows = read_results(csv_path) if path.suffix != '.json' else []
    if any(key in r for r in rows):
        pairs = [(float(r['epoch']), r[key]) for r in rows if key in r]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    records = read_scalars(json_path) if path.suffix != '.csv' else []
    val = [r for r in records if is_val_record(r) and key in r]
    if val:
        return [float(r['step']) for r in val], [float(r[key]) for r in val]
    train = [r for r in records if not is_val_record(r)]
    if any(key in r for r in train):
        epochs = _epoch_of_iteration(train)
        pairs = [(epochs[int(r.get('iter', r['step']))], float(r[key])) for r in train if key in r]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    known = sorted({k for r in rows + records for k in r} - {'epoch', 'iter', 'step'})
    raise DataError(f'{run}: no {key!r} in {RESULTS_CSV} or {SCALARS_JSON} (available: {", ".join(known)})')
