"""The training input pipeline: tf.data over the prepared face-crop shards.

Parallel decode, shuffle and prefetch; augmentation for training (the seed's rotation, shift,
shear, zoom and flip, plus JPEG re-compression and blur, because uploads are re-encoded); class
balance by weights or by balanced sampling; optional self-blended pseudo-fakes made on the fly
from real crops.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from dfdetect.contract import DEFAULT_CROP_MARGIN, FAKE, REAL
from dfdetect.errors import BadInputError
from dfdetect.training.config import DataConfig
from dfdetect.training.records import parse_face_example

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


def class_weights(faces: dict[int, int]) -> dict[int, float]:
    """Weights that make both classes count equally in the loss."""
    total = faces[REAL] + faces[FAKE]
    return {label: total / (2.0 * max(1, n)) for label, n in faces.items()}


def _decode(serialized, image_size: int):
    features = parse_face_example(serialized)
    image = tf.io.decode_jpeg(features["image/encoded"], channels=3)
    image = tf.image.resize(image, (image_size, image_size), method="area", antialias=True)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    image.set_shape((image_size, image_size, 3))
    return image, features


# --- augmentation -----------------------------------------------------------------------

def _gaussian_blur(image: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """Separable Gaussian blur of one float image [H, W, 3]."""
    radius = 3
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * tf.square(x / sigma))
    k = k / tf.reduce_sum(k)
    batch = image[None]
    kx = tf.tile(tf.reshape(k, (1, -1, 1, 1)), (1, 1, 3, 1))
    ky = tf.tile(tf.reshape(k, (-1, 1, 1, 1)), (1, 1, 3, 1))
    batch = tf.nn.depthwise_conv2d(batch, kx, (1, 1, 1, 1), "SAME")
    batch = tf.nn.depthwise_conv2d(batch, ky, (1, 1, 1, 1), "SAME")
    return batch[0]


def _photometric(image: tf.Tensor, config: DataConfig) -> tf.Tensor:
    """JPEG re-compression and blur, each with its probability (one uint8 image). The draws
    follow TensorFlow's global seed, which training sets from train.seed."""
    low, high = config.jpeg_quality
    rng = tf.random.uniform((3,))
    if config.jpeg_probability > 0:
        image = tf.cond(rng[0] < config.jpeg_probability,
                        lambda: tf.image.random_jpeg_quality(image, low, high),
                        lambda: image)
    if config.blur_probability > 0:
        sigma = 0.5 + rng[2] * 1.0
        image = tf.cond(rng[1] < config.blur_probability,
                        lambda: tf.cast(tf.clip_by_value(tf.round(_gaussian_blur(tf.cast(image, tf.float32), sigma)),
                                                         0, 255), tf.uint8),
                        lambda: image)
    return image


def geometric_augmenter(config: DataConfig, seed: int):
    """The seed's geometric augmentation as Keras layers (per-sample random, on batches)."""
    import keras

    layers = [keras.layers.RandomFlip("horizontal", seed=seed, name="aug_flip")]
    if config.rotation > 0:
        layers.append(keras.layers.RandomRotation(config.rotation, fill_mode="reflect", seed=seed, name="aug_rotate"))
    if config.shift > 0:
        layers.append(keras.layers.RandomTranslation(config.shift, config.shift, fill_mode="reflect", seed=seed,
                                                     name="aug_shift"))
    if config.shear > 0:
        layers.append(keras.layers.RandomShear(config.shear, config.shear, fill_mode="reflect", seed=seed,
                                               name="aug_shear"))
    if config.zoom > 0:
        layers.append(keras.layers.RandomZoom(config.zoom, fill_mode="reflect", seed=seed, name="aug_zoom"))
    return keras.Sequential(layers, name="augment")


# --- self-blended pseudo-fakes ------------------------------------------------------------

def crop_face_box(size: int, margin: float = DEFAULT_CROP_MARGIN) -> tuple[int, int, int, int]:
    """Where the face sits inside a square crop cut with ``margin`` per side."""
    side = size / (1 + 2 * margin)
    offset = (size - side) / 2
    return (int(round(offset)), int(round(offset)), int(round(side)), int(round(side)))


