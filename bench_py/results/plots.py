"""Small deterministic SVG plots for the report: same data, same bytes.

Each plot is returned with the exact data it drew, so that the report can embed that data beside
the picture (tests compare it with the run's files, and readers can copy it). Hand-rolled rather
than matplotlib: matplotlib's SVG carries ids and floating-point paths that change between
versions, and the report must be byte-identical for identical files.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40
PALETTE = {"candidate": "#d95f02", "incumbent": "#1b9e77", "default": "#7570b3"}


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    color: str = ""
    step: bool = False
    markers: bool = False
    dashed: bool = False


@dataclass(frozen=True)
class Plot:
    plot_id: str
    title: str
    x_label: str
    y_label: str
    series: Sequence[Series]
    hlines: Sequence[tuple[float, str]] = ()
    bands: Sequence[tuple[float, float, str]] = ()
    note: str = ""
    y_min: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        """What was drawn, exactly: series points, reference lines and bands."""
        return {
            "id": self.plot_id,
            "x": self.x_label,
            "y": self.y_label,
            "series": {s.name: [list(p) for p in s.points] for s in self.series},
            "hlines": [{"y": y, "label": label} for y, label in self.hlines],
            "bands": [{"from": a, "to": b, "label": label} for a, b, label in self.bands],
            **self.extra,
        }


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        if value >= low - step * 1e-9:
            ticks.append(round(value, 10))
        value += step
    return ticks


def _label(value: float) -> str:
    if abs(value) >= 1e9:
        return f"{value / 1e9:.3g}G"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.4g}"


def render(plot: Plot) -> str:
    """The plot as an inline SVG element."""
    xs = [x for s in plot.series for x, _ in s.points] + [b for a, b, _ in plot.bands] + [a for a, _, _ in plot.bands]
    ys = [y for s in plot.series for _, y in s.points] + [y for y, _ in plot.hlines]
    title = html.escape(plot.title)
    if not xs or not ys:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{title}" viewBox="0 0 {WIDTH} 60" '
            f'width="{WIDTH}" height="60"><text x="{LEFT}" y="34" class="empty">no data recorded</text></svg>'
        )
    x0, x1 = min(xs), max(xs)
    y0 = min(ys) if plot.y_min is None else min(plot.y_min, min(ys))
    y1 = max(ys)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    y1 += (y1 - y0) * 0.05
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> str:
        return _fmt(LEFT + (x - x0) / (x1 - x0) * inner_w)

    def py(y: float) -> str:
        return _fmt(TOP + inner_h - (y - y0) / (y1 - y0) * inner_h)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{title}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" data-plot="{plot.plot_id}">'
    ]
    for a, b, label in plot.bands:
        out.append(
            f'<rect class="band" x="{px(a)}" y="{TOP}" width="{_fmt(float(px(b)) - float(px(a)))}" '
            f'height="{inner_h}"><title>{html.escape(label)}</title></rect>'
            f'<text class="band-label" x="{px(a)}" y="{TOP + 10}">{html.escape(label)}</text>'
        )
    for tick in _nice_ticks(y0, y1):
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py(tick)}" y2="{py(tick)}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{py(tick)}" text-anchor="end">{_label(tick)}</text>'
        )
    for tick in _nice_ticks(x0, x1):
        out.append(
            f'<text class="tick" x="{px(tick)}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{_label(tick)}</text>'
        )
    out.append(
        f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + inner_h}"/>'
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + inner_h}" y2="{TOP + inner_h}"/>'
        f'<text class="axis-label" x="{LEFT + inner_w / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle">'
        f"{html.escape(plot.x_label)}</text>"
        f'<text class="axis-label" x="12" y="{TOP + inner_h / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + inner_h / 2:.0f})">{html.escape(plot.y_label)}</text>'
    )
    for y, label in plot.hlines:
        out.append(
            f'<line class="ref" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py(y)}" y2="{py(y)}"/>'
            f'<text class="ref-label" x="{WIDTH - RIGHT - 4}" y="{_fmt(float(py(y)) - 3)}" text-anchor="end">'
            f"{html.escape(label)}</text>"
        )
    legend_x = LEFT + 8
    for index, series in enumerate(plot.series):
        color = series.color or PALETTE.get(series.name.split(" ")[0], PALETTE["default"])
        points: list[str] = []
        for i, (x, y) in enumerate(series.points):
            if series.step and i:
                points.append(f"{px(x)},{py(series.points[i - 1][1])}")
            points.append(f"{px(x)},{py(y)}")
        name = html.escape(series.name)
        dash = ' stroke-dasharray="5 3"' if series.dashed else ""
        out.append(
            f'<polyline class="series" data-series="{name}" data-n="{len(series.points)}" fill="none" '
            f'stroke="{color}" stroke-width="1.8"{dash} '
            f'points="{" ".join(points)}"/>'
        )
        if series.markers:
            out.extend(f'<circle cx="{px(x)}" cy="{py(y)}" r="2.5" fill="{color}"/>' for x, y in series.points)
        out.append(
            f'<rect x="{legend_x}" y="{TOP + 18 + 14 * index}" width="10" height="3" fill="{color}"/>'
            f'<text class="legend" x="{legend_x + 14}" y="{TOP + 22 + 14 * index}">{name}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def cdf(values: Sequence[float]) -> list[tuple[float, float]]:
    """Empirical CDF points (value, fraction at or below it), one per sample."""
    ordered = sorted(values)
    n = len(ordered)
    return [(v, (i + 1) / n) for i, v in enumerate(ordered)]
