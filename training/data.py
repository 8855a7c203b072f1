"""The training input pipeline: tf.data over the prepared face-crop shards.

Parallel decode, shuffle and prefetch; augmentation for training (the seed's rotation, shift,
shear, zoom and flip, plus JPEG re-compression and blur, because uploads are re-encoded); class
balance by weights or by balanced sampling; optional self-blended pseudo-fakes made on the fly
from real crops. The manifest, the split shards and reading faces in order are
``dfdetect.prepared``'s (evaluation and export read the same way).
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from dfdetect.contract import DEFAULT_CROP_MARGIN, FAKE, REAL
from dfdetect.prepared import SplitFiles, decode_face, evaluation_dataset, record_dataset
from dfdetect.training.config import DataConfig

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE


def class_weights(faces: dict[int, int]) -> dict[int, float]:
    """Weights that make both classes count equally in the loss."""
    total = faces[REAL] + faces[FAKE]
    return {label: total / (2.0 * max(1, n)) for label, n in faces.items()}


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

def training_dataset(split: SplitFiles, config: DataConfig, image_size: int, seed: int = 0) -> tf.data.Dataset:
    """Shuffled, augmented (image uint8 [B,S,S,3], label float32 [B,1]) batches, repeated forever."""

    def decoded(files: list[str]) -> tf.data.Dataset:
        ds = record_dataset(files, shuffle=True, seed=seed)
        ds = ds.map(lambda r: decode_face(r, image_size), num_parallel_calls=AUTOTUNE)
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


def validation_dataset(split: SplitFiles, image_size: int, batch_size: int) -> tf.data.Dataset:
    """(images, labels [B,1]) batches for Keras' validation, unaugmented."""
    ds = evaluation_dataset(split, image_size, batch_size)
    return ds.map(lambda images, meta: (images, tf.cast(tf.reshape(meta["label"], (-1, 1)), tf.float32)))
