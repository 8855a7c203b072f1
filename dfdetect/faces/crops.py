"""Square face crops with a margin, and the JPEG encoding of crops.

Data preparation stores its crops with :func:`encode_jpeg`, and the client sends its crops the
same way, so the model sees the same kind of pixels in training and in serving.
"""

from __future__ import annotations

import cv2
import numpy as np

from dfdetect.contract import DEFAULT_CROP_MARGIN, DEFAULT_CROP_SIZE

JPEG_QUALITY = 95


def square_crop_box(box, frame_shape, margin: float = DEFAULT_CROP_MARGIN) -> tuple[int, int, int, int]:
    """The square around a face box, grown by ``margin`` of its side on every side.

    The square is centred on the face and clipped at the frame edge, so near an edge the
    result is a rectangle; it is resized to S x S afterwards. Returns x0, y0, x1, y1.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x, y, w, h = box
    height, width = frame_shape[:2]
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    x0 = int(round(max(0.0, cx - side / 2)))
    y0 = int(round(max(0.0, cy - side / 2)))
    x1 = int(round(min(float(width), cx + side / 2)))
    y1 = int(round(min(float(height), cy + side / 2)))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"face box {box} lies outside a frame of {width}x{height}")
    return x0, y0, x1, y1


def crop_face(image: np.ndarray, box, margin: float = DEFAULT_CROP_MARGIN,
              size: int = DEFAULT_CROP_SIZE) -> np.ndarray:
    """Cut the face's square (with margin, clipped at the edge) and resize it to size x size."""
    x0, y0, x1, y1 = square_crop_box(box, image.shape, margin)
    region = image[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if region.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(region, (size, size), interpolation=interpolation)


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
