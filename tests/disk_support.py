"""Small real filesystems for the full-disk tests: a tmpfs mounted for the test, then filled."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


class SmallFs:
    """Mounts tmpfs filesystems of a given size; `close()` unmounts them all."""

    def __init__(self) -> None:
        self.mounted: list[Path] = []

    def mount(self, where: Path, size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root (the CI runs the suite as root)")
        where.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, f"mount tmpfs failed as root: {r.stderr.strip()}"
        self.mounted.append(where)
        return where

    def close(self) -> None:
        for d in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


def fill(folder: Path, name: str = "ballast") -> Path:
    """Write a file until the filesystem refuses more: the disk is then full."""
    path = folder / name
    chunk = b"\0" * 65536
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            os.write(fd, chunk)
    except OSError:
        pass
    try:
        while True:  # the last partial page
            os.write(fd, b"\0" * 512)
    except OSError:
        pass
    finally:
        os.close(fd)
    return path
