"""A prepared-data folder (``dfdetect prepare``'s output) as its readers see it: the manifest, the
shards of each split, and its face crops decoded in order.

Read by training (its input pipeline builds on these) and evaluation, and by export, which checks
a new model version on crops of the run's data.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from dfdetect.contract import FAKE, REAL
from dfdetect.errors import BadInputError
from dfdetect.records import parse_face_example

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE


@dataclass
class SplitFiles:
    """The shards of one split, by label, with their face counts."""

    split: str
    files: dict[int, list[str]]  # label -> TFRecord paths
    faces: dict[int, int]  # label -> number of faces

    @property
    def all_files(self) -> list[str]:
        return sorted(self.files[REAL] + self.files[FAKE])

    @property
    def total(self) -> int:
        return self.faces[REAL] + self.faces[FAKE]


def load_manifest(prepared: str | Path) -> dict:
    """The manifest.json of a prepared-data folder; BadInputError if the folder is not one."""
    prepared = Path(prepared)
    if not prepared.is_dir():
        raise BadInputError(f"prepared data folder {prepared} does not exist; run `dfdetect prepare` "
                            "(or `make prepare`) first, or set data.prepared")
    path = prepared / "manifest.json"
    if not path.is_file():
        raise BadInputError(f"{prepared} has no manifest.json: it is not the output of `dfdetect prepare`")
    manifest = json.loads(path.read_text())
    if not manifest.get("complete", False):
        log.warning("%s is incomplete (%s of %s videos): some shards have not run", prepared,
                    manifest.get("videos_done"), manifest.get("videos_expected"))
    return manifest


def split_files(prepared: str | Path, manifest: dict, split: str, need_both_classes: bool = True) -> SplitFiles:
    """The shards of a split; BadInputError if it is empty or (when needed) holds one class only."""
    prepared = Path(prepared)
    files: dict[int, list[str]] = {REAL: [], FAKE: []}
    faces = {REAL: 0, FAKE: 0}
    for video in manifest["videos"].values():
        if video["split"] == split and video["record"]:
            files[video["label"]].append(str(prepared / video["record"]))
            faces[video["label"]] += video["faces"]
    if faces[REAL] + faces[FAKE] == 0:
        raise BadInputError(f"the {split} split of {prepared} holds no faces")
    if need_both_classes and (faces[REAL] == 0 or faces[FAKE] == 0):
        only = "real" if faces[FAKE] == 0 else "fake"
        raise BadInputError(f"the {split} split of {prepared} holds only {only} faces "
                            f"({faces[REAL]} real, {faces[FAKE]} fake); it needs both classes")
    for label in files:
        files[label].sort()
    return SplitFiles(split, files, faces)


def decode_face(serialized, image_size: int):
    """A serialized face example -> (its crop resized to uint8 [S, S, 3], its features)."""
    features = parse_face_example(serialized)
    image = tf.io.decode_jpeg(features["image/encoded"], channels=3)
    image = tf.image.resize(image, (image_size, image_size), method="area", antialias=True)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    image.set_shape((image_size, image_size, 3))
    return image, features


def record_dataset(files: list[str], shuffle: bool, seed: int) -> tf.data.Dataset:
    """The serialized examples of some shards, read in parallel (in a fixed order unless shuffled)."""
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    return ds.interleave(tf.data.TFRecordDataset, cycle_length=min(16, max(1, len(files))),
                         num_parallel_calls=AUTOTUNE, deterministic=not shuffle)


def evaluation_dataset(split: SplitFiles, image_size: int, batch_size: int) -> tf.data.Dataset:
    """In order, unaugmented: (images, {label, video_id, frame_index, face_index}) batches."""
    ds = record_dataset(split.all_files, shuffle=False, seed=0)
    ds = ds.map(lambda r: decode_face(r, image_size), num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.map(lambda image, f: (image, {"label": f["label"], "video_id": f["video_id"],
                                          "frame_index": f["frame_index"], "face_index": f["face_index"]}),
                num_parallel_calls=AUTOTUNE, deterministic=True)
    # The manifest knows the size; telling tf.data lets Keras size its validation passes.
    batches = -(-split.total // batch_size)
    return ds.batch(batch_size).apply(tf.data.experimental.assert_cardinality(batches)).prefetch(AUTOTUNE)
