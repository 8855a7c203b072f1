"""The detector: a convolutional backbone trained from scratch and a small binary head.

Input: uint8 RGB face crops, S x S. Scaling and normalisation happen inside the model, so every
consumer sends pixels. Output: one logit per crop, shape [batch, 1]; ``sigmoid(logit / temperature)`` is the
``fake_probability`` (label 1 = fake) that export publishes.

Every layer the product adds has an explicit name, so checkpoints and exported graphs stay
stable across code changes.
"""

from __future__ import annotations

import logging

import keras

from dfdetect.errors import BadInputError
from dfdetect.training.config import BACKBONES, ModelConfig

log = logging.getLogger(__name__)

_EFFICIENTNETS = {f"efficientnet_b{i}": getattr(keras.applications, f"EfficientNetB{i}") for i in range(8)}


def use_mixed_precision(setting: str) -> bool:
    """Whether to compute in float16: asked for, or "auto" with a GPU present."""
    if setting == "on":
        return True
    if setting == "off":
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _backbone(name: str, size: int) -> keras.Model:
    shape = (size, size, 3)
    if name in _EFFICIENTNETS:
        # Keras' EfficientNet starts with Rescaling and Normalization: it takes 0..255 pixels.
        return _EFFICIENTNETS[name](include_top=False, weights=None, input_shape=shape)
    if name == "resnet50":
        inputs = keras.Input(shape, name="resnet_pixels")
        x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="resnet_rescaling")(inputs)
        base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=shape)
        return keras.Model(inputs, base(x), name="resnet50_scaled")
    raise BadInputError(f"unknown backbone {name!r}; allowed: {', '.join(BACKBONES)}")


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def build_model(config: ModelConfig) -> keras.Model:
    """uint8 crops -> backbone -> global max pool -> Dense/ReLU head -> one logit (float32)."""
    if config.backbone not in BACKBONES:
        raise BadInputError(f"unknown backbone {config.backbone!r}; allowed: {', '.join(BACKBONES)}")
    if use_mixed_precision(config.mixed_precision):
        keras.mixed_precision.set_global_policy("mixed_float16")
        log.info("mixed precision: float16 compute, float32 output")
    else:
        keras.mixed_precision.set_global_policy("float32")
    size = config.image_size
    inputs = keras.Input((size, size, 3), dtype="uint8", name="images")
    x = keras.layers.Rescaling(1.0, name="to_float")(inputs)  # uint8 -> float, values kept
    backbone = _backbone(config.backbone, size)
    for layer in _all_layers(backbone):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = config.batchnorm_momentum
    x = backbone(x)
    x = keras.layers.GlobalMaxPooling2D(name="head_pool")(x)
    for i, units in enumerate(config.dense_units):
        x = keras.layers.Dense(units, activation="relu", name=f"head_dense_{i}")(x)
        if i == 0 and config.dropout > 0:
            x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
    logit = keras.layers.Dense(1, dtype="float32", name="logit")(x)  # [batch, 1]
    return keras.Model(inputs, logit, name=f"dfdetect_{config.backbone}")
