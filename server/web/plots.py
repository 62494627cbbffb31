"""Small SVG plots drawn on the server: they need no JavaScript and scale with the page.

Each function returns a complete ``<svg>`` string (markupsafe.Markup, safe to embed).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD = 320, 140, 28
INK, MUTED, ACCENT = "#1f2933", "#9aa5b1", "#2563eb"


def _frame(body: str, title: str, width: int = WIDTH, height: int = HEIGHT) -> Markup:
    return Markup(
        f'<svg class="plot" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _scale(value: float, low: float, high: float, start: float, end: float) -> float:
    if high == low:
        return (start + end) / 2
    return start + (value - low) / (high - low) * (end - start)


def _axes(x_labels: Sequence[str], y_low: float, y_high: float) -> str:
    bottom, right = HEIGHT - PAD, WIDTH - 8
    parts = [
        f'<line x1="{PAD}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="{MUTED}"/>',
        f'<line x1="{PAD}" y1="8" x2="{PAD}" y2="{bottom}" stroke="{MUTED}"/>',
        f'<text x="{PAD - 4}" y="12" text-anchor="end" class="tick">{y_high:.3g}</text>',
        f'<text x="{PAD - 4}" y="{bottom}" text-anchor="end" class="tick">{y_low:.3g}</text>',
    ]
    if x_labels:
        for i, label in enumerate(x_labels):
            x = _scale(i, 0, max(len(x_labels) - 1, 1), PAD, right)
            parts.append(
                f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" class="tick">'
                f"{escape(label)}</text>"
            )
    return "".join(parts)


def line_plot(
    xs: Sequence[float],
    ys: Sequence[float],
    title: str,
    x_ticks: Sequence[float] = (),
    baseline: float | None = None,
    y_range: tuple[float, float] | None = None,
) -> Markup:
    """A polyline of ys against xs, with an optional dashed baseline."""
    if not ys:
        return _frame("", title)
    values = [*ys, *([baseline] if baseline is not None else [])]
    low, high = y_range or (min(values), max(values))
    right, bottom = WIDTH - 8, HEIGHT - PAD
    points = " ".join(
        f"{_scale(x, xs[0], xs[-1], PAD, right):.1f},{_scale(y, low, high, bottom, 8):.1f}"
        for x, y in zip(xs, ys, strict=True)
    )
    body = [_axes([], low, high)]
    for tick in x_ticks:
        x = _scale(tick, xs[0], xs[-1], PAD, right)
        body.append(
            f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" class="tick">{tick:g}</text>'
        )
    if baseline is not None:
        y = _scale(baseline, low, high, bottom, 8)
        body.append(
            f'<line x1="{PAD}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="{MUTED}" '
            'stroke-dasharray="4 3"/>'
        )
    body.append(f'<polyline points="{points}" fill="none" stroke="{ACCENT}" stroke-width="1.8"/>')
    return _frame("".join(body), title)


def hue_plot(curve: Sequence[float], baseline: float, title: str) -> Markup:
    """The hue response curve over a strip of the hues themselves."""
    plot = str(line_plot(list(range(len(curve))), curve, title, (0, 90, 180, 270), baseline))
    right = WIDTH - 8
    step = (right - PAD) / 36
    strip = "".join(
        f'<rect x="{PAD + i * step:.1f}" y="{HEIGHT - PAD + 16}" width="{step + 0.5:.1f}" '
        f'height="6" fill="{_hue(i * 10)}"/>'
        for i in range(36)
    )
    return Markup(plot.replace("</svg>", f"{strip}</svg>"))


def _hue(degrees: float) -> str:
    r, g, b = colorsys.hls_to_rgb(degrees / 360, 0.5, 1.0)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def bar_plot(
    labels: Sequence[str],
    values: Sequence[float],
    title: str,
    top: float = 1.0,
    show_labels: bool = True,
) -> Markup:
    """Vertical bars on [0, top]; each bar's label and value are also in its tooltip."""
    if not values:
        return _frame("", title)
    top = max(top, *values)
    right, bottom = WIDTH - 8, HEIGHT - PAD
    slot = (right - PAD) / len(values)
    body = [_axes([], 0, top)]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        height = _scale(max(value, 0), 0, top, 0, bottom - 8)
        x = PAD + i * slot + slot * 0.15
        body.append(
            f'<rect x="{x:.1f}" y="{bottom - height:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{height:.1f}" fill="{ACCENT}">'
            f"<title>{escape(label)}: {value:.3g}</title></rect>"
        )
        if show_labels and len(values) <= 12:
            body.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{bottom + 14}" text-anchor="middle" '
                f'class="tick">{escape(label[:10])}</text>'
            )
    return _frame("".join(body), title)


def histogram(counts: Sequence[int], bins: Sequence[float], title: str) -> Markup:
    """A 10-bin index histogram on [0, 1]."""
    labels = [f"{bins[i]:.1f}–{bins[i + 1]:.1f}" for i in range(len(counts))]
    counts_ = [float(c) for c in counts]
    return bar_plot(labels, counts_, title, top=max([1, *counts]), show_labels=False)
