"""The simulated camera's exposure and gain: what a product's camera settings do to the image.

A real camera takes a product's exposure and gain at changeover (`edge.capture.genicam`);
the simulated one honours them as brightness, so a product set up with the wrong exposure
shows it in its images (and in its challenge units) as it would on the line. The scenes are
drawn for `NOMINAL_EXPOSURE_US` at 0 dB; brightness scales with exposure time and with the
gain in dB (20 dB: ten times). Values outside the simulated sensor's range are refused, as a
real camera refuses a value outside its bounds.
"""

from __future__ import annotations

NOMINAL_EXPOSURE_US = 10_000.0
EXPOSURE_BOUNDS_US = (20.0, 1_000_000.0)
GAIN_BOUNDS_DB = (0.0, 24.0)


def settings_problem(exposure_us: float | None, gain: float | None) -> str | None:
    """Why the simulated camera refuses these values (None: it takes them)."""
    lo, hi = EXPOSURE_BOUNDS_US
    if exposure_us is not None and not lo <= exposure_us <= hi:
        return f"exposure {exposure_us:g} us outside {lo:g}..{hi:g} us"
    lo, hi = GAIN_BOUNDS_DB
    if gain is not None and not lo <= gain <= hi:
        return f"gain {gain:g} outside {lo:g}..{hi:g}"
    return None


def brightness(exposure_us: float | None, gain: float | None) -> float:
    """The light level these settings give, relative to the nominal (1.0 when both None)."""
    factor = 1.0
    if exposure_us is not None:
        factor *= exposure_us / NOMINAL_EXPOSURE_US
    if gain is not None:
        factor *= 10.0 ** (gain / 20.0)
    return factor
