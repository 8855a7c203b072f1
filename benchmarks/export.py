"""Benchmark of export: how long ``dfdetect export`` takes, how large its outputs are, and how
fast the exported model answers in TensorFlow and in onnxruntime.

What it measures, for one training run (the latest by default):

* "export": ``export_run`` publishing the run as version 1 of a model in a temporary model
  repository, with the ONNX twin, timed as one call: loading the checkpoint, writing the
  SavedModel, the validation gate, the warm-up records and model card, the tf2onnx conversion
  (a subprocess, which imports TensorFlow again, as every export does) and the ONNX parity check.
  Importing TensorFlow, Keras and the exporter in this process happens before the clock starts.
  No version label can protect anything there: the model config it is given does not exist.
* "sizes": the SavedModel version folder (every file under it, including the warm-up requests
  and the model card in ``assets.extra/``) and the ONNX twin's ``model.onnx``, in MB (10^6
  bytes), and the twin's parity figure from the model card (max abs difference to TensorFlow).
* "throughput": in this process, the published SavedModel reloaded with ``LoadedModel`` and
  called through ``serving_default`` (uint8 pixels in, probabilities out, as TensorFlow Serving
  runs it), and the ONNX twin run with ``OnnxModel`` (onnxruntime's CPU provider). Both keep
  their default thread pools and take the same numpy batch of uint8 crops of the model's crop
  size, cut from ``sample_crops`` (the run's prepared faces where they are still there, repeated
  to fill the batch). For each batch size, both engines get ``--warmup`` untimed calls, then the
  ``--seconds`` each engine gets are split into alternating slices (TensorFlow, onnxruntime,
  TensorFlow, ...), each slice starting with one more untimed call. Every timed call is one
  blocking round trip from numpy to numpy. images/s = images in timed calls / their total time;
  p50 is the median time of one call. Alternating slices mean a load that comes and goes on the
  machine hits both engines alike, so their ratio holds even when the absolute figures drift.

It prints figures and never fails on them.

    python -m benchmarks.export [--run RUN_DIR] [--runs-dir runs] [--batches 1,8,32]
        [--seconds 3] [--warmup 3]
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import fill_batch, positive_ints, run_benchmark

log = logging.getLogger("benchmarks.export")  # also when run with -m

DEFAULT_BATCHES = "1,8,32"
SLICES = 3  # alternating timed slices per engine and batch size
MB = 1e6


@dataclass
class Measurement:
    """Timed calls of one engine at one batch size."""

    engine: str
    batch_size: int
    call_seconds: list[float] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        total = sum(self.call_seconds)
        return self.batch_size * len(self.call_seconds) / total if total > 0 else math.inf

    @property
    def p50_ms(self) -> float:
        return 1000 * statistics.median(self.call_seconds) if self.call_seconds else math.nan


# --- measuring --------------------------------------------------------------------------------

def folder_bytes(path: str | Path) -> int:
    """Sum of the sizes of every file under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def time_slice(call, batch: np.ndarray, seconds: float, into: Measurement) -> None:
    """One untimed call (the engine's threads may have been idle while the other ran), then
    timed calls until ``seconds`` have passed; always at least one."""
    call(batch)
    deadline = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        call(batch)
        t1 = time.perf_counter()
        into.call_seconds.append(t1 - t0)
        if t1 >= deadline:
            break


def measure(engines: dict, batch: np.ndarray, seconds: float, warmup: int) -> dict[str, Measurement]:
    """Warm every engine up on ``batch``, then time them in alternating slices."""
    for call in engines.values():
        for _ in range(warmup):
            call(batch)
    results = {name: Measurement(name, len(batch)) for name in engines}
    for _ in range(SLICES):
        for name, call in engines.items():
            time_slice(call, batch, seconds / SLICES, results[name])
    return results


# --- command line and report ------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.export",
        description="export time, SavedModel and ONNX sizes, and in-process images/s of TensorFlow and "
                    "onnxruntime on the exported model at several batch sizes, with their ratio")
    parser.add_argument("--run", help="run folder (default: the latest run in --runs-dir)")
    parser.add_argument("--runs-dir", default="runs", help="where the latest run is looked up (runs)")
    parser.add_argument("--batches", type=positive_ints, default=positive_ints(DEFAULT_BATCHES),
                        help=f"batch sizes, comma-separated ({DEFAULT_BATCHES})")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="timed seconds per engine and batch size (3)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per engine and batch size first (3)")
    args = parser.parse_args(argv)
    if not args.seconds > 0:
        parser.error("--seconds must be positive")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first call of a loaded model is not representative")
    return args


