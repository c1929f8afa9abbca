"""Charts drawn on the server as SVG: no script, no network, the same in a page and a PDF.

One small function per chart kind; the caller passes plain numbers. Colours and sizes are
chosen for a touchscreen next to the line (thick lines, large labels).
"""

from __future__ import annotations

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
