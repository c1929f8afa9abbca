"""Content-addressed image files.

An image is named by the SHA-256 of its pixels (a small shape header, then the raw
bytes), not of the PNG file: the name can be committed with the verdict at once
(hashing ~1 MB takes well under a millisecond), while the slower PNG encoding runs
after the commit on its own thread, so evidence images never delay the reject gate.
Re-encoding a file never changes its identity, and `verify` checks a file against it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.store.safe_files import is_regular, read_regular

log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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

    def write(self, sha256: str, image: np.ndarray) -> bool:
        """Encode and write the image once (atomically: temp file, then rename).

        True when this call created the file. A failed write (disk full, I/O error)
        raises and leaves no temporary file behind.
        """
        path = self.path_for(sha256)
        if is_regular(path, self.root):  # a planted link in its place is replaced below
            return False
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise ValueError("image could not be encoded as PNG")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}")
        try:
            with open(tmp, "wb") as f:
                f.write(buf.tobytes())
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return True

    def temp_files(self) -> list[Path]:
        """Temporary files of unfinished writes (a write in progress, or a crashed process)."""
        return sorted(self.root.glob(f"*/.*{TMP_SUFFIX}"))

    def sweep_temp(self) -> int:
        """Remove temporary files left by processes that no longer run (a crash mid-write)."""
        n = 0
        for tmp in self.temp_files():
            parts = tmp.name.split(".")
            pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
            if pid is not None and pid != os.getpid() and _alive(pid):
                continue
            with contextlib.suppress(OSError):
                tmp.unlink()
                n += 1
        return n

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

    The queue is bounded: if the disk cannot keep up, `submit` refuses the image (the
    caller keeps none for that item) rather than holding up the records. Each job
    carries a reference (`ref`) handed back to `on_done(done, failed)` with the jobs that
    were written and those that failed, in groups: the recorder links the item rows to
    their image only once the file exists.
    """

    def __init__(
        self,
        store: ImageStore,
        maxsize: int = 64,
        on_done: Callable[[list[tuple[str, Any, bool]], list[tuple[str, Any]]], None] | None = None,
        group: int = 32,
        max_wait_s: float = 0.5,
    ):
        self.store = store
        self.on_done = on_done
        self.group = group
        self.max_wait_s = max_wait_s
        self.queue: queue.Queue[tuple[str, np.ndarray, Any] | None] = queue.Queue(maxsize)
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="image-writer", daemon=True)
        self._thread.start()

    def submit(self, sha256: str, image: np.ndarray, ref: Any = None) -> bool:
        """Queue one image; False (nothing queued) when the writer is a full queue behind."""
        try:
            self.queue.put_nowait((sha256, image, ref))
        except queue.Full:
            return False
        return True

    def _run(self) -> None:
        done: list[tuple[str, Any, bool]] = []  # (sha, ref, created by this write)
        failed: list[tuple[str, Any]] = []
        since = time.monotonic()  # the oldest write not yet handed to on_done
        while True:
            job = self.queue.get()
            if not done and not failed:
                since = time.monotonic()
            if job is not None:
                sha, image, ref = job
                try:
                    done.append((sha, ref, self.store.write(sha, image)))
                except Exception as exc:
                    self.failed += 1
                    failed.append((sha, ref))
                    log.error("writing image %s failed: %s", sha, exc)
            if (done or failed) and (
                job is None
                or self.queue.empty()
                or len(done) + len(failed) >= self.group
                or time.monotonic() - since >= self.max_wait_s
            ):
                if self.on_done is not None:
                    try:
                        self.on_done(done, failed)
                    except Exception:
                        log.exception("handling %d written images", len(done))
                done, failed = [], []
            if job is None:
                return

    def close(self, timeout: float = 30.0) -> None:
        self.queue.put(None, timeout=timeout)
        self._thread.join(timeout)
