"""The SavedModel every consumer relies on: two signatures, calibrated fake probabilities.

- ``serving_default``: ``images`` uint8 [-1, S, S, 3] -> ``fake_probability`` float32 [-1]
- ``serve_image_bytes``: ``image_bytes`` string [-1] (JPEG or PNG face crops of any size,
  decoded and resized inside the graph as training resized them) -> ``fake_probability``

``fake_probability = sigmoid(logit / temperature)``: the temperature fitted on validation is
part of the graph, so every server and client sees calibrated scores.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from dfdetect.contract import INPUT_BYTES, INPUT_PIXELS, OUTPUT_SCORE, SIGNATURE_BYTES, SIGNATURE_PIXELS


def crop_size(model: keras.Model) -> int:
    shape = model.inputs[0].shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise ValueError(f"the model must take square RGB crops [batch, S, S, 3], takes {shape}")
    return int(shape[1])


def resize_crops(images: tf.Tensor, size: int) -> tf.Tensor:
    """Resize uint8 crops to size x size exactly as the training pipeline does."""
    images = tf.image.resize(images, (size, size), method="area", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)


def write_savedmodel(model: keras.Model, temperature: float, path: str) -> None:
    """Export ``model`` with the two signatures of the model contract to ``path``."""
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    size = crop_size(model)
    inv_t = tf.constant(1.0 / temperature, tf.float32)

    def probabilities(images):
        logits = model(images, training=False)
        return tf.reshape(tf.sigmoid(tf.cast(logits, tf.float32) * inv_t), [-1])

    def serving_default(images):
        return {OUTPUT_SCORE: probabilities(images)}

    def serve_image_bytes(image_bytes):
        def decode(data):
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
            image.set_shape([None, None, 3])
            return resize_crops(image, size)

        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec((size, size, 3), tf.uint8))
        return {OUTPUT_SCORE: probabilities(images)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE_PIXELS, serving_default,
                         input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name=INPUT_PIXELS)])
    archive.add_endpoint(SIGNATURE_BYTES, serve_image_bytes,
                         input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_BYTES)])
    archive.write_out(path, verbose=False)


class LoadedModel:
    """A SavedModel reloaded from disk, called through its signatures."""

    def __init__(self, path: str):
        self._model = tf.saved_model.load(path)
        self.signatures = self._model.signatures

    def pixels(self, images: np.ndarray) -> np.ndarray:
        out = self.signatures[SIGNATURE_PIXELS](**{INPUT_PIXELS: tf.constant(images, tf.uint8)})
        return out[OUTPUT_SCORE].numpy()

    def image_bytes(self, encoded: list[bytes]) -> np.ndarray:
        out = self.signatures[SIGNATURE_BYTES](**{INPUT_BYTES: tf.constant(encoded, tf.string)})
        return out[OUTPUT_SCORE].numpy()
