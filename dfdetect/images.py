"""Image dimensions from the first bytes of an encoded image, without decoding it.

A 1.5 MB PNG can declare 16000 x 16000 pixels: decoded, a gigabyte of memory. Whoever decodes
untrusted images (the model server's bytes signature, the web page, the client) reads the size
here first and refuses what is over its pixel limit. JPEG, PNG, GIF, BMP and WebP; None for
anything else (the decoder then refuses it or it is not an image at all).
"""

from __future__ import annotations

import struct

DEFAULT_MAX_PIXELS = 40_000_000  # 40 megapixels: a 7952 x 5304 photograph


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) declared by an encoded image's header, or None if it is not one we read."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        return _webp(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg(data)
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


# Start-of-frame markers (baseline, progressive, lossless, ...): not DHT (C4), JPG (C8), DAC (CC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _SOF:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def too_many_pixels(data: bytes, max_pixels: int) -> str | None:
    """Why an encoded image is refused (its declared size is over ``max_pixels``), or None."""
    size = image_dimensions(data)
    if size is None or size[0] * size[1] <= max_pixels:
        return None
    width, height = size
    return (f"a {width}x{height} image ({width * height / 1e6:.1f} megapixels) is over the limit of "
            f"{max_pixels / 1e6:g} megapixels")
