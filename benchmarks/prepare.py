"""Benchmark of data preparation's face pipeline: frames/s and faces/s against a naive pipeline.

What it measures, on one generated video (by default 10 s of 1920x1080 at 30 fps, 300 frames,
showing a real photographed face that pans slowly across a plain background):

* "ours": the pipeline exactly as ``dfdetect prepare`` runs it for one video.
  ``read_video_frames`` samples ``--frames`` evenly spaced frames (frames in between are only
  grabbed, never converted), applies the resize rule (1920 px wide -> 640x360), and the frames
  go to ``faces_in_frames`` in batches of the detector's batch size, as ``process_item`` does.
* "naive": what a straightforward implementation would do. ``cv2.VideoCapture.read()`` on every
  frame (decode and colour conversion of all frames), keeping the same sampled indices, each
  kept frame converted to RGB and detected at full resolution one frame at a time (no resize,
  no batching), then cropped with ``crop_face``.

Both use one ``FaceDetector`` with the product's settings, built before any timing and warmed up
on a small image, and the same thread limits for TensorFlow and OpenCV (the video decoder keeps
its own default in both). Writing the face crops to TFRecords is left out: it is the same for
both and small. Each pipeline runs ``--repeats`` times and the best time counts.

It prints figures and never fails on them; the target is ours >= 3x the naive frames/s.

    python -m benchmarks.prepare [--seconds 10] [--fps 30] [--width 1920]
        [--height 1080] [--frames 32] [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import FACE_HEIGHT_FRACTION, add_video_arguments, locate_face, naive_frames, render_frames
from dfdetect.contract import DEFAULT_CROP_MARGIN, DEFAULT_CROP_SIZE
from dfdetect.faces.crops import crop_face
from dfdetect.faces.detection import FaceDetector, faces_in_frames
from dfdetect.faces.frames import DEFAULT_FRAMES, probe_video, read_video_frames, write_video
from dfdetect.samples import face_photographs

TARGET_SPEEDUP = 3.0


@dataclass
class Run:
    """One timed pass of a pipeline over the video."""

    pipeline: str
    seconds: float
    frames: int
    faces: int
    decode_seconds: float  # reading, converting and (ours) resizing the frames
    detect_seconds: float  # face detection and cropping
    crop_sides: list[float] = field(default_factory=list)  # side of each face's crop region, px

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else math.inf

    @property
    def faces_per_second(self) -> float:
        return self.faces / self.seconds if self.seconds > 0 else math.inf


# --- the two pipelines ------------------------------------------------------------------------

def run_ours(detector: FaceDetector, path: Path, frames: int) -> Run:
    """Sampled, resized frames detected in batches: data preparation's own path (process_item)."""
    started = time.perf_counter()
    detect_seconds = 0.0
    sampled, faces, crop_sides = 0, 0, []
    margin_factor = 1 + 2 * DEFAULT_CROP_MARGIN

    def detect(batch) -> None:
        nonlocal detect_seconds, faces
        t0 = time.perf_counter()
        found, _ = faces_in_frames(detector, batch, DEFAULT_CROP_MARGIN, DEFAULT_CROP_SIZE)
        detect_seconds += time.perf_counter() - t0
        faces += len(found)
        # Detected on the resized frame, cut from the full one: boxes are in original pixels.
        crop_sides.extend(max(f.box[2], f.box[3]) * margin_factor for f in found)

    batch = []
    for frame in read_video_frames(path, frames=frames):
        sampled += 1
        batch.append(frame)
        if len(batch) == detector.batch_size:
            detect(batch)
            batch = []
    if batch:
        detect(batch)
    seconds = time.perf_counter() - started
    return Run("ours", seconds, sampled, faces, seconds - detect_seconds, detect_seconds, crop_sides)


def run_naive(detector: FaceDetector, path: Path, frames: int) -> Run:
    """Every frame read in full, the sampled ones detected one by one at full resolution."""
    started = time.perf_counter()
    detect_seconds = 0.0
    sampled, faces, crop_sides = 0, 0, []
    margin_factor = 1 + 2 * DEFAULT_CROP_MARGIN
    for _, rgb in naive_frames(path, frames):
        sampled += 1
        t0 = time.perf_counter()
        for det in detector.detect([rgb])[0]:
            crop_face(rgb, det.box, DEFAULT_CROP_MARGIN, DEFAULT_CROP_SIZE)
            faces += 1
            crop_sides.append(max(det.box[2], det.box[3]) * margin_factor)
        detect_seconds += time.perf_counter() - t0
    seconds = time.perf_counter() - started
    return Run("naive", seconds, sampled, faces, seconds - detect_seconds, detect_seconds, crop_sides)


