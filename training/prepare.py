"""Data preparation: a dataset of videos and images -> face-crop TFRecords in leak-free splits.

Output folder::

    OUT/
      prepare_config.json       settings the crops were made with (a resumed run must match)
      manifest.json             counts per split and label, faces per video, failures and why
      train/ val/ test/         one TFRecord shard per video: <video-key>.tfrecord
      status/<video-key>.json   per-video result; its presence marks the video done

Each video is written atomically (a temporary file renamed into place), then its status; a
re-run skips videos whose status says done, so an interrupted run resumes. With
``--shard i --num-shards N`` a run processes only its share of the videos (a stable hash of
the video id decides), so N pods of a Kubernetes Indexed Job can share one output folder;
every run finishes by rebuilding the manifest from all status files found.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from dfdetect.contract import DEFAULT_CROP_MARGIN, DEFAULT_CROP_SIZE, label_name
from dfdetect.errors import BadInputError, MediaError
from dfdetect.faces import detection as face_mod
from dfdetect.faces.frames import DEFAULT_FRAMES, read_frames
from dfdetect.training.datasets import MediaItem, load_dataset
from dfdetect.training.splits import DEFAULT_RATIOS, SPLITS, assign_splits, find_leaks, in_shard, parse_ratios

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CONFIG_FILE = "prepare_config.json"
STATUS_DIR = "status"


@dataclass
class PrepareConfig:
    """Settings of a preparation run. Fields marked (crops) decide what the crops look like."""

    data: str  # dataset folder
    out: str  # output folder
    layout: str = "auto"  # dfdc, celebdf, folder or auto
    frames: int = DEFAULT_FRAMES  # (crops) frames sampled per video, evenly spaced
    per_second: bool = False  # (crops) sample one frame per second instead of `frames`
    crop_size: int = DEFAULT_CROP_SIZE  # (crops) side S of the square face crops
    margin: float = DEFAULT_CROP_MARGIN  # (crops) margin around the face box, per side
    min_confidence: float = face_mod.DEFAULT_MIN_CONFIDENCE  # (crops) detector threshold
    min_face_size: int = face_mod.DEFAULT_MIN_FACE_SIZE  # (crops) smallest face, in pixels
    largest_only: bool = False  # (crops) keep only the largest face of a frame
    detector: str = face_mod.DEFAULT_BACKEND  # (crops) MTCNN on onnx (onnxruntime) or mtcnn (the package)
    enhance: str = face_mod.DEFAULT_ENHANCE  # (crops) the copy faces are detected on: clahe or none
    # (crops) candidates down to this confidence are kept where their track vouches for them
    candidate_confidence: float = face_mod.DEFAULT_CANDIDATE_CONFIDENCE
    ratios: tuple[float, float, float] = DEFAULT_RATIOS  # train:val:test weights
    seed: int = 0  # split seed
    workers: int = 0  # worker processes; 0 = one per core
    shard: int = 0  # this run's share ...
    num_shards: int = 1  # ... of this many

    def crop_settings(self) -> dict:
        return {k: getattr(self, k) for k in ("frames", "per_second", "crop_size", "margin",
                                              "min_confidence", "min_face_size", "largest_only",
                                              "detector", "enhance", "candidate_confidence",
                                              "ratios", "seed", "layout")}

    def detector_settings(self) -> dict:
        return {"min_confidence": self.min_confidence, "min_face_size": self.min_face_size,
                "largest_only": self.largest_only, "backend": self.detector, "enhance": self.enhance,
                "candidate_confidence": self.candidate_confidence}

    def validate(self) -> None:
        if self.frames < 1:
            raise BadInputError(f"--frames must be at least 1, got {self.frames}")
        if self.crop_size < 16:
            raise BadInputError(f"--crop-size must be at least 16 pixels, got {self.crop_size}")
        if not 0 <= self.margin <= 2:
            raise BadInputError(f"--margin must be between 0 and 2 (fraction of the face per side), got {self.margin}")
        if not 0 <= self.min_confidence <= 1:
            raise BadInputError(f"--min-confidence must be in [0, 1], got {self.min_confidence}")
        if not 0.8 <= self.candidate_confidence <= 1:
            raise BadInputError(f"--candidate-confidence must be in [0.8, 1] (MTCNN reports faces above 0.8), "
                                f"got {self.candidate_confidence}")
        if self.detector not in face_mod.BACKENDS:
            raise BadInputError(f"--detector must be one of {', '.join(face_mod.BACKENDS)}, got {self.detector!r}")
        if self.enhance not in face_mod.ENHANCEMENTS:
            raise BadInputError(f"--enhance must be one of {', '.join(face_mod.ENHANCEMENTS)}, got {self.enhance!r}")
        if self.workers < 0:
            raise BadInputError(f"--workers must be >= 0 (0 = one per core), got {self.workers}")
        self.ratios = parse_ratios(self.ratios)
        in_shard("", self.shard, self.num_shards)  # validates the shard numbers


def video_key(video_id: str) -> str:
    """A file-name-safe, collision-free name for a video's outputs."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", video_id)[-80:]
    digest = hashlib.sha1(video_id.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- per-video work (runs in worker processes) -----------------------------------------------

_detector: face_mod.FaceDetector | None = None
_detector_settings: dict | None = None


def _init_worker(config: PrepareConfig, threads: int | None = None) -> None:
    """Build this process's detector once (reused while its settings stay the same).

    In a worker process ``threads`` keeps the detector (onnxruntime or TensorFlow) and OpenCV to
    that many threads, so that the workers, not their thread pools, share the cores; in-process
    runs leave them alone.
    """
    global _detector, _detector_settings
    if threads is not None:
        import cv2

        cv2.setNumThreads(threads)
    settings = config.detector_settings()
    if _detector is None or _detector_settings != settings:
        _detector = face_mod.FaceDetector(threads=threads or 0, **settings)
        _detector_settings = settings


def _chunks(items, size: int):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def process_item(item: MediaItem, split: str, config: PrepareConfig) -> dict:
    """Sample, detect, crop and write one video's faces; returns its status record."""
    from dfdetect.records import face_example

    assert _detector is not None, "worker not initialised"
    out = Path(config.out)
    key = video_key(item.video_id)
    status = {"video_id": item.video_id, "path": item.path, "label": item.label, "group": item.group,
              "kind": item.kind, "split": split, "record": None, "frames": 0,
              "frames_without_face": 0, "faces": 0, "faces_rescued": 0, "tracks": 0, "error": None}
    started = time.perf_counter()
    try:
        candidates, sampled = [], []
        # Frames stream through in detector-sized chunks, so a long video never sits in memory
        # (only its face crops do, until its tracks decide which candidates to keep).
        for chunk in _chunks(read_frames(item.path, frames=config.frames, per_second=config.per_second),
                             _detector.batch_size):
            sampled += [frame.index for frame in chunk]
            found, _ = face_mod.faces_in_frames(_detector, chunk, config.margin, config.crop_size, candidates=True)
            candidates += found
        frames = len(sampled)
        faces = face_mod.kept_faces(candidates, face_mod.select_faces(_detector, candidates, sampled))
        with_face = len({f.frame_index for f in faces})
        status.update(frames=frames, frames_without_face=frames - with_face, faces=len(faces),
                      faces_rescued=sum(f.rescued for f in faces), tracks=len({f.track for f in faces}))
        if faces:
            record = out / split / f"{key}.tfrecord"
            tmp = record.with_name(f".{record.name}.tmp-{os.getpid()}")
            import tensorflow as tf

            with tf.io.TFRecordWriter(str(tmp)) as writer:
                for face in faces:
                    writer.write(face_example(face, item.label, item.video_id, item.group))
            os.replace(tmp, record)
            status["record"] = f"{split}/{record.name}"
        else:
            status["error"] = f"no face found in {frames} sampled frames"
            status["no_face"] = True
    except MediaError as e:
        status["error"] = e.problem
    except Exception as e:  # a bug or an unexpected decoder failure: reported, the run goes on
        log.exception("unexpected failure on %s", item.path)
        status["error"] = f"unexpected {type(e).__name__}: {e}"
    status["seconds"] = round(time.perf_counter() - started, 3)
    _write_atomic(out / STATUS_DIR / f"{key}.json", json.dumps(status, indent=1).encode())
    return status


# --- the run ----------------------------------------------------------------------------

# What folders prepared before the detector settings were recorded were made with.
EARLIER_DETECTOR = {"detector": "mtcnn", "enhance": "none", "candidate_confidence": None}


def _check_resume(out: Path, config: PrepareConfig) -> None:
    path = out / CONFIG_FILE
    settings = json.loads(json.dumps(config.crop_settings()))  # tuples -> lists, as stored
    if path.is_file():
        previous = {**EARLIER_DETECTOR, **json.loads(path.read_text())}
        changed = {k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v}
        if changed:
            detail = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise BadInputError(f"{out} was prepared with other settings ({detail}); "
                                "use a new output folder or delete this one")
    else:
        _write_atomic(path, json.dumps(settings, indent=1).encode())


def run_prepare(config: PrepareConfig, progress: bool = True) -> dict:
    """Prepare this run's share of the dataset; returns the manifest."""
    config.validate()
    dataset = load_dataset(config.data, config.layout)
    out = Path(config.out)
    try:
        for sub in (*SPLITS, STATUS_DIR):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInputError(f"cannot create output folder {out}: {e}") from None
    _check_resume(out, config)

    plan = assign_splits(dataset.items, config.ratios, config.seed)
    leaks = find_leaks(dataset.items, plan.assignment)
    assert not leaks, f"split leaks source groups {leaks}"  # assign_splits guarantees it

    todo, skipped = [], 0
    for item in dataset.items:
        split = plan.split_of(item.video_id)
        if split is None or not in_shard(item.video_id, config.shard, config.num_shards):
            continue
        status_path = out / STATUS_DIR / f"{video_key(item.video_id)}.json"
        if status_path.is_file() and _done(status_path, split):
            skipped += 1
            continue
        todo.append((item, split))
    log.info("shard %d/%d: %d videos to process, %d already done", config.shard, config.num_shards,
             len(todo), skipped)

    workers = config.workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(todo)))
    bar = tqdm(total=len(todo), unit="video", desc="prepare", disable=not progress or not todo,
               mininterval=1.0)
    totals = {"frames": 0, "faces": 0, "failed": 0}

    def account(status: dict) -> None:
        totals["frames"] += status["frames"]
        totals["faces"] += status["faces"]
        if status["error"]:
            totals["failed"] += 1
            bar.write(f"  {status['path']}: {status['error']}")
        bar.update(1)
        bar.set_postfix(frames=totals["frames"], faces=totals["faces"], failed=totals["failed"])

    started = time.perf_counter()
    if workers == 1:
        if todo:
            _init_worker(config)
        for item, split in todo:
            account(process_item(item, split, config))
    else:
        # spawn: TensorFlow's runtime does not survive fork.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(config, 1)) as pool:
            futures = [pool.submit(process_item, item, split, config) for item, split in todo]
            for future in as_completed(futures):
                account(future.result())
    bar.close()
    elapsed = time.perf_counter() - started
    if todo:
        log.info("processed %d videos in %.1f s: %d frames, %d faces (%.1f frames/s), %d failed",
                 len(todo), elapsed, totals["frames"], totals["faces"],
                 totals["frames"] / max(elapsed, 1e-9), totals["failed"])
    return write_manifest(config, dataset, plan)


