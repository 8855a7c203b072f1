"""Pieces every benchmark (``make bench-*``) shares: its entry point, batches, size lists, ports."""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path
from typing import Iterator

import numpy as np

from dfdetect.errors import BadInputError, DfdetectError
from dfdetect.logs import configure_logging

log = logging.getLogger("dfdetect.bench")


def run_benchmark(parse_args, run, argv=None) -> int:
    """Parse, run, and turn a product error into its message and exit status 2."""
    args = parse_args(argv)
    configure_logging()
    try:
        return run(args)
    except DfdetectError as e:
        log.error("%s", e)
        return 2


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

    from dfdetect.training.frames import sample_indices

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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for a server started by a benchmark)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
