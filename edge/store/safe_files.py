"""Reading files of the state directory without following what someone planted there.

The web UI serves and copies files from the state directory (evidence images, job logs,
dataset manifests). A symbolic link placed there (`images/ab/<sha>.png -> /etc/shadow`),
or a FIFO or device node, must not turn into a read of something else: only regular files
are read, opened with O_NOFOLLOW, and no directory between the store's root and the file
may be a link either. A refusal is logged and reads as "not there".
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def _linked_parent(path: Path, root: Path | None) -> Path | None:
    if root is None:
        return None
    p = path.parent
    while p != root and root in p.parents:
        if p.is_symlink():
            return p
        p = p.parent
    return None


def is_regular(path: Path, root: Path | None = None) -> bool:
    """A regular file, not a link to one (and no linked directory below `root`)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and _linked_parent(path, root) is None


def read_regular(path: Path, root: Path | None = None, tail: int | None = None) -> bytes | None:
    """The file's bytes (the last `tail` of them), or None when absent or not a regular file."""
    path = Path(path)
    linked = _linked_parent(path, root)
    if linked is not None:
        log.warning("refused to read %s: %s is a symbolic link", path, linked)
        return None
    try:
        fd = os.open(path, _FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: the file itself is a symbolic link
        log.warning("refused to read %s: %s", path, exc.strerror or exc)
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            log.warning("refused to read %s: not a regular file", path)
            return None
        if tail is not None:
            f.seek(max(0, st.st_size - tail))
        return f.read()
