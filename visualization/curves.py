"""Line charts with matplotlib (its Agg renderer; no display needed): a training run's ``results.png`` and
the charts of ``tools/plot_curves.py``, as PNG, PDF, SVG or JPEG.

A chart is a list of :class:`Panel` s (one set of axes each, tiled row by row), each holding
:class:`Series` (one curve each, in the colours of :data:`PALETTE`). At the default size a panel is
400 x 280 px in PNG/JPEG (4 x 2.8 inches at 100 dpi).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TABLEAU_COLORS
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from utils.output_files import atomic_output

PALETTE = list(TABLEAU_COLORS.values())  # '#1f77b4', '#ff7f0e', ...: curve i has colour i % 10
CHART_FORMATS = {'.png': 'png', '.pdf': 'pdf', '.svg': 'svg', '.jpg': 'jpg', '.jpeg': 'jpg'}
PANEL_INCHES = (4.0, 2.8)
DPI = 100
MARKERS_UP_TO = 40  # points drawn as dots too on curves with at most this many points


@dataclass
class Series:
    """One curve: ``ys`` over ``xs`` (NaN / None values are skipped); ``label`` for the legend."""
    label: str
    xs: Sequence[float]
    ys: Sequence[float | None]


@dataclass
class Panel:
    """One chart: a title, its curves and the x axis name."""
    title: str
    series: list[Series] = field(default_factory=list)
    xlabel: str = 'epoch'


def chart_format(path: str | os.PathLike) -> str:
    """The matplotlib format of a chart file by its extension (``'png'``, ``'pdf'``, ``'svg'``, ``'jpg'``).

    Raises:
        ValueError: another extension; the message names it and the supported ones.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in CHART_FORMATS:
        raise ValueError(f'{str(path)!r}: unsupported chart extension {suffix or "(none)"!r}; supported: '
                         f'{", ".join(CHART_FORMATS)}')
    return CHART_FORMATS[suffix]


def _points(series: Series) -> tuple[list[float], list[float]]:
    pairs = [(float(x), float(y)) for x, y in zip(series.xs, series.ys)
             if y is not None and math.isfinite(float(y)) and math.isfinite(float(x))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _draw_panel(ax: Any, panel: Panel) -> None:
    curves = [(s.label, *_points(s)) for s in panel.series]
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, color='#e1e1e1', linewidth=0.8)
    ax.set_axisbelow(True)
    if not any(xs for _, xs, _ in curves):
        ax.text(0.5, 0.5, 'no data', ha='center', va='center', color='#969696', transform=ax.transAxes)
        return
    for i, (label, xs, ys) in enumerate(curves):
        ax.plot(xs, ys, color=PALETTE[i % len(PALETTE)], linewidth=1.8, label=label or None,
                marker='o' if len(xs) <= MARKERS_UP_TO else None, markersize=3.5)
    if all(x == int(x) for _, xs, _ in curves for x in xs):  # whole epochs: integer x ticks
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis='y', style='sci', scilimits=(-3, 5), useOffset=False)  # lr: 1e-4 as 1e-4
    ax.yaxis.get_offset_text().set_fontsize(7)
    if any(label for label, _, _ in curves):
        ax.legend(loc='best', fontsize=7, frameon=True)


def plot_panels(panels: Sequence[Panel], path: str | os.PathLike, cols: int | None = None) -> None:
    """Draw ``panels`` row by row (``cols`` per row, default up to 4) into the chart file ``path``, its
    format by its extension (:func:`chart_format`), written atomically (``utils.output_files``).

    Raises:
        ValueError: no panels, or an unsupported extension.
    """
    fmt = chart_format(path)
    if not panels:
        raise ValueError('plot_panels: nothing to draw (no panels)')
    cols = cols or min(len(panels), 4)
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows), dpi=DPI, layout='constrained')
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        _draw_panel(ax, panel)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=DPI, facecolor='white')


def results_panels(rows: Sequence[Mapping[str, Any]]) -> list[Panel]:
    """The charts of ``results.png`` from results.csv rows: the total loss (and each loss term when there
    are several), the lr, and per metric prefix the AP and AR families (e.g. ``coco/AP``, ``coco/AP .5``)."""
    present = list(dict.fromkeys(k for r in rows for k in r))
    terms = [k for k in present if k.startswith('loss_')]
    keys = [k for k in ['loss'] + (terms if len(terms) > 1 else []) + ['lr'] if k in present]
    epochs = [r['epoch'] for r in rows]
    panels = [Panel(k, [Series('', epochs, [r.get(k) for r in rows])]) for k in keys]
    for family in ('AP', 'AR'):
        for prefix in dict.fromkeys(k.rsplit('/', 1)[0] for k in present if k.endswith(f'/{family}')):
            names = [k for k in present if k.startswith(f'{prefix}/{family}') and '(' not in k]
            panels.append(Panel(f'{prefix}/{family}', [
                Series(k.rsplit('/', 1)[1], epochs, [r.get(k) for r in rows]) for k in names]))
    return panels
