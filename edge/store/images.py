"""Content-addressed image files.

An image is named by the SHA-256 of its pixels (a small shape header, then the raw
bytes), not of the PNG file: the name can be committed with the verdict at once
(hashing ~1 MB takes well under a millisecond), while the slower PNG encoding runs
after the commit on its own thread, so evidence images never delay the reject gate.
Re-encoding a file never changes its identity, and `verify` checks a file against it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
from pathlib import Path

import cv2
import numpy as np

from edge.store.safe_files import is_regular, read_regular

log = logging.getLogger(__name__)


def image_id(image: np.ndarray) -> str:
    img = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{img.dtype.str}:{'x'.join(map(str, img.shape))}:".encode())
    h.update(memoryview(img).cast("B"))
    return h.hexdigest()


class ImageStore:
    def __init__(self, root: str | Path, fsync: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.png"

    def relpath(self, sha256: str) -> str:
        return str(self.path_for(sha256).relative_to(self.root))

    def write(self, sha256: str, image: np.ndarray) -> None:
        """Encode and write the image once (atomically: temp file, then rename)."""
        path = self.path_for(sha256)
        if is_regular(path, self.root):  # a planted link in its place is replaced below
            return
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise ValueError("image could not be encoded as PNG")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as f:
            f.write(buf.tobytes())
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)

    def put(self, image: np.ndarray) -> tuple[str, str]:
        """Write now and return (sha256, path relative to the store root)."""
        sha = image_id(image)
        self.write(sha, image)
        return sha, self.relpath(sha)

    def get(self, sha256: str) -> bytes | None:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            return None
        return read_regular(self.path_for(sha256), self.root)  # never a planted link

    def verify(self, sha256: str) -> bool:
        data = self.get(sha256)
        if data is None:
            return False
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        return img is not None and image_id(img) == sha256


class ImageWriter:
    """Writes committed images in the background; `close()` drains what is queued.

    The queue is bounded: if the disk cannot keep up, the recorder waits (verdicts wait
    with it and the gate rejects by default) rather than images being dropped.
    """

    def __init__(self, store: ImageStore, maxsize: int = 256):
        self.store = store
        self.queue: queue.Queue[tuple[str, np.ndarray] | None] = queue.Queue(maxsize)
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="image-writer", daemon=True)
        self._thread.start()

    def submit(self, sha256: str, image: np.ndarray) -> None:
        self.queue.put((sha256, image))

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            try:
                self.store.write(*job)
            except Exception as exc:
                self.failed += 1
                log.error("writing image %s failed: %s", job[0], exc)

    def close(self, timeout: float = 30.0) -> None:
        self.queue.put(None)
        self._thread.join(timeout)
