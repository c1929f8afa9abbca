"""Images from outside the line (uploads, files in the store): size first, then a bounded decode.

A PNG of 32000 x 32000 px compresses to ~125 KB and decodes to 3 GB. So the width and
height are read from the file's own header (PNG IHDR, JPEG SOF marker, BMP info header)
and checked against a pixel limit before any pixel is decoded; formats we cannot read a
header of are refused rather than handed to a decoder. Decoding holds a process-wide
semaphore, so concurrent uploads cannot multiply the bounded memory either.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

import cv2
import numpy as np

#: Decoded images are 8-bit BGR: 3 bytes a pixel. 4096 x 4096 (48 MiB) by default.
DEFAULT_MAX_PIXELS = 4096 * 4096
#: The most any path decodes (the config's upper bound; recorded camera frames are smaller).
LARGEST = 64 * 1024 * 1024
_decoding = threading.BoundedSemaphore(1)

_PNG = b"\x89PNG\r\n\x1a\n"
# start-of-frame markers carry the frame size; C4 (DHT), C8 (JPG), CC (DAC) do not
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageRefused(ValueError):
    """Not accepted; `status` is the HTTP answer (413 too large, 415 not a readable image)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(data: bytes) -> ImageHeader:
    """Format and size from the header alone; ImageRefused(415) for anything else."""
    if data.startswith(_PNG):
        return _png(data)
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg(data)
    if data.startswith(b"BM"):
        return _bmp(data)
    raise ImageRefused(415, "not a PNG, JPEG or BMP image")


def _damaged(fmt: str, what: str) -> ImageRefused:
    return ImageRefused(415, f"damaged {fmt} file: {what}")


def _png(data: bytes) -> ImageHeader:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise _damaged("PNG", "no IHDR header chunk")
    w, h = struct.unpack(">II", data[16:24])
    return _sized("PNG", w, h)


def _jpeg(data: bytes) -> ImageHeader:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise _damaged("JPEG", f"no marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # stand-alone markers
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2:
            raise _damaged("JPEG", f"segment length {length}")
        if marker in _SOF:
            if i + 9 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return _sized("JPEG", w, h)
        if marker in (0xDA, 0xD9):  # scan data or the end before any frame header
            raise _damaged("JPEG", "no frame header before the image data")
        i += 2 + length
    raise _damaged("JPEG", "truncated before the frame header")


def _bmp(data: bytes) -> ImageHeader:
    if len(data) < 26:
        raise _damaged("BMP", "truncated header")
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:  # BITMAPCOREHEADER
        w, h = struct.unpack("<HH", data[18:22])
    elif dib >= 40:
        w, h = struct.unpack("<ii", data[18:26])
        h = abs(h)  # negative: rows stored top-down
    else:
        raise _damaged("BMP", f"unknown info header of {dib} bytes")
    return _sized("BMP", w, h)


def _sized(fmt: str, w: int, h: int) -> ImageHeader:
    if w <= 0 or h <= 0:
        raise _damaged(fmt, f"size {w} x {h}")
    return ImageHeader(fmt, w, h)


def check(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """The header, when the image may be decoded; ImageRefused (413 / 415) otherwise."""
    hdr = read_header(data)
    if hdr.pixels > max_pixels:
        raise ImageRefused(
            413,
            f"image of {hdr.width} x {hdr.height} px is larger than the {max_pixels:,} px "
            "allowed (web.max_image_pixels)",
        )
    return hdr


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """8-bit BGR pixels of a checked image. Blocking (call it from a worker thread)."""
    hdr = check(data, max_pixels)
    with _decoding:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ImageRefused(415, f"the {hdr.format} file does not decode (truncated or damaged)")
    if img.shape[:2] not in ((hdr.height, hdr.width), (hdr.width, hdr.height)):  # EXIF turns
        raise ImageRefused(415, f"the {hdr.format} file's size does not match its header")
    return img
