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
    """A small index histogram drawn at the size a table cell shows it (150 × 70), so its axis
    values stay legible: the bins' range under the bars, the largest count beside them, and
    each bar's range and count on hover."""
    width, height, left, bottom = 150, 70, 22, 58
    top = max([1, *counts])
    slot = (width - 2 - left) / max(1, len(counts))
    body = [
        f'<line x1="{left}" y1="{bottom}" x2="{width - 2}" y2="{bottom}" stroke="{MUTED}"/>',
        f'<text x="{left - 3}" y="10" text-anchor="end" class="tick">{top}</text>',
        f'<text x="{left - 3}" y="{bottom}" text-anchor="end" class="tick">0</text>',
    ]
    for i, count in enumerate(counts):
        bar = _scale(count, 0, top, 0, bottom - 6)
        x = left + i * slot
        body.append(
            f'<rect x="{x + 0.5:.1f}" y="{bottom - bar:.1f}" width="{slot - 1:.1f}" '
            f'height="{bar:.1f}" fill="{ACCENT}"><title>{bins[i]:.1f}–{bins[i + 1]:.1f}: '
            f"{count} neuron{'' if count == 1 else 's'}</title></rect>"
        )
    for value, anchor in ((bins[0], "start"), ((bins[0] + bins[-1]) / 2, "middle"),
                          (bins[-1], "end")):  # fmt: skip
        x = _scale(value, bins[0], bins[-1], left, width - 2)
        body.append(
            f'<text x="{x:.1f}" y="{height - 2}" text-anchor="{anchor}" class="tick">'
            f"{value:g}</text>"
        )
    return _frame("".join(body), title, width, height)


# One colour per run when runs are drawn together (colour-blind-safe, after Okabe and Ito).
RUN_COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")


def overlaid_histograms(
    series: Sequence[tuple[str, Sequence[float]]], bins: Sequence[float], title: str
) -> Markup:
    """Histograms of several runs on the same bins, as outlined steps in each run's colour:
    each as the share of its own neurons, so runs of different sizes compare. Hovering a bin
    shows every run's count there."""
    shares = [[c / max(1, sum(counts)) for c in counts] for _label, counts in series]
    top = max([0.01, *(s for run in shares for s in run)])
    right, bottom = WIDTH - 8, HEIGHT - PAD
    body = [_axes([f"{bins[0]:g}", f"{bins[-1]:g}"], 0, top)]
    width = (right - PAD) / (len(bins) - 1)
    for i in range(len(bins) - 1):  # a hover target per bin, behind the lines
        counts = ", ".join(f"{label}: {int(c[i])}" for label, c in series)
        body.append(
            f'<rect x="{PAD + i * width:.1f}" y="8" width="{width:.1f}" height="{bottom - 8}" '
            f'fill="transparent"><title>{bins[i]:.2f}–{bins[i + 1]:.2f}: {escape(counts)}'
            "</title></rect>"
        )
    for (label, _counts), run_shares, colour in zip(series, shares, RUN_COLOURS, strict=False):
        points = [f"{PAD},{bottom}"]
        for i, share in enumerate(run_shares):
            y = _scale(share, 0, top, bottom, 8)
            points += [f"{PAD + i * width:.1f},{y:.1f}", f"{PAD + (i + 1) * width:.1f},{y:.1f}"]
        points.append(f"{right},{bottom}")
        body.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" '
            f'stroke-width="1.6" opacity="0.9"><title>{escape(label)}</title></polyline>'
        )
    return _frame("".join(body), title)


def depth_plot(
    series: Sequence[tuple[str, Sequence[float], Sequence[float | None]]], title: str
) -> Markup:
    """One line per run of a value (a median index) against relative depth 0–1, each point
    with its value on hover: the figure of how selectivity changes through a network."""
    values = [y for _label, _xs, ys in series for y in ys if y is not None]
    low, high = min([0.0, *values]), max([1.0, *values])
    right, bottom = WIDTH - 8, HEIGHT - PAD
    body = [_axes(["0", "relative depth", "1"], low, high)]
    for (label, xs, ys), colour in zip(series, RUN_COLOURS, strict=False):
        points = [
            (_scale(x, 0, 1, PAD, right), _scale(y, low, high, bottom, 8), x, y)
            for x, y in zip(xs, ys, strict=True)
            if y is not None
        ]
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py, _x, _y in points)
        body.append(
            f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.8">'
            f"<title>{escape(label)}</title></polyline>"
        )
        body += [
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}">'
            f"<title>{escape(label)} at depth {x:.2f}: {y:.3f}</title></circle>"
            for px, py, x, y in points
        ]
    return _frame("".join(body), title)
