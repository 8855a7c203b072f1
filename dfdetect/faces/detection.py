"""Face detection with MTCNN, and the faces of some frames (cut by ``crops.crop_face``).

One :class:`FaceDetector` is made per process (per worker, or per client) and reused for every
frame: building MTCNN loads three networks, which costs far more than detecting a face.
Frames of one video are detected in batches, which MTCNN runs as one graph call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from dfdetect.contract import DEFAULT_CROP_MARGIN, DEFAULT_CROP_SIZE
from dfdetect.faces.crops import crop_face

log = logging.getLogger(__name__)

DEFAULT_MIN_CONFIDENCE = 0.95
DEFAULT_MIN_FACE_SIZE = 20
DEFAULT_DETECT_BATCH = 8


@dataclass(frozen=True)
class Detection:
    """A face found in a (resized) frame: box as x, y, width, height in that frame's pixels."""

    box: tuple[int, int, int, int]
    confidence: float

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class Face:
    """A cropped face: the crop, and its box in the original (un-resized) frame."""

    frame_index: int
    timestamp: float
    face_index: int
    box: tuple[int, int, int, int]  # x, y, w, h in original frame pixels
    confidence: float
    crop: np.ndarray  # S x S x 3 uint8 RGB


class FaceDetector:
    """MTCNN with the product's settings: confidence threshold, smallest face, largest-only."""

    def __init__(self, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 min_face_size: int = DEFAULT_MIN_FACE_SIZE, largest_only: bool = False,
                 batch_size: int = DEFAULT_DETECT_BATCH):
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        if min_face_size < 12:
            raise ValueError(f"min_face_size must be at least 12 (MTCNN's smallest window), got {min_face_size}")
        from mtcnn import MTCNN  # imports TensorFlow: only when a detector is really needed

        self.min_confidence = min_confidence
        self.min_face_size = min_face_size
        self.largest_only = largest_only
        self.batch_size = max(1, batch_size)
        self._mtcnn = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Faces in each RGB image, most confident first (only the largest with largest_only)."""
        results: list[list[Detection]] = []
        # MTCNN pads a batch to its largest image; batch only images of the same shape.
        start = 0
        while start < len(images):
            end = start + 1
            while (end < len(images) and end - start < self.batch_size
                   and images[end].shape == images[start].shape):
                end += 1
            raw = self._mtcnn.detect_faces(list(images[start:end]), min_face_size=self.min_face_size)
            results.extend(self._select(faces) for faces in raw)
            start = end
        return results

    def _select(self, raw_faces) -> list[Detection]:
        found = []
        for face in raw_faces:
            confidence = float(face["confidence"])
            x, y, w, h = (int(v) for v in face["box"])
            if confidence < self.min_confidence or w <= 0 or h <= 0:
                continue
            found.append(Detection(box=(x, y, w, h), confidence=confidence))
        if self.largest_only and found:
            return [max(found, key=lambda d: d.area)]
        return sorted(found, key=lambda d: -d.confidence)


def faces_in_frames(detector: FaceDetector, frames, margin: float = DEFAULT_CROP_MARGIN,
                    size: int = DEFAULT_CROP_SIZE) -> tuple[list[Face], list[int]]:
    """Detect and crop the faces of some frames.

    Returns the faces (boxes mapped back to original frame pixels) and the indices of the
    frames where no face was found; those are reported, never replaced by a centre crop.
    """
    frames = list(frames)
    detections = detector.detect([f.image for f in frames])
    faces: list[Face] = []
    empty: list[int] = []
    for frame, found in zip(frames, detections):
        if not found:
            empty.append(frame.index)
            continue
        for face_index, det in enumerate(found):
            # Detected on the resized frame, cut from the full one: the crop keeps every pixel
            # of detail the source has (blending traces are fine-grained).
            x, y, w, h = det.box
            s = frame.scale
            original_box = (int(round(x / s)), int(round(y / s)), int(round(w / s)), int(round(h / s)))
            source = frame.full
            box = original_box if source is not frame.image else det.box
            crop = crop_face(source, box, margin, size)
            faces.append(Face(frame_index=frame.index, timestamp=frame.timestamp,
                              face_index=face_index, box=original_box,
                              confidence=det.confidence, crop=crop))
    return faces, empty
