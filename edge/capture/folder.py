"""Replay image files as if they came from the line (offline checks, re-inspection, eval).

An exported simulator folder (`images/` + `truth.jsonl`) is replayed in truth order
with each truth dict attached. A file that cannot be decoded still yields a Frame,
with `image=None` and `error` set, so the pipeline rejects it (IMAGE_ERROR) instead of
silently skipping an item.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.capture.base import Source
from edge.config import FolderSource
from edge.domain import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def read_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    """(BGR uint8 image, None) or (None, why it could not be read)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        return None, f"cannot read {path.name}: {exc.strerror or exc}"
    if data.size == 0:
        return None, f"empty file {path.name}"
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        return None, f"cannot decode {path.name} as an image"
    return img, None


class FolderCapture(Source):
    """Image files in sorted order, or an `edge sim` export in truth order."""

    def __init__(self, cfg: FolderSource):
        super().__init__(cfg)
        root = Path(cfg.path)
        if not root.exists():
            raise FileNotFoundError(f"folder source: {root} does not exist")
        self.root = root
        self.paced = cfg.rate_per_min is not None
        self.entries = self._entries(root, cfg.truth)
        self.skipped: list[str] = []

    def _entries(
        self, root: Path, truth_path: Path | None
    ) -> list[tuple[Path, dict[str, Any] | None]]:
        if root.is_file():
            return [(root, None)]
        if truth_path is None and (root / "truth.jsonl").is_file() and (root / "images").is_dir():
            truth_path = root / "truth.jsonl"
        if truth_path is not None:
            return self._from_truth(root, Path(truth_path))
        files = sorted(p for p in root.iterdir() if p.is_file())
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        others = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if others:
            log.warning(
                "folder source %s: skipping %d non-image file(s), e.g. %s",
                root,
                len(others),
                others[0],
            )
        self.skipped = others
        return [(p, None) for p in images]

    @staticmethod
    def _from_truth(root: Path, truth_path: Path) -> list[tuple[Path, dict[str, Any] | None]]:
        base = truth_path.parent
        out = []
        for n, line in enumerate(truth_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                t = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{truth_path}:{n}: not JSON: {exc.msg}") from None
            rel = t.get("image") or f"images/{t['id']}.png"
            out.append((base / rel, t))
        return out

    def frames(self) -> Iterator[Frame]:
        rate = self.cfg.rate_per_min
        period = 60.0 / rate if rate else 0.0
        t0 = time.monotonic()
        n = 0
        while not self.stopped:
            for path, truth in self.entries:
                if self.stopped:
                    return
                if period:
                    delay = t0 + n * period - time.monotonic()
                    if delay > 0 and self.wait(delay):
                        return
                img, err = read_image(path)
                enc = int(truth["encoder"]) if truth and "encoder" in truth else n
                yield Frame(
                    image=img,
                    t_trigger=time.monotonic(),
                    encoder=enc,
                    source="folder",
                    name=(truth or {}).get("id") or path.stem,
                    truth=truth,
                    error=err,
                )
                n += 1
            if not self.cfg.loop or not self.entries:
                return

    def describe(self) -> dict[str, Any]:
        return {
            "type": "folder",
            "path": str(self.root),
            "images": len(self.entries),
            "skipped": len(self.skipped),
            "loop": self.cfg.loop,
        }
