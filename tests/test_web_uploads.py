"""Uploads cannot take the web UI down: a decompression bomb is refused from its header,
before a pixel is decoded, and damaged files get a clear 4xx. Against the web process."""

from __future__ import annotations

import struct
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from edge import untrusted_images
from edge.untrusted_images import ImageRefused, read_header

import web_support as ws

GIB = 1024**3


def png(width: int, height: int) -> bytes:
    """A black 1-bit PNG of any size: 20000 x 20000 px is about 50 KB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    row = b"\x00" * (1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def encoded(ext: str, w: int = 80, h: int = 60) -> bytes:
    img = np.random.default_rng(1).integers(0, 255, (h, w, 3), np.uint8)
    return cv2.imencode(ext, img)[1].tobytes()


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp"])
def test_the_size_is_read_from_the_header_of_each_accepted_format(ext):
    h = read_header(encoded(ext, 80, 60))
    assert (h.width, h.height) == (80, 60)
    assert untrusted_images.decode(encoded(ext, 80, 60)).shape == (60, 80, 3)


def test_too_many_pixels_and_unknown_formats_are_refused_before_decoding():
    with pytest.raises(ImageRefused) as e:
        untrusted_images.check(png(20000, 20000))
    assert e.value.status == 413 and "20000 x 20000" in str(e.value)
    for data in (b"GIF89a" + b"\0" * 40, b"II*\0" + b"\0" * 40, b"RIFF....WEBPVP8 "):
        with pytest.raises(ImageRefused) as e:
            untrusted_images.check(data)
        assert e.value.status == 415


class PeakRss:
    """The web process's resident memory, sampled with psutil while a request runs."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        hwm = _vm_hwm(self.proc.pid)  # the kernel's own high-water mark, when it has one
        if hwm is not None:
            self.peak = max(self.peak, hwm)


def _vm_hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def test_a_decompression_bomb_is_refused_and_the_web_process_stays_small(tmp_path):
    bomb = png(20000, 20000)
    assert len(bomb) < 200_000
    appl = ws.appliance(tmp_path, imgs=[])
    ws.add_users(appl)
    with ws.web_process(appl) as web, ws.http(web) as t:
        t.headers["x-csrf-token"] = ws.login(t, "tom")
        with PeakRss(web.proc.pid) as rss:
            r = t.post("/api/tech/upload", files={"file": ("bomb.png", bomb, "image/png")})
            assert r.status_code == 413, r.text
            assert "20000 x 20000" in r.json()["detail"]
            assert t.get("/api/me").status_code == 200  # still answering
        assert rss.peak < GIB, f"web process peaked at {rss.peak / GIB:.2f} GiB"

        # damaged and foreign files: a clear 4xx each, never a 500
        good = encoded(".png", 400, 300)
        jpg = encoded(".jpg", 400, 300)
        bad = {
            "garbage": b"this is not an image at all" * 10,
            "PNG magic only": good[:8],
            "PNG cut after its header": good[:40],
            "PNG cut in half": good[: len(good) // 2],
            "JPEG cut after its markers": jpg[:200],
            "JPEG with no frame header": b"\xff\xd8\xff\xda\x00\x04\x00\x00" + b"\x00" * 64,
            "BMP header only": encoded(".bmp")[:30],
            "PNG saying 0 x 0": png(1, 1).replace(
                struct.pack(">II", 1, 1), struct.pack(">II", 0, 0), 1
            ),
        }
        for what, data in bad.items():
            r = t.post("/api/tech/upload", files={"file": ("x.png", data, "image/png")})
            assert 400 <= r.status_code < 500, f"{what}: {r.status_code} {r.text}"
            assert r.json()["detail"], what
        r = t.post("/api/tech/upload", files={"file": ("ok.png", good, "image/png")})
        assert r.status_code == 200 and (r.json()["width"], r.json()["height"]) == (400, 300)
