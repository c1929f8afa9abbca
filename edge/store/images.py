"""Content-addressed image files: the name is the SHA-256 of the PNG bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np


class ImageStore:
    def __init__(self, root: str | Path, fsync: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync

    def encode(self, image: np.ndarray) -> tuple[str, bytes]:
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise ValueError("image could not be encoded as PNG")
        data = buf.tobytes()
        return hashlib.sha256(data).hexdigest(), data

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.png"

    def put(self, image: np.ndarray) -> tuple[str, str]:
        """Write the image (once) and return (sha256, path relative to the store root)."""
        sha, data = self.encode(image)
        path = self.path_for(sha)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            with open(tmp, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        return sha, str(path.relative_to(self.root))

    def get(self, sha256: str) -> bytes | None:
        if not all(c in "0123456789abcdef" for c in sha256) or len(sha256) != 64:
            return None
        p = self.path_for(sha256)
        return p.read_bytes() if p.exists() else None
