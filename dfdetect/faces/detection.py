"""Face detection with the product's settings, and the faces of some frames.

The detector is MTCNN. By default its networks run on ONNX Runtime (``mtcnn_onnx``: no
TensorFlow); ``backend="mtcnn"`` runs the ``mtcnn`` package itself (TensorFlow), kept for
comparison. Either way:

- Detection runs on an enhanced copy of the frame (``enhance="clahe"``: a light denoise, then
  local contrast normalisation of the luminance), so faces in dim, flat, noisy footage are found;
  crops are cut from the original pixels, so the model sees what it was trained on.
- A face is a detection of at least ``min_confidence`` (0.95). Detections down to
  ``candidate_confidence`` are candidates: a video's candidates are linked into tracks
  (``tracks``) and kept where their track vouches for them (``select_faces``).

One :class:`FaceDetector` is made per process (per worker, or per client) and reused for every
frame. Frames of one video are detected in batches, each network stage taking the whole batch.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import cv2
import numpy as np

from dfdetect.contract import DEFAULT_CROP_MARGIN, DEFAULT_CROP_SIZE
from dfdetect.faces.crops import crop_face
from dfdetect.faces.frames import FramePool
from dfdetect.faces.tracks import Link, link_faces

log = logging.getLogger(__name__)

BACKENDS = ("onnx", "mtcnn")
ENHANCEMENTS = ("clahe", "none")
DEFAULT_BACKEND = "onnx"
DEFAULT_ENHANCE = "clahe"
DEFAULT_MIN_CONFIDENCE = 0.95
DEFAULT_CANDIDATE_CONFIDENCE = 0.85  # a candidate: kept when its track vouches for it
DEFAULT_MIN_FACE_SIZE = 20
DEFAULT_DETECT_BATCH = 8

# The enhanced copy, chosen on the generated hard footage written as mp4 (samples.footage, 3 seeds x
# 24 frames): of the small dim faces, none found 7% at 0.95, CLAHE (clip 2) after a sigma-1 blur 65%,
# this 90% (97% down to the candidate confidence), with no false face on any footage; a blur of
# sigma 1.5 or a coarser or finer tile grid did worse. The luminance is Y of YCrCb, blurred alone:
# the same recall as L of CIELAB with the whole frame blurred (474 against 475 of 480 faces over 3
# seeds x 32 frames), in 1.3 ms a frame instead of 3.5.
DENOISE_SIGMA = 0.7  # Gaussian, pixels: sensor noise would otherwise be amplified with the contrast
CLAHE_CLIP = 3.0
CLAHE_TILES = 8


@dataclass(frozen=True)
class Detection:
    """A face found in a (resized) frame: box as x, y, width, height in that frame's pixels."""

    box: tuple[int, int, int, int]
    confidence: float

    @property
    def area(self) -> int:
        return _area(self.box)


@dataclass(frozen=True)
class Face:
    """A cropped face: the crop, and its box in the original (un-resized) frame."""

    frame_index: int
    timestamp: float
    face_index: int  # 0 = the most confident face of its frame
    box: tuple[int, int, int, int]  # x, y, w, h in original frame pixels
    confidence: float
    crop: np.ndarray  # S x S x 3 uint8 RGB
    track: int | None = None  # the person it belongs to in its video (select_faces)
    rescued: bool = False  # under min_confidence, kept because its track vouches for it


def describe(backend: str = DEFAULT_BACKEND, method: str = DEFAULT_ENHANCE) -> dict:
    """The detector and enhancement in full, for manifests: what made a set of crops."""
    out = {"backend": backend, "networks": "MTCNN (P-Net, R-Net, O-Net) weights of the mtcnn package",
           "enhance": method}
    if method == "clahe":
        out.update(denoise_sigma=DENOISE_SIGMA, clahe_clip=CLAHE_CLIP, clahe_tiles=CLAHE_TILES,
                   clahe_channel="Y of YCrCb", denoised="Y")
    return out


def enhance(image: np.ndarray, method: str = DEFAULT_ENHANCE) -> np.ndarray:
    """The copy of an RGB frame that faces are detected on (``none``: the frame itself)."""
    if method == "none":
        return image
    if method != "clahe":
        raise ValueError(f"unknown enhancement {method!r}; expected one of {', '.join(ENHANCEMENTS)}")
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    luma = cv2.GaussianBlur(np.ascontiguousarray(ycc[..., 0]), (0, 0), DENOISE_SIGMA)
    ycc[..., 0] = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(CLAHE_TILES, CLAHE_TILES)).apply(luma)
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


class _OnnxBackend:
    def __init__(self, threads: int, frames: FramePool):
        from dfdetect.faces.mtcnn_onnx import OnnxMTCNN

        self._mtcnn = OnnxMTCNN(threads=threads, frames=frames)

    def detect(self, images, min_face_size):
        return [[(f.box, f.confidence) for f in faces] for faces in self._mtcnn.detect(images, min_face_size)]


class _PackageBackend:
    def __init__(self, threads: int):
        try:
            from mtcnn import MTCNN  # imports TensorFlow
        except ImportError as e:
            raise RuntimeError(f"detector backend 'mtcnn' needs the mtcnn package with TensorFlow ({e}); "
                               "the default backend 'onnx' needs neither") from None
        if threads:
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        self._mtcnn = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")

    def detect(self, images, min_face_size):
        out = []
        for start, end in _same_shape_runs(images):  # the package pads a batch to its largest image
            raw = self._mtcnn.detect_faces(list(images[start:end]), min_face_size=min_face_size)
            out.extend([(tuple(int(v) for v in f["box"]), float(f["confidence"])) for f in faces] for faces in raw)
        return out


