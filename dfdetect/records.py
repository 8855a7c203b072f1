"""The face-crop TFRecord format: one ``tf.train.Example`` per face.

Written by data preparation, read by training and evaluation; this module is the one place that
knows the feature names.
"""

from __future__ import annotations

import tensorflow as tf

from dfdetect.faces.crops import encode_jpeg  # JPEG at faces.crops.JPEG_QUALITY
from dfdetect.faces.detection import Face

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),  # JPEG face crop, S x S RGB
    "label": tf.io.FixedLenFeature([], tf.int64),  # 1 = fake, 0 = real
    "video_id": tf.io.FixedLenFeature([], tf.string),
    "frame_index": tf.io.FixedLenFeature([], tf.int64),
    "timestamp": tf.io.FixedLenFeature([], tf.float32),  # seconds
    "face_index": tf.io.FixedLenFeature([], tf.int64),  # 0 = most confident face of the frame
    "confidence": tf.io.FixedLenFeature([], tf.float32),  # detector confidence
    "box": tf.io.FixedLenFeature([4], tf.int64),  # x, y, w, h in original frame pixels
    "group": tf.io.FixedLenFeature([], tf.string),  # source group
}


def _bytes(v: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _ints(*v: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in v]))


def _float(v: float) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))


def face_example(face: Face, label: int, video_id: str, group: str) -> bytes:
    """Serialize one face crop and what is known about it."""
    feature = {
        "image/encoded": _bytes(encode_jpeg(face.crop)),
        "label": _ints(label),
        "video_id": _bytes(video_id.encode("utf-8")),
        "frame_index": _ints(face.frame_index),
        "timestamp": _float(face.timestamp),
        "face_index": _ints(face.face_index),
        "confidence": _float(face.confidence),
        "box": _ints(*face.box),
        "group": _bytes(group.encode("utf-8")),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_face_example(serialized) -> dict:
    """Parse a serialized face example (a scalar string tensor) into its features."""
    return tf.io.parse_single_example(serialized, FEATURES)


def read_face_records(paths) -> list[dict]:
    """All face examples of some TFRecord files, as Python values (for tests and tools)."""
    out = []
    for raw in tf.data.TFRecordDataset(list(paths)):
        parsed = parse_face_example(raw)
        out.append({k: (v.numpy().tolist() if v.shape.rank else v.numpy()) for k, v in parsed.items()})
    return out