def _pseudo_fake(image: tf.Tensor, label: tf.Tensor, rate: float, size: int, seed: int):
    """With probability ``rate``, turn a real crop into a self-blended fake (label 1)."""
    from dfdetect.training.blending import TRAINING, self_blend

    box = crop_face_box(size)
    rng = np.random.default_rng(seed)

    def blend(pixels: np.ndarray) -> np.ndarray:
        return self_blend(pixels, box, rng, TRAINING)

    def make_fake():
        fake = tf.numpy_function(blend, [image], tf.uint8, stateful=True)
        fake.set_shape(image.shape)
        return fake, tf.constant(FAKE, tf.int64)

    chosen = tf.logical_and(tf.equal(label, REAL), tf.random.uniform(()) < rate)
    return tf.cond(chosen, make_fake, lambda: (image, label))


# --- datasets -----------------------------------------------------------------------------

def _records(files: list[str], shuffle: bool, seed: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    return ds.interleave(tf.data.TFRecordDataset, cycle_length=min(16, max(1, len(files))),
                         num_parallel_calls=AUTOTUNE, deterministic=not shuffle)


def training_dataset(split: SplitFiles, config: DataConfig, image_size: int, seed: int = 0) -> tf.data.Dataset:
    """Shuffled, augmented (image uint8 [B,S,S,3], label float32 [B,1]) batches, repeated forever."""

    def decoded(files: list[str]) -> tf.data.Dataset:
        ds = _records(files, shuffle=True, seed=seed)
        ds = ds.map(lambda r: _decode(r, image_size), num_parallel_calls=AUTOTUNE)
        ds = ds.map(lambda image, f: (image, f["label"]), num_parallel_calls=AUTOTUNE)
        if config.cache:
            ds = ds.cache()
        return ds.shuffle(config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()

    if config.balance == "sample":
        ds = tf.data.Dataset.sample_from_datasets(
            [decoded(split.files[REAL]), decoded(split.files[FAKE])], weights=[0.5, 0.5], seed=seed)
    else:
        ds = decoded(split.all_files)
    if config.sbi_rate > 0:
        ds = ds.map(lambda image, label: _pseudo_fake(image, label, config.sbi_rate, image_size, seed),
                    num_parallel_calls=AUTOTUNE)
    if config.augment:
        ds = ds.map(lambda image, label: (_photometric(image, config), label), num_parallel_calls=AUTOTUNE)
    ds = ds.batch(config.batch_size, drop_remainder=False)
    if config.augment:
        augment = geometric_augmenter(config, seed)
        ds = ds.map(lambda images, labels: (
            tf.cast(tf.clip_by_value(tf.round(augment(tf.cast(images, tf.float32), training=True)), 0, 255), tf.uint8),
            labels), num_parallel_calls=AUTOTUNE)
    ds = ds.map(lambda images, labels: (images, tf.cast(tf.reshape(labels, (-1, 1)), tf.float32)))
    return ds.prefetch(AUTOTUNE)


def evaluation_dataset(split: SplitFiles, image_size: int, batch_size: int) -> tf.data.Dataset:
    """In order, unaugmented: (images, {label, video_id, frame_index, face_index}) batches."""
    ds = _records(split.all_files, shuffle=False, seed=0)
    ds = ds.map(lambda r: _decode(r, image_size), num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.map(lambda image, f: (image, {"label": f["label"], "video_id": f["video_id"],
                                          "frame_index": f["frame_index"], "face_index": f["face_index"]}),
                num_parallel_calls=AUTOTUNE, deterministic=True)
    # The manifest knows the size; telling tf.data lets Keras size its validation passes.
    batches = -(-split.total // batch_size)
    return ds.batch(batch_size).apply(tf.data.experimental.assert_cardinality(batches)).prefetch(AUTOTUNE)


def validation_dataset(split: SplitFiles, image_size: int, batch_size: int) -> tf.data.Dataset:
    """(images, labels [B,1]) batches for Keras' validation, unaugmented."""
    ds = evaluation_dataset(split, image_size, batch_size)
    return ds.map(lambda images, meta: (images, tf.cast(tf.reshape(meta["label"], (-1, 1)), tf.float32)))
