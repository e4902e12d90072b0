"""The Live Ops chart: records finished per minute of each running job, as an SVG written
here (axes, ticks, labels, one line per job, a legend); well-formed XML on its own."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from cxrun.api.console.html import Safe, esc

if TYPE_CHECKING:
    from cxrun.ops.console import Throughput

WIDTH, HEIGHT = 720, 274
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 74
COLOURS = 6  # series classes s0..s5 in console.css


def svg(chart: Throughput) -> Safe:
    """The chart for `chart`'s series (a note in it when no running job finished records)."""
    top = _ceiling(max((max(line) for line in chart.series.values()), default=0))
    parts = [*_y_axis(top), *_x_axis(chart)]
    for number, (name, counts) in enumerate(sorted(chart.series.items())):
        parts.append(_line(number, counts, top, chart.minutes))
        if number < COLOURS:
            parts.append(_legend(number, name))
    if not chart.series:
        parts.append(_text(LEFT + _plot_w() / 2, TOP + _plot_h() / 2, _EMPTY, "middle", "empty"))
    return Safe(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-labelledby="chart-title">'
        f'<title id="chart-title">Records finished per minute, running jobs, last '
        f"{chart.minutes} minutes</title>" + "".join(parts) + "</svg>"
    )


_EMPTY = "no running job finished records in this window"


def _plot_w() -> float:
    return WIDTH - LEFT - RIGHT


def _plot_h() -> float:
    return HEIGHT - TOP - BOTTOM


def _ceiling(peak: int) -> int:
    """The y axis's top: a round number at or above `peak` (at least 4)."""
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if peak <= step * 4:
            return step * 4
    return -(-peak // 4) * 4


def _y(count: float, top: int) -> float:
    return TOP + _plot_h() * (1 - count / top)


def _x(slot: int, minutes: int) -> float:
    return LEFT + _plot_w() * slot / max(minutes - 1, 1)


def _y_axis(top: int) -> list[str]:
    parts = [_path(f"M{LEFT} {TOP} V{TOP + _plot_h()} H{WIDTH - RIGHT}", "axis")]
    for tick in range(5):
        count = top * tick // 4
        y = _y(count, top)
        parts.append(_path(f"M{LEFT} {y:.1f} H{WIDTH - RIGHT}", "grid"))
        parts.append(_text(LEFT - 6, y + 4, str(count), "end", "tick"))
    label = f'<text class="label" transform="translate(12 {TOP + _plot_h() / 2}) rotate(-90)"'
    parts.append(f'{label} text-anchor="middle">records / min</text>')
    return parts


def _x_axis(chart: Throughput) -> list[str]:
    base = TOP + _plot_h()
    parts = []
    for slot in range(0, chart.minutes, 5):
        x = _x(slot, chart.minutes)
        moment = chart.start + timedelta(minutes=slot)
        parts.append(_path(f"M{x:.1f} {base} v4", "axis"))
        parts.append(_text(x, base + 16, moment.strftime("%H:%M"), "middle", "tick"))
    parts.append(_text(LEFT + _plot_w() / 2, base + 32, "minute (UTC)", "middle", "label"))
    return parts


def _line(number: int, counts: list[int], top: int, minutes: int) -> str:
    points = " ".join(f"{_x(i, minutes):.1f},{_y(c, top):.1f}" for i, c in enumerate(counts))
    return f'<polyline class="series s{number % COLOURS}" fill="none" points="{points}"/>'


def _legend(number: int, name: str) -> str:
    x = LEFT + (number % 3) * 220
    y = HEIGHT - 18 + (number // 3) * 14  # rows of three (the sixth job onwards is left out)
    swatch = f'<rect class="swatch s{number % COLOURS}" x="{x}" y="{y - 9}" width="12" height="4"/>'
    return swatch + _text(x + 16, y - 4, name, "start", "legend")


def _path(d: str, kind: str) -> str:
    return f'<path class="{kind}" d="{d}"/>'


def _text(x: float, y: float, text: str, anchor: str, kind: str) -> str:
    return f'<text class="{kind}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{esc(text)}</text>'