def report_export(seconds: float, result, onnx_file: Path | None) -> None:
    card = result.card
    total = folder_bytes(result.path)
    extra = folder_bytes(Path(result.path) / "assets.extra")
    print()
    print(f"export: {seconds:.1f} s (version {result.version}; ONNX conversion and parity check included)")
    print(f"  SavedModel: {total / MB:8.2f} MB  (version folder; {extra / MB:.2f} MB of it warm-up requests "
          f"and model card)")
    onnx = card["onnx"]
    if onnx_file is not None:
        print(f"  ONNX twin:  {onnx_file.stat().st_size / MB:8.2f} MB  (model.onnx, opset {onnx['opset']}); "
              f"parity: max abs diff {onnx['max_abs_diff']:.2e} to TensorFlow (tolerance {onnx['tolerance']:g})")
    else:
        print(f"  ONNX twin:  NOT published: {onnx.get('reason', 'unknown reason')}")


def report_throughput(rows: list[tuple[int, dict[str, Measurement], float | None]]) -> None:
    print()
    print(f"{'batch':>5} {'TF images/s':>12} {'ORT images/s':>13} {'ORT/TF':>7} {'TF p50 ms':>10} "
          f"{'ORT p50 ms':>11} {'TF calls':>9} {'ORT calls':>10} {'max |ORT-TF|':>13}")
    for batch_size, results, diff in rows:
        tf_m, ort_m = results["tensorflow"], results.get("onnxruntime")
        if ort_m is None:
            print(f"{batch_size:>5d} {tf_m.images_per_second:>12.1f} {'-':>13} {'-':>7} {tf_m.p50_ms:>10.2f} "
                  f"{'-':>11} {len(tf_m.call_seconds):>9d} {'-':>10} {'-':>13}")
            continue
        ratio = ort_m.images_per_second / tf_m.images_per_second
        print(f"{batch_size:>5d} {tf_m.images_per_second:>12.1f} {ort_m.images_per_second:>13.1f} {ratio:>6.2f}x "
              f"{tf_m.p50_ms:>10.2f} {ort_m.p50_ms:>11.2f} {len(tf_m.call_seconds):>9d} "
              f"{len(ort_m.call_seconds):>10d} {diff:>13.2e}")


def run(args: argparse.Namespace) -> int:
    from dfdetect.runs import latest_run
    from dfdetect.training.config import load_run_config

    run_dir = Path(args.run) if args.run else latest_run(args.runs_dir)
    config = load_run_config(run_dir)

    # Imported before the clock starts: every export pays for them, but once per process.
    import keras  # noqa: F401
    import tensorflow as tf

    from dfdetect.export.exporter import export_run, sample_crops
    from dfdetect.export.onnx_twin import OnnxModel
    from dfdetect.export.savedmodel import LoadedModel

    print(f"run: {run_dir} ({config.model.backbone}, preset {config.preset}); {os.cpu_count()} CPU core(s)")
    print("exporting into a temporary model repository ...")
    sys.stdout.flush()

    with tempfile.TemporaryDirectory(prefix="dfdetect-bench-export-") as tmp:
        started = time.perf_counter()
        result = export_run(run_dir, str(Path(tmp) / "model_repository"), onnx=True,
                            models_config=Path(tmp) / "no-models.config")
        export_seconds = time.perf_counter() - started
        onnx_file = Path(result.onnx_path) / "model.onnx" if result.onnx_path else None
        report_export(export_seconds, result, onnx_file)
        gc.collect()

        size = int(result.card["crop_size"])
        crops = sample_crops(config.data.prepared, size)
        tf_model = LoadedModel(result.path)
        engines = {"tensorflow": tf_model.pixels}
        if onnx_file is not None:
            engines["onnxruntime"] = OnnxModel(str(onnx_file))
        else:
            print("  onnxruntime is left out of the throughput table")

        intra = tf.config.threading.get_intra_op_parallelism_threads()
        print()
        print(f"throughput: in process, uint8 crops of {size}x{size} px, default thread pools "
              f"(TensorFlow intra-op {intra or 'default'}, onnxruntime default); "
              f"{args.warmup} untimed calls, then about {args.seconds:g} s per engine and batch size "
              f"in {SLICES} alternating slices ...")
        sys.stdout.flush()

        rows = []
        for batch_size in args.batches:
            batch = fill_batch(crops, batch_size)
            results = measure(engines, batch, args.seconds, args.warmup)
            diff = None
            if "onnxruntime" in engines:
                diff = float(np.max(np.abs(engines["onnxruntime"](batch) - tf_model.pixels(batch))))
            rows.append((batch_size, results, diff))
            line = ", ".join(f"{m.engine} {m.images_per_second:.1f} images/s" for m in results.values())
            print(f"  batch {batch_size}: {line}")
            sys.stdout.flush()

    report_throughput(rows)
    return 0


def main(argv=None) -> int:
    return run_benchmark(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
