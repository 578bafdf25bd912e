"""A small line-chart renderer on OpenCV (no plotting library needed): panels of curves with axes,
ticks, grid, title and legend, tiled into one BGR image."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

# Distinct line colours (BGR), after the usual ten-colour plotting palette.
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
           (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]
FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT = (40, 40, 40)
GRID = (225, 225, 225)
FRAME = (150, 150, 150)
MARGIN = dict(left=62, right=12, top=26, bottom=34)


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


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    span = hi - lo
    if not math.isfinite(span) or span <= 0:
        return [lo]
    raw = span / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * 0.999)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-6:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def tick_label(value: float, step: float, magnitude: float) -> str:
    """``value`` printed with as many decimals as the tick ``step`` needs (scientific for tiny or huge
    ``magnitude``, e.g. learning rates)."""
    if magnitude != 0 and (magnitude < 1e-2 or magnitude >= 1e5):
        return f'{value:.1e}'.replace('e-0', 'e-').replace('e+0', 'e')
    decimals = next((d for d in range(9) if abs(round(step, d) - step) <= step * 1e-6), 9) if step > 0 else 0
    return f'{value:.{decimals}f}'


def _range(values: list[float], pad: float, flat: float | None = None) -> tuple[float, float]:
    """[min, max] of ``values`` widened by ``pad`` of the span; a zero span by ``flat`` (default 5 %)."""
    lo, hi = min(values), max(values)
    if hi - lo <= abs(hi) * 1e-9:
        delta = flat or abs(hi) * 0.05 or 0.5
        return lo - delta, hi + delta
    return lo - (hi - lo) * pad, hi + (hi - lo) * pad


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.38, color=TEXT,
          align: str = 'left') -> None:
    (w, h), _ = cv2.getTextSize(text, FONT, scale, 1)
    x, y = org
    if align == 'right':
        x -= w
    elif align == 'center':
        x -= w // 2
    cv2.putText(img, text, (x, y + h // 2), FONT, scale, color, 1, cv2.LINE_AA)


def _legend(img: np.ndarray, labels: list[tuple[int, str]], lines: list[np.ndarray],
            box: tuple[int, int, int, int]) -> None:
    """Draw the legend at the place of the plot ``box`` (x0, y0, x1, y1) that hides least of the curves
    ``lines`` ((N, 2) px each): a corner or the middle of a side."""
    x0, y0, x1, y1 = box
    w = max(cv2.getTextSize(label, FONT, 0.36, 1)[0][0] for _, label in labels) + 32
    h = 14 * len(labels) + 6
    samples = [a + (b - a) * t for pts in lines for a, b in zip(pts[:-1], pts[1:])
               for t in np.linspace(0, 1, 25)] + [p for pts in lines for p in pts]
    xs = [x1 - 4 - w, x0 + 4]
    ys = [y0 + 4, (y0 + y1 - h) // 2, y1 - 4 - h]
    spots = [(x, y) for y in ys for x in xs]

    def hidden(spot: tuple[int, int]) -> int:
        sx, sy = spot
        return sum(sx - 4 <= px <= sx + w + 4 and sy - 4 <= py <= sy + h + 4 for px, py in samples)

    lx, ly = min(spots, key=hidden)
    cv2.rectangle(img, (lx, ly), (lx + w, ly + h), (255, 255, 255), -1)
    cv2.rectangle(img, (lx, ly), (lx + w, ly + h), GRID, 1)
    for row, (i, label) in enumerate(labels):
        y = ly + 10 + 14 * row
        cv2.line(img, (lx + 5, y), (lx + 21, y), PALETTE[i % len(PALETTE)], 2, cv2.LINE_AA)
        _text(img, label, (lx + 26, y), 0.36)


def render_panel(panel: Panel, size: tuple[int, int] = (400, 280)) -> np.ndarray:
    """Draw one panel as a (H, W, 3) uint8 BGR image of ``size`` (w, h) px."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    x0, y0 = MARGIN['left'], MARGIN['top']
    x1, y1 = w - MARGIN['right'], h - MARGIN['bottom']
    _text(img, panel.title, (w // 2, 12), 0.48, align='center')
    curves = []
    for s in panel.series:
        pts = [(float(x), float(y)) for x, y in zip(s.xs, s.ys)
               if y is not None and math.isfinite(float(y)) and math.isfinite(float(x))]
        curves.append((s.label, pts))
    all_pts = [p for _, pts in curves for p in pts]
    cv2.rectangle(img, (x0, y0), (x1, y1), FRAME, 1)
    if not all_pts:
        _text(img, 'no data', ((x0 + x1) // 2, (y0 + y1) // 2), align='center', color=FRAME)
        return img
    xlo, xhi = _range([p[0] for p in all_pts], 0.0, flat=0.5)
    whole = all(p[0] == int(p[0]) for p in all_pts)  # whole epochs: integer x ticks
    ylo, yhi = _range([p[1] for p in all_pts], 0.06)

    def to_px(x: float, y: float) -> tuple[int, int]:
        return (round(x0 + (x - xlo) / (xhi - xlo) * (x1 - x0)),
                round(y1 - (y - ylo) / (yhi - ylo) * (y1 - y0)))

    for axis, (lo, hi) in (('x', (xlo, xhi)), ('y', (ylo, yhi))):
        ticks = nice_ticks(lo, hi, 6 if axis == 'x' else 5)
        if axis == 'x' and whole:
            ticks = [t for t in ticks if t == int(t)] or ticks
        step = ticks[1] - ticks[0] if len(ticks) > 1 else abs(lo) or 1.0
        magnitude = max(abs(lo), abs(hi))
        for t in ticks:
            label = str(int(t)) if axis == 'x' and whole and t == int(t) else tick_label(t, step, magnitude)
            if axis == 'x':
                px = to_px(t, ylo)[0]
                cv2.line(img, (px, y0 + 1), (px, y1 - 1), GRID, 1)
                _text(img, label, (px, y1 + 10), align='center')
            else:
                py = to_px(xlo, t)[1]
                cv2.line(img, (x0 + 1, py), (x1 - 1, py), GRID, 1)
                _text(img, label, (x0 - 5, py), align='right')
    cv2.rectangle(img, (x0, y0), (x1, y1), FRAME, 1)
    _text(img, panel.xlabel, ((x0 + x1) // 2, h - 9), 0.38, align='center')
    drawn = []
    for i, (_, pts) in enumerate(curves):
        color = PALETTE[i % len(PALETTE)]
        px = np.array([to_px(x, y) for x, y in pts], np.int32).reshape(-1, 2)
        if len(px) > 1:
            cv2.polylines(img, [px.reshape(-1, 1, 2)], False, color, 2, cv2.LINE_AA)
        if len(px) <= 40:
            for p in px:
                cv2.circle(img, (int(p[0]), int(p[1])), 3, color, -1, cv2.LINE_AA)
        drawn.append(px.astype(np.float64))
    labels = [(i, label) for i, (label, _) in enumerate(curves) if label]
    if labels:
        _legend(img, labels, drawn, (x0, y0, x1, y1))
    return img


def render_panels(panels: Sequence[Panel], cols: int | None = None,
                  panel_size: tuple[int, int] = (400, 280)) -> np.ndarray:
    """All ``panels`` tiled row by row (``cols`` per row, default up to 4) as one BGR uint8 image."""
    if not panels:
        raise ValueError('render_panels: nothing to draw (no panels)')
    cols = cols or min(len(panels), 4)
    rows = math.ceil(len(panels) / cols)
    w, h = panel_size
    out = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, panel in enumerate(panels):
        r, c = divmod(i, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = render_panel(panel, panel_size)
    return out