def best_of(repeats: int, pipeline, *args) -> Run:
    runs = [pipeline(*args) for _ in range(repeats)]
    return min(runs, key=lambda r: r.seconds)


# --- set-up and report ------------------------------------------------------------------------

def limit_threads(threads: int) -> None:
    """The same thread limits for both pipelines; must run before TensorFlow starts its runtime."""
    import tensorflow as tf

    cv2.setNumThreads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.prepare",
        description="frames/s and faces/s of data preparation's face pipeline against a naive pipeline")
    add_video_arguments(parser)
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                        help=f"frames sampled from the video, as prepare --frames ({DEFAULT_FRAMES})")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each pipeline; the best counts (2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="TensorFlow and OpenCV threads for both pipelines (1, as in each worker "
                             "of a multi-worker prepare run)")
    args = parser.parse_args(argv)
    for name in ("fps", "seconds", "width", "height", "frames", "repeats"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if round(args.seconds * args.fps) < 1:
        parser.error("the video must have at least one frame (--seconds x --fps)")
    return args


def report(ours: Run, naive: Run) -> None:
    print()
    print(f"{'pipeline':<9} {'seconds':>8} {'frames':>7} {'frames/s':>9} {'faces':>6} {'faces/s':>8}")
    for r in (ours, naive):
        print(f"{r.pipeline:<9} {r.seconds:>8.2f} {r.frames:>7d} {r.frames_per_second:>9.2f} "
              f"{r.faces:>6d} {r.faces_per_second:>8.2f}")
    print()
    for r in (ours, naive):
        print(f"{r.pipeline:<6} split: decode {r.decode_seconds:6.2f} s, detection {r.detect_seconds:6.2f} s "
              f"({r.detect_seconds / r.frames if r.frames else 0:.3f} s per sampled frame)")
    for r in (ours, naive):
        if r.crop_sides:
            print(f"{r.pipeline:<6} crops: cut from regions of median {statistics.median(r.crop_sides):.0f} px, "
                  f"resized to {DEFAULT_CROP_SIZE} px")
    ratio = ours.frames_per_second / naive.frames_per_second if naive.frames_per_second > 0 else math.inf
    print()
    print(f"ours/naive frames/s: {ratio:.2f}x")
    print(f"target: >= {TARGET_SPEEDUP:g}x naive: {'PASS' if ratio >= TARGET_SPEEDUP else 'BELOW'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    count = round(args.seconds * args.fps)
    limit_threads(args.threads)

    # One detector for both pipelines, built and warmed up outside any timing.
    t0 = time.perf_counter()
    detector = FaceDetector()
    _, photo = face_photographs()[0]
    box = locate_face(detector, photo)
    x, y, w, h = box
    warm = photo[max(0, y - h // 2):y + h + h // 2, max(0, x - w // 2):x + w + w // 2]
    detector.detect([np.ascontiguousarray(warm)])
    print(f"detector: MTCNN, min confidence {detector.min_confidence}, min face {detector.min_face_size} px, "
          f"batch {detector.batch_size}; built and warmed up in {time.perf_counter() - t0:.1f} s (not timed)")
    print(f"threads: {args.threads} for TensorFlow and OpenCV in both pipelines")

    with tempfile.TemporaryDirectory(prefix="dfdetect-bench-") as tmp:
        path = Path(tmp) / "bench.mp4"
        t0 = time.perf_counter()
        write_video(path, render_frames(photo, box, count, args.width, args.height), args.fps)
        generated = time.perf_counter() - t0
        info = probe_video(path)
        print(f"video: {info.width}x{info.height}, {info.fps:g} fps, {info.frame_count} frames "
              f"({info.frame_count / info.fps:.1f} s), face about {FACE_HEIGHT_FRACTION * args.height:.0f} px high, "
              f"{path.stat().st_size / 1e6:.1f} MB; generated in {generated:.1f} s")
        print(f"sampling {args.frames} frames, best of {args.repeats} run(s) per pipeline ...")
        sys.stdout.flush()

        ours = best_of(args.repeats, run_ours, detector, path, args.frames)
        naive = best_of(args.repeats, run_naive, detector, path, args.frames)
    report(ours, naive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
