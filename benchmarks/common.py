"""Pieces the benchmarks (``make bench-*``) share: the entry point, batches, size lists, the
naive way of reading a video (the baseline) and the generated video of a face. Ports, server
processes and raw HTTP exchanges are in ``dfdetect.tooling`` (the tests use them too)."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from dfdetect.errors import BadInputError, DfdetectError
from dfdetect.logs import configure_logging

if TYPE_CHECKING:
    from dfdetect.faces.detection import FaceDetector

log = logging.getLogger("benchmarks")

FACE_HEIGHT_FRACTION = 0.28  # face box height / frame height: about 300 px in a 1080p frame
BACKGROUND = (118, 118, 118)  # plain grey around the photograph


def run_benchmark(parse_args, run, argv=None) -> int:
    """Parse, run, and turn a product error into its message and exit status 2."""
    args = parse_args(argv)
    configure_logging()
    try:
        return run(args)
    except DfdetectError as e:
        log.error("%s", e)
        return 2


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model-repository and --model-name: the exported model a benchmark serves."""
    parser.add_argument("--model-repository", default="model_repository", help="model repository (model_repository)")
    parser.add_argument("--model-name", default="deepfake", help="model folder in the repository (deepfake)")


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    """--seconds, --fps, --width and --height of the generated video of a face."""
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the generated video (10)")
    parser.add_argument("--fps", type=float, default=30.0, help="its frame rate (30)")
    parser.add_argument("--width", type=int, default=1920, help="its width in pixels (1920)")
    parser.add_argument("--height", type=int, default=1080, help="its height in pixels (1080)")


def fill_batch(crops: np.ndarray, batch_size: int) -> np.ndarray:
    """``batch_size`` crops, repeating ``crops`` as often as needed; contiguous uint8."""
    return np.ascontiguousarray(np.take(crops, np.arange(batch_size) % len(crops), axis=0), dtype=np.uint8)


def positive_ints(text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32] (an argparse type): positive, duplicates dropped, order kept."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 1,8,32; got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return list(dict.fromkeys(values))


def positive_ints_or_none(text: str) -> list[int]:
    """As ``positive_ints``, and '' -> [] (an option whose empty value turns a part off)."""
    return positive_ints(text) if text.strip() else []


def naive_frames(path: str | Path, frames: int | None = None, per_second: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """The naive (seed) way of reading a video, the baseline the benchmarks measure against:
    every frame decoded in full, and the sampled ones (as ``sample_indices`` picks them) converted
    to RGB at full resolution: ``(index, rgb)``."""
    import cv2

    from dfdetect.faces.frames import sample_indices

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise BadInputError(f"cannot open {path}")
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
        wanted = set(sample_indices(count, fps, frames, per_second=per_second))
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if index in wanted:
                yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()


def locate_face(detector: FaceDetector, photo: np.ndarray) -> tuple[int, int, int, int]:
    """The face box of the photograph, found with the benchmark's detector."""
    found = detector.detect([photo])[0]
    if not found:
        raise RuntimeError("the detector found no face in the packaged photograph")
    return found[0].box


def render_frames(photo: np.ndarray, box, count: int, width: int, height: int):
    """Frames of the photograph with its face about FACE_HEIGHT_FRACTION of the frame high,
    panning slowly left to right (and a little up and down) over a plain background."""
    import cv2

    x, y, w, h = box
    fx, fy = x + w / 2, y + h / 2
    scale = FACE_HEIGHT_FRACTION * height / h
    for i in range(count):
        t = i / max(1, count - 1)
        cx = width * (0.35 + 0.30 * t)
        cy = height * (0.45 + 0.03 * math.sin(2 * math.pi * t))
        matrix = np.float32([[scale, 0, cx - scale * fx], [0, scale, cy - scale * fy]])
        yield cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=BACKGROUND)