def _same_shape_runs(images):
    start = 0
    while start < len(images):
        end = start + 1
        while end < len(images) and images[end].shape == images[start].shape:
            end += 1
        yield start, end
        start = end


class FaceDetector:
    """MTCNN with the product's settings (see the module docstring). Not thread-safe: one caller
    at a time (the client holds a lock around it)."""

    def __init__(self, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                 min_face_size: int = DEFAULT_MIN_FACE_SIZE, largest_only: bool = False,
                 batch_size: int = DEFAULT_DETECT_BATCH, *, backend: str = DEFAULT_BACKEND,
                 enhance: str = DEFAULT_ENHANCE, candidate_confidence: float | None = DEFAULT_CANDIDATE_CONFIDENCE,
                 threads: int = 0):
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
        candidate_confidence = min_confidence if candidate_confidence is None else min(candidate_confidence,
                                                                                       min_confidence)
        if not 0.8 <= candidate_confidence <= 1.0:
            raise ValueError(f"candidate_confidence must be in [0.8, 1] (MTCNN's last stage reports faces above "
                             f"0.8), got {candidate_confidence}")
        if min_face_size < 12:
            raise ValueError(f"min_face_size must be at least 12 (MTCNN's smallest window), got {min_face_size}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown detector backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        if enhance not in ENHANCEMENTS:
            raise ValueError(f"unknown enhancement {enhance!r}; expected one of {', '.join(ENHANCEMENTS)}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0 (0: every core), got {threads}")
        self.min_confidence = min_confidence
        self.candidate_confidence = candidate_confidence
        self.min_face_size = min_face_size
        self.largest_only = largest_only
        self.batch_size = max(1, batch_size)
        self.backend = backend
        self.enhance = enhance
        self._frames = FramePool(threads)  # the enhanced copies and the pyramid, a frame a thread
        self._backend = _OnnxBackend(threads, self._frames) if backend == "onnx" else _PackageBackend(threads)

    def settings(self) -> dict:
        """What decides which faces are found (recorded with prepared data, compared on resume)."""
        return {"detector": self.backend, "enhance": self.enhance, "min_confidence": self.min_confidence,
                "candidate_confidence": self.candidate_confidence, "min_face_size": self.min_face_size,
                "largest_only": self.largest_only}

    def candidates(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Every detection of at least ``candidate_confidence`` in each RGB image, most confident
        first: the faces, and the candidates a track may vouch for."""
        found = []
        with self._frames.running():
            enhanced = self._frames.map(lambda image: enhance(image, self.enhance), images)
            for start in range(0, len(enhanced), self.batch_size):
                batch = enhanced[start:start + self.batch_size]
                for raw in self._backend.detect(batch, self.min_face_size):
                    detections = [Detection(box=box, confidence=c) for box, c in raw
                                  if c >= self.candidate_confidence and box[2] > 0 and box[3] > 0]
                    found.append(sorted(detections, key=lambda d: -d.confidence))
        return found

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """The faces (at least ``min_confidence``) in each RGB image, most confident first; only
        the largest with ``largest_only``. A single image has no track to vouch for a candidate."""
        out = []
        for found in self.candidates(images):
            faces = [d for d in found if d.confidence >= self.min_confidence]
            out.append([max(faces, key=lambda d: d.area)] if self.largest_only and faces else faces)
        return out


def faces_in_frames(detector: FaceDetector, frames, margin: float = DEFAULT_CROP_MARGIN,
                    size: int = DEFAULT_CROP_SIZE, candidates: bool = False) -> tuple[list[Face], list[int]]:
    """Detect and crop the faces of some frames.

    Returns the faces (boxes mapped back to original frame pixels) and the indices of the
    frames where none was found; those are reported, never replaced by a centre crop. With
    ``candidates`` the candidates come too, for ``select_faces`` to decide on once the whole
    video is seen; without, the faces of each frame as ``FaceDetector.detect`` gives them.
    """
    frames = list(frames)
    images = [f.image for f in frames]
    detections = detector.candidates(images) if candidates else detector.detect(images)
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


def select_faces(detector: FaceDetector, faces: list[Face], sampled=None) -> list[Link]:
    """Which of one input's candidate faces (all its sampled frames, in frame order) are kept,
    and their tracks: faces of at least ``min_confidence``, and candidates between confident faces
    of their track (rescued); with ``largest_only``, the largest kept face of each frame.
    ``sampled``: the indices of all sampled frames, those without a candidate included."""
    links = link_faces(faces, detector.min_confidence, sampled)
    if not detector.largest_only:
        return links
    largest: dict[int, Link] = {}
    for link in links:
        frame = faces[link.index].frame_index
        best = largest.get(frame)
        if best is None or _area(faces[link.index].box) > _area(faces[best.index].box):
            largest[frame] = link
    chosen = {link.index for link in largest.values()}
    return [link for link in links if link.index in chosen]


def kept_faces(faces: list[Face], links: list[Link]) -> list[Face]:
    """The faces ``select_faces`` kept, with their track, rescue mark and face index in the frame."""
    per_frame: dict[int, int] = {}  # faces kept so far in each frame (candidates come most confident first)
    out = []
    for link in links:
        face = faces[link.index]
        index = per_frame.get(face.frame_index, 0)
        per_frame[face.frame_index] = index + 1
        out.append(dataclasses.replace(face, face_index=index, track=link.track, rescued=link.rescued))
    return out


def _area(box) -> int:
    return box[2] * box[3]