def _done(status_path: Path, split: str) -> bool:
    try:
        status = json.loads(status_path.read_text())
    except (OSError, ValueError):
        return False
    # Failures are retried on the next run (a corrupt file fails again quickly); a video with
    # no face is a finished result.
    ok = status.get("error") is None or status.get("no_face")
    return bool(ok) and status.get("split") == split


def write_manifest(config: PrepareConfig, dataset, plan) -> dict:
    """Rebuild manifest.json from every status file (all shards' work), atomically."""
    out = Path(config.out)
    expected = {item.video_id for item in dataset.items if plan.split_of(item.video_id)}
    statuses = {}
    for path in sorted((out / STATUS_DIR).glob("*.json")):
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if status.get("video_id") in expected and status.get("split") == plan.split_of(status["video_id"]):
            statuses[status["video_id"]] = status

    splits = {s: {"videos": {"real": 0, "fake": 0}, "faces": {"real": 0, "fake": 0}, "records": []}
              for s in SPLITS}
    videos, failed, no_face = {}, [], []
    frames_total = frames_without_face = 0
    for vid, st in sorted(statuses.items()):
        frames_total += st["frames"]
        frames_without_face += st["frames_without_face"]
        if st.get("no_face"):
            no_face.append(vid)
        elif st["error"]:
            failed.append({"video_id": vid, "path": st["path"], "error": st["error"]})
            continue
        name = label_name(st["label"])
        entry = splits[st["split"]]
        if st["record"]:
            entry["videos"][name] += 1
            entry["faces"][name] += st["faces"]
            entry["records"].append(st["record"])
        videos[vid] = {k: st.get(k, 0) for k in ("split", "label", "group", "kind", "frames",
                                                 "frames_without_face", "faces", "faces_rescued", "tracks",
                                                 "record")}
    manifest = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": {"name": dataset.name, "layout": dataset.layout, "root": dataset.root,
                    "items": len(dataset.items)},
        "settings": json.loads(json.dumps(config.crop_settings())),
        "detector": face_mod.describe(config.detector, config.enhance),
        "label_convention": {"0": "real", "1": "fake"},
        "complete": len(statuses) == len(expected),
        "videos_expected": len(expected),
        "videos_done": len(statuses),
        "frames": frames_total,
        "frames_without_face": frames_without_face,
        "splits": splits,
        "videos": videos,
        "failed": failed,
        "no_face": no_face,
        "excluded": [{"video_id": v, "reason": r} for v, r in sorted(plan.excluded.items())],
        "dataset_problems": dataset.problems,
    }
    _write_atomic(out / MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest


def summarize(manifest: dict) -> str:
    """A few readable lines about a manifest, for the end of a run."""
    lines = [f"dataset {manifest['dataset']['name']} ({manifest['dataset']['layout']}): "
             f"{manifest['videos_done']}/{manifest['videos_expected']} videos done"
             + ("" if manifest["complete"] else " (incomplete: other shards still to run)")]
    for split, e in manifest["splits"].items():
        lines.append(f"  {split:5s} videos real {e['videos']['real']:5d} fake {e['videos']['fake']:5d}   "
                     f"faces real {e['faces']['real']:6d} fake {e['faces']['fake']:6d}")
    lines.append(f"  frames sampled {manifest['frames']}, frames without a face {manifest['frames_without_face']}")
    for title, key in (("failed", "failed"), ("no face found", "no_face"), ("excluded", "excluded"),
                       ("dataset problems", "dataset_problems")):
        if manifest[key]:
            lines.append(f"  {title}: {len(manifest[key])}")
    for f in manifest["failed"][:10]:
        lines.append(f"    {f['path']}: {f['error']}")
    return "\n".join(lines)

