"""The dashboard's throughput chart: an SVG drawn on the server (no script library), an area
of rows per second by minute, with its scale and a tooltip (`<title>`) on each minute."""

import math
from datetime import UTC, datetime

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from long_task_shared import humanize

WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 24  # room for the scale's labels


def nice_ceiling(value: float) -> float:
    """The scale's top: 1, 2 or 5 times a power of ten, at least `value` (and at least 10)."""
    value = max(value, 10.0)
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def clock(minute: int) -> str:
    return timezone.localtime(datetime.fromtimestamp(minute * 60, tz=UTC)).strftime("%H:%M")


def throughput_svg(series: list[tuple[int, float]]) -> SafeString:
    """`series`: (minute since the epoch, rows per second), the oldest first."""
    top = nice_ceiling(max((rate for _, rate in series), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(series) - 1, 1)

    def x(i: int) -> float:
        return LEFT + i * step

    def y(rate: float) -> float:
        return TOP + plot_h * (1 - rate / top)

    line = " ".join(f"{x(i):.1f},{y(rate):.1f}" for i, (_, rate) in enumerate(series))
    area = f"{x(0):.1f},{y(0):.1f} {line} {x(len(series) - 1):.1f},{y(0):.1f}"
    grid = format_html_join(
        "",
        '<line class="lt-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
        '<text class="lt-axis" x="{}" y="{}" text-anchor="end">{}</text>',
        ((LEFT, WIDTH - RIGHT, y(v), y(v), LEFT - 6, y(v) + 4, humanize.count(v)) for v in (0, top / 2, top)),
    )
    ticks = format_html_join(
        "",
        '<text class="lt-axis" x="{}" y="{}" text-anchor="{}">{}</text>',
        (
            (x(i), HEIGHT - 6, "end" if i == len(series) - 1 else "middle" if i else "start", clock(minute))
            for i, (minute, _) in enumerate(series)
            if i % 15 == 0 or i == len(series) - 1
        ),
    )
    hover = format_html_join(
        "",
        '<rect class="lt-hover" x="{}" y="{}" width="{}" height="{}"><title>{} \u00b7 {} rows/s</title></rect>',
        (
            (max(x(i) - step / 2, LEFT), TOP, step, plot_h, clock(minute), humanize.count(rate))
            for i, (minute, rate) in enumerate(series)
        ),
    )
    empty = ""
    if not any(rate for _, rate in series):
        empty = format_html(
            '<text class="lt-empty" x="{}" y="{}" text-anchor="middle">no rows processed in the last hour</text>',
            LEFT + plot_w / 2,
            TOP + plot_h / 2,
        )
    return format_html(
        '<svg class="lt-chart" viewBox="0 0 {} {}" role="img" aria-label="rows per second, last hour">'
        '{}<polygon class="lt-area" points="{}"/><polyline class="lt-line" points="{}"/>{}{}{}'
        '<text class="lt-axis" x="{}" y="{}">rows/s</text></svg>',
        WIDTH,
        HEIGHT,
        grid,
        area,
        line,
        ticks,
        empty,
        hover,
        LEFT + 4,
        TOP + 10,
    )
