"""Benchmark of training throughput: the input pipeline alone against the training step alone.

What it measures, for one training config (the ``smoke`` preset on the demo data by default):

* "pipeline": ``data.training_dataset`` built exactly as ``dfdetect train`` builds it (same
  split, config, image size and seed, so the same decode, cache, shuffle, balance, pseudo-fakes
  and augmentation), iterated with nothing downstream: each batch is pulled and its shape
  touched, no model runs. When the config caches decoded crops, the first pass over the data
  fills the cache and is far slower than every later one, so the warm-up consumes one full
  epoch's worth of batches (plus ``--warmup``) before timing starts: the figure is the steady
  state a run sees from its second epoch on. A second row forces ``data.augment`` on, because the
  presets for real data train with augmentation even where this one does not.
* "model": the model built and compiled as training does (Adam, binary cross-entropy on logits,
  AUC and accuracy metrics, the same distribution strategy and class weights), stepped with
  ``train_on_batch`` on one fixed batch taken from the pipeline. Warm-up steps, which include
  tracing the step function, are not timed. No input pipeline runs while it is timed.

The ratio pipeline/model says how much headroom the input has: the target is that the pipeline
delivers at least twice the images per second that the training step consumes, so the model,
not the data, bounds training even when both share the machine's cores in a real run.

Both figures come from the same run on purpose. On a shared or throttled machine absolute
throughput drifts by tens of percent between runs; figures taken minutes apart in one process
see the same machine, so their ratio holds where comparing numbers from separate runs would not.

It prints figures and never fails on them.

    python -m benchmarks.train [--preset smoke] [--set SECTION.FIELD=VALUE ...]
        [--batches 30] [--steps 15] [--warmup 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import math
import os
import sys
import time
from dataclasses import dataclass

from benchmarks.common import run_benchmark
from dfdetect.contract import FAKE, REAL
from dfdetect.training.config import PRESETS, DataConfig, load_config

log = logging.getLogger("benchmarks.train")  # also when run with -m

TARGET_RATIO = 2.0


@dataclass
class Measurement:
    """One timed stage: how many images went through in how long."""

    stage: str
    images: int
    seconds: float
    batch_size: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.inf


# --- the two stages ---------------------------------------------------------------------------

def cache_fill_batches(split, config: DataConfig) -> int:
    """Batches to pull before every cached crop has been decoded once (0 without a cache).

    With one stream over all shards, that is one epoch. With balanced sampling each class has
    its own cached stream, drawn half the time, so the larger class completes its first pass
    after about twice its own size in draws.
    """
    if not config.cache:
        return 0
    if config.balance == "sample":
        faces = 2 * max(split.faces[REAL], split.faces[FAKE])
    else:
        faces = split.total
    return max(1, -(-faces // config.batch_size))


def time_pipeline(stage: str, dataset, warmup: int, batches: int, batch_size: int):
    """Pull ``warmup`` batches untimed, then time ``batches`` more.

    Returns the measurement and the last batch pulled. The iterator is dropped on return, which
    stops its background threads before anything else is timed.
    """
    iterator = iter(dataset)
    batch = None
    for _ in range(warmup):
        batch = next(iterator)
        _ = batch[0].shape
    images = 0
    started = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
        images += int(batch[0].shape[0])
    seconds = time.perf_counter() - started
    del iterator
    gc.collect()
    return Measurement(stage, images, seconds, batch_size), batch


def time_training_steps(model, images, labels, sample_weight, warmup: int, steps: int) -> Measurement:
    """``train_on_batch`` on one fixed batch: ``warmup`` steps untimed (tracing), then ``steps``.

    ``train_on_batch`` returns its logs as Python numbers, so each call waits for its step to
    finish and the clock covers the computation, not just its dispatch.
    """
    for _ in range(warmup):
        model.train_on_batch(images, labels, sample_weight=sample_weight)
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, labels, sample_weight=sample_weight)
    seconds = time.perf_counter() - started
    batch = int(images.shape[0])
    return Measurement("model training step", batch * steps, seconds, batch)


def fixed_batch(batch, weights: dict[int, float] | None):
    """One batch as standalone tensors, with the per-sample weights its class weights give."""
    import numpy as np
    import tensorflow as tf

    images = tf.constant(batch[0].numpy())
    labels = tf.constant(batch[1].numpy())
    sample_weight = None
    if weights is not None:
        classes = np.round(labels.numpy().reshape(-1)).astype(int)
        sample_weight = tf.constant([weights[c] for c in classes], dtype=tf.float32)
    return images, labels, sample_weight


# --- command line and report ------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.train",
        description="images/s of the training input pipeline alone and of the training step alone, "
                    "measured in the same run, and their ratio (target: pipeline >= 2x model)")
    parser.add_argument("--preset", default="smoke", choices=sorted(PRESETS), help="training preset (smoke)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override one config field, as `dfdetect train --set` (repeatable)")
    parser.add_argument("--batches", type=int, default=30, help="timed batches of the pipeline (30)")
    parser.add_argument("--steps", type=int, default=15, help="timed training steps (15)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed batches and steps before timing (3); a cached pipeline also "
                             "warms up over one full epoch")
    args = parser.parse_args(argv)
    for name in ("batches", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first training step traces the step function")
    return args


def report(pipelines: list[Measurement], model: Measurement) -> None:
    width = max(len(m.stage) for m in [*pipelines, model])
    print()
    print(f"{'stage':<{width}} {'images/s':>9} {'batch':>6} {'seconds':>8} {'pipeline/model':>15}")
    for m in pipelines:
        ratio = m.images_per_second / model.images_per_second
        print(f"{m.stage:<{width}} {m.images_per_second:>9.1f} {m.batch_size:>6d} {m.seconds:>8.3f} {ratio:>14.2f}x")
    print(f"{model.stage:<{width}} {model.images_per_second:>9.1f} {model.batch_size:>6d} {model.seconds:>8.3f} "
          f"{'-':>15}")
    print()
    ratios = {m.stage: m.images_per_second / model.images_per_second for m in pipelines}
    lowest = min(ratios, key=ratios.get)
    verdict = "PASS" if ratios[lowest] >= TARGET_RATIO else "BELOW"
    scope = "every pipeline row" if len(ratios) > 1 else "the pipeline"
    print(f"target: pipeline >= {TARGET_RATIO:g}x model: {verdict} "
          f"({scope}; lowest {ratios[lowest]:.2f}x, {lowest})")


def describe(data: DataConfig) -> str:
    parts = [f"augmentation {'on' if data.augment else 'off'}"]
    if data.sbi_rate > 0:
        parts.append(f"pseudo-fakes {data.sbi_rate:.0%}")
    return ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    from dfdetect.training.cli import prepare_demo_if_missing

    config = load_config(args.preset, sets=args.set)
    prepare_demo_if_missing(config.data.prepared)

    import keras

    from dfdetect.prepared import load_manifest, split_files
    from dfdetect.training import data
    from dfdetect.training.distributed import choose_strategy

    manifest = load_manifest(config.data.prepared)
    split = split_files(config.data.prepared, manifest, "train")
    size, batch_size, seed = config.model.image_size, config.data.batch_size, config.train.seed
    keras.utils.set_random_seed(seed)
    strategy = choose_strategy()
    weights = data.class_weights(split.faces) if config.data.balance == "class_weight" else None

    print(f"config: preset {config.preset}, {config.model.backbone} at {size} px, batch {batch_size}, "
          f"balance {config.data.balance}, cache {'on' if config.data.cache else 'off'}, {describe(config.data)}")
    print(f"data: {config.data.prepared}, train split {split.total} faces "
          f"({split.faces[REAL]} real, {split.faces[FAKE]} fake); {os.cpu_count()} CPU core(s)")

    # The pipelines are built before the model, as in training: building the model sets Keras'
    # global dtype policy, which the augmentation layers would otherwise pick up.
    variants = [(f"pipeline, as configured ({describe(config.data)})", config.data)]
    if not config.data.augment:
        forced = dataclasses.replace(config.data, augment=True)
        variants.append((f"pipeline, {describe(forced)}", forced))
    datasets = [(stage, cfg, data.training_dataset(split, cfg, size, seed=seed)) for stage, cfg in variants]

    fill = cache_fill_batches(split, config.data)
    warmup = args.warmup + fill
    if fill:
        what = (f"one epoch of {split.total} faces" if config.data.balance != "sample"
                else "each class's cached stream passed once")
        print(f"pipeline warm-up: {warmup} batches untimed ({fill} fill the crop cache, {what}, "
              f"then {args.warmup} more), so the figures are the steady state from the second epoch on")
    else:
        print(f"pipeline warm-up: {warmup} batches untimed")
    print(f"timing {args.batches} batches per pipeline, then {args.steps} training steps "
          f"after {args.warmup} untimed (tracing included) ...")
    sys.stdout.flush()

    pipelines, sample = [], None
    for stage, _, dataset in datasets:
        measurement, last = time_pipeline(stage, dataset, warmup, args.batches, batch_size)
        pipelines.append(measurement)
        sample = sample if sample is not None else last
        print(f"  {stage}: {measurement.images_per_second:.1f} images/s")
        sys.stdout.flush()
    del datasets
    gc.collect()

    images, labels, sample_weight = fixed_batch(sample, weights)
    t0 = time.perf_counter()
    from dfdetect.training.train import build_compiled_model

    model = build_compiled_model(config, strategy)
    print(f"model: {model.count_params():,} parameters, built and compiled in {time.perf_counter() - t0:.1f} s "
          f"(not timed); one fixed batch of {int(images.shape[0])} crops"
          + (", class-weighted" if sample_weight is not None else ""))
    sys.stdout.flush()
    trained = time_training_steps(model, images, labels, sample_weight, args.warmup, args.steps)
    print(f"  {trained.stage}: {trained.images_per_second:.1f} images/s")

    report(pipelines, trained)
    return 0


def main(argv=None) -> int:
    return run_benchmark(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
