"""Charts drawn on the server as SVG for the back office (no script, nothing fetched): vertical bars over time and
horizontal bars for distributions and funnels. Readable without colour: each series has its own fill pattern
(solid, hatched, dotted) named in a legend, every bar carries its number in a `<title>` and a `data-value`
attribute, and the page puts a table of the same numbers beside each chart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 240
MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 48, 44, 28
INK = "#1f2937"
PATTERNS = ("solid", "hatch", "dots")
DEFS = (
    '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
    f'<rect width="6" height="6" fill="#ffffff"/><line x1="0" y1="0" x2="0" y2="6" stroke="{INK}" stroke-width="3"/>'
    '</pattern><pattern id="dots" width="6" height="6" patternUnits="userSpaceOnUse">'
    f'<rect width="6" height="6" fill="#ffffff"/><circle cx="3" cy="3" r="1.6" fill="{INK}"/></pattern></defs>'
)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int | float]


def _fill(index: int) -> str:
    pattern = PATTERNS[index % len(PATTERNS)]
    return INK if pattern == "solid" else f"url(#{pattern})"


def _open(title: str, height: int) -> list[str]:
    label = escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{label}" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">',
        f"<title>{label}</title>",
        DEFS,
    ]


def _legend(series: Sequence[Series], y: int) -> list[str]:
    parts, x = [], MARGIN_LEFT
    for index, one in enumerate(series):
        parts.append(f'<rect x="{x}" y="{y - 9}" width="12" height="12" fill="{_fill(index)}" stroke="{INK}"/>')
        parts.append(f'<text x="{x + 16}" y="{y + 1}">{escape(one.name)}</text>')
        x += 24 + 7 * len(one.name)
    return parts


def bars_over_time(title: str, labels: Sequence[str], series: Sequence[Series]) -> str:
    """Grouped vertical bars, one group per bucket (`labels`, ISO dates), one bar per series."""
    top = max([1, *(value for one in series for value in one.values)])
    plot_w, plot_h = WIDTH - MARGIN_LEFT - 8, HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    group = plot_w / max(1, len(labels))
    bar = max(1.0, (group - 2) / max(1, len(series)))
    parts = _open(title, HEIGHT)
    parts += _legend(series, 14)
    base = MARGIN_TOP + plot_h
    parts.append(f'<line x1="{MARGIN_LEFT}" y1="{base}" x2="{WIDTH - 8}" y2="{base}" stroke="{INK}"/>')
    parts.append(f'<text x="{MARGIN_LEFT - 6}" y="{MARGIN_TOP + 4}" text-anchor="end">{_number(top)}</text>')
    parts.append(f'<text x="{MARGIN_LEFT - 6}" y="{base}" text-anchor="end">0</text>')
    every = max(1, len(labels) // 8)  # a date under every few groups
    for i, label in enumerate(labels):
        x0 = MARGIN_LEFT + i * group + 1
        for j, one in enumerate(series):
            value = one.values[i]
            h = plot_h * value / top
            parts.append(
                f'<rect class="bar" data-series="{escape(one.name)}" data-label="{escape(label)}" '
                f'data-value="{_number(value)}" x="{x0 + j * bar:.1f}" y="{base - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{_fill(j)}" stroke="{INK}" stroke-width="0.5">'
                f"<title>{escape(one.name)} {escape(label)}: {_number(value)}</title></rect>"
            )
        if i % every == 0:
            parts.append(f'<text x="{x0:.1f}" y="{base + 14}" font-size="9">{escape(label[5:])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def horizontal_bars(title: str, rows: Sequence[tuple[str, int | float]], *, unit: str = "") -> str:
    """One labelled horizontal bar per row (a distribution, a funnel), its number written after it."""
    height = MARGIN_TOP + 26 * max(1, len(rows)) + 8
    top = max([1, *(value for _, value in rows)])
    left, room = 150, WIDTH - 150 - 70
    parts = _open(title, height)
    for i, (label, value) in enumerate(rows):
        y = MARGIN_TOP + i * 26
        w = room * value / top
        text = f"{_number(value)}{unit}"
        parts.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{escape(label)}</text>')
        parts.append(
            f'<rect class="bar" data-label="{escape(label)}" data-value="{_number(value)}" x="{left}" y="{y}" '
            f'width="{w:.1f}" height="18" fill="{_fill(i % 2)}" stroke="{INK}" stroke-width="0.5">'
            f"<title>{escape(label)}: {text}</title></rect>"
        )
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 14}">{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _number(value: int | float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
