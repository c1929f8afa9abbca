"""Charts drawn on the server as SVG: no script, no network, the same in a page and a PDF.

One small function per chart kind (control chart, Pareto, line, histogram, timeline); the caller passes plain numbers. Colours and sizes are
chosen for a touchscreen next to the line (thick lines, large labels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape


def control_chart_svg(
    xs: Sequence[int],
    values: Sequence[float],
    *,
    stat: Sequence[float] | None = None,
    centre: float,
    lcl: float,
    ucl: float,
    mark: int | None = None,
    since: int | None = None,
    title: str = "",
    width: int = 640,
    height: int = 240,
) -> str:
    """Values (dots), the charted statistic (line), centre and limits, the alert marked."""
    pad_l, pad_r, pad_t, pad_b = 56, 12, 26, 24
    pts = list(values) + list(stat or []) + [centre, lcl, ucl]
    lo, hi = min(pts), max(pts)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    span = hi - lo
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    x0, x1 = (min(xs), max(xs)) if xs else (0, 1)
    x1 = x1 if x1 > x0 else x0 + 1
    W, H = width - pad_l - pad_r, height - pad_t - pad_b

    def px(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * W

    def py(y: float) -> float:
        return pad_t + (hi - y) / (hi - lo) * H

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        f'<text x="{pad_l}" y="16" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for y, colour, dash, name in (
        (ucl, "#d00", "6 4", "UCL"),
        (centre, "#080", "", "CL"),
        (lcl, "#d00", "6 4", "LCL"),
    ):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<line x1="{pad_l}" x2="{pad_l + W}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
            f'stroke="{colour}" stroke-width="1.5"{d}/>'
            f'<text x="4" y="{py(y) + 4:.1f}" fill="{colour}">{name} {y:.4g}</text>'
        )
    # "since" below the plot, "alert" above it: the two are often close together
    for x, label, ly in ((since, "since", pad_t + H + 16), (mark, "alert", pad_t - 6)):
        if x is not None and x0 <= x <= x1:
            right = px(x) > pad_l + 0.75 * W  # keep the label inside the picture
            tx, anchor = (px(x) - 3, "end") if right else (px(x) + 3, "start")
            out.append(
                f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{pad_t}" y2="{pad_t + H}" '
                f'stroke="#f90" stroke-width="2"/><text x="{tx:.1f}" text-anchor="{anchor}" '
                f'y="{ly}" fill="#b60">{label} #{x}</text>'
            )
    out.append('<g fill="#777">')
    out += [
        f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="1.6"/>'
        for x, v in zip(xs, values, strict=True)
    ]
    out.append("</g>")
    if stat:
        path = " ".join(
            f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(v):.1f}"
            for i, (x, v) in enumerate(zip(xs, stat, strict=True))
        )
        out.append(f'<path d="{path}" fill="none" stroke="#06c" stroke-width="2.5"/>')
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------- the batch record's charts

_BAR = "#06c"
_BAD = "#d33"
_GRID = "#ccc"


def _frame(width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
        f'<text x="6" y="15" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]


def _empty(out: list[str], width: int, height: int, note: str) -> str:
    out.append(
        f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" '
        f'fill="#777">{escape(note)}</text></svg>'
    )
    return "".join(out)


def _nice(hi: float) -> float:
    """A round upper bound for an axis (1, 2, 5 times a power of ten)."""
    if hi <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(hi))
    for m in (1, 2, 5, 10):
        if hi <= m * mag:
            return m * mag
    return 10 * mag


def pareto_svg(
    labels: Sequence[str],
    counts: Sequence[int],
    *,
    title: str = "Rejects by reason",
    width: int = 640,
    height: int = 260,
) -> str:
    """Bars sorted by count (largest first) and the cumulative share as a line: the few
    reasons that make most rejects stand out, which is what QA acts on first."""
    out = _frame(width, height, title)
    pairs = sorted(zip(labels, counts, strict=True), key=lambda p: (-p[1], p[0]))
    total = sum(c for _l, c in pairs)
    if not pairs or total <= 0:
        return _empty(out, width, height, "no rejects")
    pad_l, pad_r, pad_t, pad_b = 64, 40, 30, 70
    W, H = width - pad_l - pad_r, height - pad_t - pad_b
    top = _nice(pairs[0][1])
    bw = W / len(pairs)
    out.append(
        f'<line x1="{pad_l}" x2="{pad_l + W}" y1="{pad_t + H}" y2="{pad_t + H}" stroke="#444"/>'
        f'<text x="{pad_l - 4}" y="{pad_t + 4}" text-anchor="end">{top:g}</text>'
        f'<text x="{pad_l - 4}" y="{pad_t + H}" text-anchor="end">0</text>'
        f'<text x="{pad_l + W + 4}" y="{pad_t + 4}">100%</text>'
    )
    cum, pts = 0, []
    for i, (label, n) in enumerate(pairs):
        h = n / top * H
        x = pad_l + i * bw
        cum += n
        pts.append((x + bw / 2, pad_t + H - cum / total * H))
        out.append(
            f'<rect class="bar" x="{x + bw * 0.1:.1f}" y="{pad_t + H - h:.1f}" '
            f'width="{bw * 0.8:.1f}" height="{h:.1f}" fill="{_BAD}"><title>{escape(label)}: {n}'
            f"</title></rect>"
            f'<text x="{x + bw / 2:.1f}" y="{pad_t + H - h - 3:.1f}" '
            f'text-anchor="middle">{n}</text>'
            f'<text x="{x + bw / 2:.1f}" y="{pad_t + H + 12}" text-anchor="end" '
            f'transform="rotate(-35 {x + bw / 2:.1f} {pad_t + H + 12})">{escape(label[:22])}</text>'
        )
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(pts))
    out.append(f'<path d="{path}" fill="none" stroke="{_BAR}" stroke-width="2"/>')
    out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{_BAR}"/>' for x, y in pts]
    out.append("</svg>")
    return "".join(out)


def line_svg(
    xs: Sequence[float],
    series: dict[str, Sequence[float | None]],
    *,
    title: str = "",
    x_labels: tuple[str, str] = ("", ""),
    y_range: tuple[float, float] | None = None,
    y_format: str = "{:g}",
    width: int = 640,
    height: int = 220,
    colours: Sequence[str] = ("#06c", "#d33", "#f90", "#080"),
    pad: tuple[int, int, int, int] = (48, 12, 26, 34),
) -> str:
    """One or more series over a shared x axis (None is a gap): yield and rate over a batch's
    time, a scan grade's trend, the HMI's last hour. `x_labels` name the two ends; `pad`
    (left, right, top, bottom) is smaller for the HMI's small charts."""
    out = _frame(width, height, title)
    vals = [v for s in series.values() for v in s if v is not None]
    if not xs or not vals:
        return _empty(out, width, height, "no data")
    pad_l, pad_r, pad_t, pad_b = pad
    W, H = width - pad_l - pad_r, height - pad_t - pad_b
    lo, hi = y_range if y_range else (min(0.0, min(vals)), _nice(max(vals)))
    hi = hi if hi > lo else lo + 1
    x0, x1 = min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1

    def px(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * W

    def py(y: float) -> float:
        return pad_t + (hi - min(max(y, lo), hi)) / (hi - lo) * H

    for y in (lo, (lo + hi) / 2, hi):
        out.append(
            f'<line x1="{pad_l}" x2="{pad_l + W}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
            f'stroke="{_GRID}"/><text x="{pad_l - 4}" y="{py(y) + 4:.1f}" '
            f'text-anchor="end">{escape(y_format.format(y))}</text>'
        )
    out.append(
        f'<text x="{pad_l}" y="{height - 6}">{escape(x_labels[0])}</text>'
        f'<text x="{pad_l + W}" y="{height - 6}" text-anchor="end">{escape(x_labels[1])}</text>'
    )
    legend_x, legend_y = width - pad_r, 13
    for k, (name, ys) in enumerate(series.items()):
        colour = colours[k % len(colours)]
        d, pen, last = [], "M", (0.0, 0.0)
        for x, y in zip(xs, ys, strict=True):
            if y is None:
                pen = "M"
                continue
            last = (px(x), py(y))
            d.append(f"{pen}{last[0]:.1f},{last[1]:.1f}")
            pen = "L"
        if len(d) == 1:  # one point: a dot, or it would not show
            out.append(f'<circle cx="{last[0]:.1f}" cy="{last[1]:.1f}" r="3" fill="{colour}"/>')
        out.append(
            f'<path class="series" d="{" ".join(d)}" fill="none" stroke="{colour}" '
            f'stroke-width="2.5"><title>{escape(name)}</title></path>'
        )
        # legend on the title's line, right to left, wrapping under it when full
        text_w = 6.5 * len(name) + 10
        if legend_x - text_w < 6 + 7.5 * len(title):
            legend_x, legend_y = width - pad_r, legend_y + 12
        out.append(
            f'<text x="{legend_x:.0f}" y="{legend_y}" text-anchor="end" fill="{colour}">'
            f"{escape(name)}</text>"
        )
        legend_x -= text_w
    out.append("</svg>")
    return "".join(out)


def histogram_svg(
    edges: Sequence[float],
    counts: Sequence[int],
    *,
    title: str = "",
    unit: str = "",
    mark: float | None = None,
    mark_label: str = "",
    width: int = 640,
    height: int = 220,
) -> str:
    """Counts per bin (`edges` has one more entry than `counts`); `mark` a limit such as the
    deadline, drawn as a line so the tail's distance to it shows."""
    out = _frame(width, height, title)
    if not counts or sum(counts) == 0:
        return _empty(out, width, height, "no data")
    pad_l, pad_r, pad_t, pad_b = 44, 12, 26, 34
    W, H = width - pad_l - pad_r, height - pad_t - pad_b
    # the axis reaches the mark when it is near; a far one is named at the edge instead
    near = mark is not None and mark <= edges[-1] + 1.5 * (edges[-1] - edges[0]) + 1e-9
    x0, x1 = edges[0], max(edges[-1], mark) if near and mark is not None else edges[-1]
    x1 = x1 if x1 > x0 else x0 + 1
    top = _nice(max(counts))

    def px(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * W

    out.append(
        f'<line x1="{pad_l}" x2="{pad_l + W}" y1="{pad_t + H}" y2="{pad_t + H}" stroke="#444"/>'
        f'<text x="{pad_l - 4}" y="{pad_t + 4}" text-anchor="end">{top:g}</text>'
        f'<text x="{pad_l - 4}" y="{pad_t + H}" text-anchor="end">0</text>'
    )
    for i, n in enumerate(counts):
        h = n / top * H
        out.append(
            f'<rect class="bar" x="{px(edges[i]):.1f}" y="{pad_t + H - h:.1f}" '
            f'width="{max(px(edges[i + 1]) - px(edges[i]) - 1, 0.5):.1f}" height="{h:.1f}" '
            f'fill="{_BAR}"><title>{edges[i]:.4g}-{edges[i + 1]:.4g} {escape(unit)}: {n}</title>'
            "</rect>"
        )
    for x, anchor in ((x0, "start"), ((x0 + x1) / 2, "middle"), (x1, "end")):
        out.append(
            f'<text x="{px(x):.1f}" y="{pad_t + H + 14}" text-anchor="{anchor}">'
            f"{x:.4g} {escape(unit)}</text>"
        )
    if mark is not None and not near:
        out.append(
            f'<text x="{pad_l + W}" y="{pad_t + 10}" text-anchor="end" fill="{_BAD}">'
            f"{escape(mark_label)} {mark:.4g} {escape(unit)} (off scale)</text>"
        )
    elif mark is not None:
        out.append(
            f'<line x1="{px(mark):.1f}" x2="{px(mark):.1f}" y1="{pad_t}" y2="{pad_t + H}" '
            f'stroke="{_BAD}" stroke-width="2" stroke-dasharray="5 3"/>'
            f'<text x="{px(mark) - 3:.1f}" y="{pad_t + 10}" text-anchor="end" fill="{_BAD}">'
            f"{escape(mark_label)}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def timeline_svg(
    spans: Sequence[tuple[str, float, float | None, str]],
    *,
    start: float,
    end: float,
    title: str = "Alarms",
    labels: tuple[str, str] = ("", ""),
    width: int = 640,
    row_height: int = 18,
) -> str:
    """One row per code; each (code, raised, cleared or None, severity) a bar from raise to
    clear (to `end` when still open), so QA sees when the line was in alarm and for how long."""
    codes = list(dict.fromkeys(s[0] for s in spans))
    height = 26 + max(len(codes), 1) * row_height + 22
    out = _frame(width, height, title)
    if not spans:
        return _empty(out, width, height, "no alarms")
    pad_l, pad_r = 150, 12
    W = width - pad_l - pad_r
    end = end if end > start else start + 1

    def px(t: float) -> float:
        return pad_l + (min(max(t, start), end) - start) / (end - start) * W

    colour = {"critical": "#b00", "major": "#e50", "minor": "#eb0", "maintenance": "#06c"}
    for r, code in enumerate(codes):
        y = 26 + r * row_height
        out.append(
            f'<text x="{pad_l - 6}" y="{y + row_height - 5}" text-anchor="end">'
            f"{escape(code[:24])}</text>"
            f'<line x1="{pad_l}" x2="{pad_l + W}" y1="{y + row_height - 1}" '
            f'y2="{y + row_height - 1}" stroke="{_GRID}"/>'
        )
    for code, t0, t1, sev in spans:
        y = 26 + codes.index(code) * row_height
        x0 = px(t0)
        x1 = max(px(t1 if t1 is not None else end), x0 + 3)  # a short alarm still shows
        out.append(
            f'<rect class="span" x="{x0:.1f}" y="{y + 3}" width="{x1 - x0:.1f}" '
            f'height="{row_height - 7}" fill="{colour.get(sev, "#777")}"><title>{escape(code)}'
            f"</title></rect>"
        )
    out.append(
        f'<text x="{pad_l}" y="{height - 6}">{escape(labels[0])}</text>'
        f'<text x="{pad_l + W}" y="{height - 6}" text-anchor="end">{escape(labels[1])}</text>'
        "</svg>"
    )
    return "".join(out)
