"""Pieces every benchmark (``make bench-*``) shares: its entry point, batches, size lists."""

from __future__ import annotations

import argparse
import logging

import numpy as np

from dfdetect.errors import DfdetectError
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
