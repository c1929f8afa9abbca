"""A PDF read back as a person sees it: through poppler, not the library that wrote it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

#: the charts' colours (`edge/web/charts.py`) as OpenCV reads them (BGR)
BAR_RED = (51, 51, 221)  # #d33: the Pareto's bars
LINE_BLUE = (204, 102, 0)  # #06c: a trend's line


def render(pdf: bytes, folder: Path) -> tuple[str, list[np.ndarray]]:
    """The PDF's text and its pages as images (50 dpi), written under `folder`."""
    if shutil.which("pdftoppm") is None:
        pytest.fail("poppler-utils (pdftoppm, pdftotext) is needed: scripts/test.sh installs it")
    f = folder / "record.pdf"
    f.write_bytes(pdf)
    text = subprocess.run(
        ["pdftotext", "-layout", str(f), "-"], capture_output=True, text=True, check=True
    ).stdout
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(f), str(folder / "page")], check=True)
    pages = [cv2.imread(str(p)) for p in sorted(folder.glob("page-*.png"))]
    return text, pages


def coloured(page: np.ndarray, bgr: tuple[int, int, int], tol: int = 40) -> int:
    """How many pixels of `page` are within `tol` of the colour `bgr`."""
    return int(np.all(np.abs(page.astype(int) - bgr) <= tol, axis=2).sum())
