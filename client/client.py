"""The preprocessing client media backends call: a video or an image in, verdicts out.

    from dfdetect.client import DeepfakeClient

    with DeepfakeClient("localhost:8500", model_card="model_repository/deepfake") as client:
        result = client.analyze("upload.mp4")
        print(result.verdict, result.fake_probability)   # "fake" 0.97
        payload = result.to_dict()                         # the shape DESIGN.md fixes

Faces are found and cut exactly as data preparation cut the training crops, by the same code
(``dfdetect.faces``: frames, detection, tracks, crops): frames sampled evenly (or one per
second), the resize rule, MTCNN on a contrast-normalised copy of the resized frame, faces linked
into tracks across the sampled frames (a face a little under the threshold between confident
faces of its track is kept, marked ``rescued``), a square crop with margin cut from the
full-resolution frame and resized to S x S, S read from the served model's metadata. The crops
of one input go to the server in as few Predict calls as the request size limit allows, as JPEG
(the format the training crops were stored in) through ``serve_image_bytes`` by default.

With ``overlap=True`` a video's crops go instead a detector batch at a time, sent by one
background thread while the caller decodes and detects the next frames (in frame order, one
request in flight, one model version, the same errors). It is off by default: measured with
``make bench-client`` on a 2-core machine serving the model on the same cores, it did not pay
(detection and the model compete for the cores, and the requests were a small share of the time).
It can pay where requests take long and cost the client nothing but waiting: a remote, busy or
slow-linked server. Every result carries ``timings`` (:class:`StageTimes`) to tell.

Scores are combined the way evaluation combines them (``dfdetect.faces.aggregate``): a frame
is as suspicious as its most suspicious face; a video's score comes from its frame scores by the
``mean`` or ``confident`` strategy; the verdict is ``fake`` when that score reaches the decision
threshold, else ``real``; ``no_face`` when no face is found in any sampled frame (no score is
made up). Each track (person) gets a verdict of its own from its faces, so a video with two
people says which face is fake; a verdict resting on fewer than ``min_evidence`` of the sampled
frames is marked ``low_evidence``. The threshold is, in order: the ``threshold`` argument; the calibrated threshold of the
model card given as ``model_card``; 0.5. (TensorFlow Serving does not serve the model card, so
the client cannot fetch it; pass the card, its version folder, or the model's folder of versions.)
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from dfdetect.client.errors import ClientError
from dfdetect.client.metadata import ModelMetadata
from dfdetect.client.transport import REQUEST_OVERHEAD, Transport, connect
from dfdetect.contract import DEFAULT_CROP_MARGIN, MODEL_CARD_FILE, SIGNATURE_BYTES, SIGNATURE_PIXELS
from dfdetect.errors import MediaError
from dfdetect.faces.aggregate import DEFAULT_MIN_EVIDENCE, DEFAULT_STRATEGY, STRATEGIES, low_evidence, video_score
from dfdetect.faces.detection import Face, FaceDetector, faces_in_frames, select_faces
from dfdetect.faces.frames import (DEFAULT_FRAMES, Frame, decode_image, media_kind, prefetch, read_image_frame,
                                   read_video_frames, resize_frame)
from dfdetect.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

FAKE = "fake"
REAL = "real"
NO_FACE = "no_face"
VERDICTS = (FAKE, REAL, NO_FACE)

DEFAULT_THRESHOLD = 0.5  # without a model card or an explicit threshold
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024  # one Predict request; gRPC's customary message size
INPUT_FORMATS = ("jpeg", "pixels")
# Overlap of one video's stages (see _Scoring). Off: on 2 cores shared with the local server it
# did not pay in `make bench-client` (requests were a small share of a video's time, and detection
# and the model compete for the cores). The benchmark prints both rows, to re-decide elsewhere.
DEFAULT_OVERLAP = False
MAX_PENDING_CHUNKS = 2  # with overlap: chunks queued or in flight behind the caller, at most


# --- results ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FaceResult:
    """One face in a sampled frame."""

    box: tuple[int, int, int, int]  # x, y, width, height in the frame's original pixels
    confidence: float  # the detector's confidence that this is a face
    fake_probability: float  # the model's score for the face crop
    track: int = 0  # the person it belongs to (TrackResult.id)
    rescued: bool = False  # under the face threshold, kept because its track vouches for it
    # The S x S RGB crop that was scored, when asked for (keep_crops); not part of the output.
    crop: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"box": [int(v) for v in self.box], "confidence": float(self.confidence),
                "fake_probability": float(self.fake_probability), "track": int(self.track),
                "rescued": bool(self.rescued)}


@dataclass(frozen=True)
class TrackResult:
    """One person: the faces linked across the sampled frames, and the verdict on them."""

    id: int  # 0, 1, ... in the order the tracks start
    verdict: str  # "fake" or "real"
    fake_probability: float  # the track's faces combined by the video strategy
    frames: int  # sampled frames the verdict rests on (one face of this track in each)
    first_frame: int  # index of the first and last frame with this track's face
    last_frame: int

    def to_dict(self) -> dict:
        return {"id": self.id, "verdict": self.verdict, "fake_probability": float(self.fake_probability),
                "frames": self.frames, "first_frame": self.first_frame, "last_frame": self.last_frame}


@dataclass(frozen=True)
class FrameResult:
    """One sampled frame (an image is one frame, index 0) and the faces found in it."""

    index: int  # frame number in the video
    timestamp: float  # seconds from the start
    faces: tuple[FaceResult, ...] = ()  # most confident first; empty when no face was found

    @property
    def fake_probability(self) -> float | None:
        """The frame's score: its most suspicious face (None without a face)."""
        return max((f.fake_probability for f in self.faces), default=None)

    def to_dict(self) -> dict:
        out = {"index": int(self.index), "timestamp": float(self.timestamp)}
        if self.faces:
            out["fake_probability"] = float(self.fake_probability)
        out["faces"] = [f.to_dict() for f in self.faces]
        return out


@dataclass
class StageTimes:
    """Where the time of one analysis went, in seconds of wall-clock time per stage.

    With overlap the request stages (``encode``, ``requests``) run in a background thread beside
    ``decode`` and ``detection``, so the stages add up to more than ``total``; ``waiting`` is the
    time the caller spent waiting for answers when it had nothing else to do.
    """

    decode: float = 0.0  # reading frames: decoding, colour conversion, the resize rule
    detection: float = 0.0  # MTCNN and cutting the crops
    encode: float = 0.0  # JPEG encoding of the crops (none for uint8 pixels)
    requests: float = 0.0  # Predict calls, from sending to the decoded answer (retries included)
    waiting: float = 0.0  # the caller blocked on requests sent in the background
    total: float = 0.0  # the whole call
    predict_calls: int = 0  # Predict requests sent


@dataclass(frozen=True)
class MediaResult:
    """The verdict on one input, with everything it was made from."""

    source: str  # the path (or the name given for in-memory images)
    kind: str  # "image" or "video"
    verdict: str  # "fake", "real" or "no_face"
    fake_probability: float | None  # the aggregated score; None for no_face
    threshold: float  # the decision threshold used
    model_name: str
    model_version: int | None  # the version that answered; None when nothing was sent (no_face)
    frames: tuple[FrameResult, ...] = field(default_factory=tuple)  # every sampled frame
    strategy: str = DEFAULT_STRATEGY  # how frame scores became the video score
    tracks: tuple[TrackResult, ...] = field(default_factory=tuple)  # one per person, in order of appearance
    min_evidence: float = DEFAULT_MIN_EVIDENCE  # share of sampled frames with a face below which it is low evidence
    # Where the time went (not part of the output: it describes this call, not the input).
    timings: StageTimes | None = field(default=None, compare=False, repr=False)

    @property
    def faces(self) -> int:
        return sum(len(f.faces) for f in self.frames)

    @property
    def frames_with_face(self) -> int:
        return sum(1 for f in self.frames if f.faces)

    @property
    def frames_sampled(self) -> int:
        return len(self.frames)

    @property
    def low_evidence(self) -> bool:
        """A verdict resting on few of the sampled frames (under ``min_evidence`` of them)."""
        return self.verdict != NO_FACE and low_evidence(self.frames_with_face, self.frames_sampled, self.min_evidence)

    def to_dict(self) -> dict:
        """The client output of DESIGN.md, as JSON-ready values."""
        out = {"source": self.source, "kind": self.kind, "verdict": self.verdict}
        if self.fake_probability is not None:
            out["fake_probability"] = float(self.fake_probability)
        out.update(threshold=float(self.threshold), model_name=self.model_name, model_version=self.model_version,
                   frames_sampled=self.frames_sampled, frames_with_face=self.frames_with_face,
                   low_evidence=self.low_evidence, tracks=[t.to_dict() for t in self.tracks],
                   frames=[f.to_dict() for f in self.frames])
        return out


# --- the model card -----------------------------------------------------------------------------

def find_model_card(path: str | os.PathLike, version: int | None = None) -> Path:
    """The model card file that ``path`` designates.

    ``path`` is the card itself, a version folder (holding ``assets.extra/model_card.json``), or a
    model's folder of numbered versions, where ``version`` picks the folder.
    """
    p = Path(path)
    expected = ("expected the model card JSON, a version folder holding "
                f"{MODEL_CARD_FILE}, or a model folder of numbered versions")
    if p.is_file():
        return p
    if (p / MODEL_CARD_FILE).is_file():
        return p / MODEL_CARD_FILE
    if not p.is_dir():
        raise ClientError("NOT_FOUND", f"model card not found: {p} does not exist; {expected}")
    versions = sorted(int(c.name) for c in p.iterdir() if c.name.isdigit() and c.is_dir())
    if not versions:
        raise ClientError("NOT_FOUND", f"no model card in {p}; {expected}")
    if version is None:
        raise ClientError("INVALID_ARGUMENT", f"{p} holds versions {versions}: which one answers is not known yet")
    card = p / str(version) / MODEL_CARD_FILE
    if not card.is_file():
        raise ClientError("NOT_FOUND", f"no model card for version {version} under {p} "
                                       f"(versions there: {', '.join(map(str, versions))})")
    return card


def read_model_card(path: str | os.PathLike) -> dict:
    """A model card, checked for what the client uses (threshold, crop margin, video strategy)."""
    try:
        card = json.loads(Path(path).read_text())
    except OSError as e:
        raise ClientError("NOT_FOUND", f"cannot read the model card {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ClientError("INVALID_ARGUMENT", f"model card {path} is not valid JSON: {e}") from None
    if not isinstance(card, dict):
        raise ClientError("INVALID_ARGUMENT", f"model card {path} must hold a JSON object")
    threshold = card.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ClientError("INVALID_ARGUMENT", f"model card {path}: threshold must be a number in [0, 1], "
                                              f"got {threshold!r}")
    margin = card.get("crop_margin")
    if margin is not None and (not isinstance(margin, (int, float)) or margin < 0):
        raise ClientError("INVALID_ARGUMENT", f"model card {path}: crop_margin must be a number >= 0, got {margin!r}")
    strategy = card.get("video_strategy")
    if strategy is not None and strategy not in STRATEGIES:
        raise ClientError("INVALID_ARGUMENT", f"model card {path}: video_strategy {strategy!r} is unknown; "
                                              f"allowed: {', '.join(STRATEGIES)}")
    return card


# --- input checks -------------------------------------------------------------------------------

def check_media_file(path: str | os.PathLike, expected_kind: str | None = None) -> str:
    """Check that ``path`` is a readable, non-empty file of a known type; returns its kind."""
    p = Path(path)
    if not p.exists():
        raise ClientError("NOT_FOUND", "file not found", str(path))
    if not p.is_file():
        raise ClientError("INVALID_ARGUMENT", "not a file (expected an image or a video)", str(path))
    if not os.access(p, os.R_OK):
        raise ClientError("PERMISSION_DENIED", "file is not readable", str(path))
    try:
        kind = media_kind(p)
    except MediaError as e:
        raise ClientError("INVALID_ARGUMENT", e.problem, str(path)) from None
    if expected_kind is not None and kind != expected_kind:
        other = "analyze_video" if kind == "video" else "analyze_image"
        article = "an" if expected_kind == "image" else "a"
        raise ClientError("INVALID_ARGUMENT", f"this is a {kind} file, expected {article} {expected_kind} (use "
                                              f"{other} or analyze)", str(path))
    if p.stat().st_size == 0:
        raise ClientError("INVALID_ARGUMENT", f"empty file (expected a {kind})", str(path))
    return kind


def image_frame(image: np.ndarray, source: str) -> Frame:
    """An RGB image in memory as a frame, resized by the rule like a file would be."""
    if not isinstance(image, np.ndarray):
        raise ClientError("INVALID_ARGUMENT", f"expected a numpy array, got {type(image).__name__}", source)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ClientError("INVALID_ARGUMENT", f"image array is {image.dtype} of shape {image.shape}; expected RGB "
                                              "uint8 of shape (height, width, 3)", source)
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ClientError("INVALID_ARGUMENT", f"image array of shape {image.shape} has no pixels", source)
    rgb = np.ascontiguousarray(image)
    resized, scale = resize_frame(rgb)
    return Frame(index=0, timestamp=0.0, image=resized, scale=scale, original=rgb)


def _check_frames(frames, per_second: bool) -> None:
    if per_second:
        return
    if isinstance(frames, bool) or not isinstance(frames, int) or frames <= 0:
        raise ClientError("INVALID_ARGUMENT", f"frames must be a positive whole number, got {frames!r}")


def pack_requests(sizes: list[int], limit: int, overhead: int = REQUEST_OVERHEAD) -> list[tuple[int, int]]:
    """Split items of these encoded sizes into consecutive runs ``[start, end)`` whose requests
    stay under ``limit`` bytes: the fewest requests, in order. An item too big on its own still
    goes, alone."""
    runs, start, total = [], 0, overhead
    for i, size in enumerate(sizes):
        if i > start and total + size > limit:
            runs.append((start, i))
            start, total = i, overhead
        total += size
    if start < len(sizes):
        runs.append((start, len(sizes)))
    return runs


# --- the client ---------------------------------------------------------------------------------

class DeepfakeClient:
    """Verdicts on images and videos from a served dfdetect model (thread-safe).

    Connecting reads the model's metadata (GetModelMetadata): the crop size S, the signatures,
    and the version that answers. One MTCNN detector is built on first use and kept.

    Arguments (all but ``server`` keyword-only):

    - ``server``: where the model is served, as a :class:`Transport`: one from
      ``dfdetect.client.connect(...)``, which takes the address, the model name, gRPC or REST, a
      version or version label to pin, the deadline, retries, TLS and load balancing; or the
      backend's own object with the same calls. A ``HOST:PORT`` string is short for
      ``connect(HOST:PORT)``: gRPC, model ``deepfake``, the defaults; none is the local deployment
      (``localhost:8500``). The client closes its transport when it is closed.
    - ``model_card``: the card (or its version folder, or the model's folder of versions) that
      gives the calibrated threshold, the crop margin and the video strategy.
    - ``threshold``, ``strategy`` (``mean`` / ``confident``), ``margin``: override the card.
    - ``frames`` (evenly spaced frames per video) or ``per_second``: the default sampling.
    - ``input_format``: ``"jpeg"`` (``serve_image_bytes``, the smallest requests) or
      ``"pixels"`` (uint8 through ``serving_default``).
    - ``max_request_bytes``: the largest Predict request; a video's crops are split to fit.
    - ``overlap``: send the crops of each detector batch while the next frames are decoded and
      detected (one background thread per call), instead of all crops once the video is read.
      More, smaller requests; it pays when requests take long (a remote or busy server).
    - ``prefetch``: decode a video's next frames in a background thread while the detector works
      on the last ones (on by default; off, decoding and detection take turns).
    - ``detector``: a :class:`FaceDetector` to use instead of building one (the default: MTCNN on
      onnxruntime, on a contrast-normalised copy of each frame).
    - ``min_evidence``: a verdict resting on fewer than this share of the sampled frames (default
      a quarter) is marked ``low_evidence``.
    """

    def __init__(self, server: str | Transport | None = None, *,
                 model_card: str | os.PathLike | None = None, threshold: float | None = None,
                 strategy: str | None = None, margin: float | None = None,
                 frames: int = DEFAULT_FRAMES, per_second: bool = False, input_format: str = "jpeg",
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, overlap: bool = DEFAULT_OVERLAP,
                 prefetch: bool = True, detector: FaceDetector | None = None, min_evidence: float = DEFAULT_MIN_EVIDENCE,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        if not (server is None or isinstance(server, (str, Transport))):
            raise ClientError("INVALID_ARGUMENT", "server must be a gRPC HOST:PORT or a Transport from "
                                                  "dfdetect.client.connect(...) (an object with metadata, "
                                                  "predict_pixels, predict_bytes, item_bytes and close), "
                                                  f"got {type(server).__name__}")
        if threshold is not None and (isinstance(threshold, bool) or not 0 <= threshold <= 1):
            raise ClientError("INVALID_ARGUMENT", f"threshold must be in [0, 1], got {threshold!r}")
        if strategy is not None and strategy not in STRATEGIES:
            raise ClientError("INVALID_ARGUMENT", f"strategy {strategy!r} is unknown; allowed: {', '.join(STRATEGIES)}")
        if margin is not None and not 0 <= margin <= 2:
            raise ClientError("INVALID_ARGUMENT", f"margin must be between 0 and 2 (fraction of the face per side), "
                                                  f"got {margin!r}")
        if input_format not in INPUT_FORMATS:
            raise ClientError("INVALID_ARGUMENT", f"input_format must be one of {', '.join(INPUT_FORMATS)}, "
                                                  f"got {input_format!r}")
        if isinstance(max_request_bytes, bool) or not isinstance(max_request_bytes, int) or max_request_bytes <= 0:
            raise ClientError("INVALID_ARGUMENT", f"max_request_bytes must be a positive whole number, "
                                                  f"got {max_request_bytes!r}")
        if isinstance(min_evidence, bool) or not isinstance(min_evidence, (int, float)) or not 0 <= min_evidence <= 1:
            raise ClientError("INVALID_ARGUMENT", f"min_evidence must be a share of the sampled frames in [0, 1], "
                                                  f"got {min_evidence!r}")
        _check_frames(frames, per_second)

        self.min_evidence = float(min_evidence)
        self.frames = frames
        self.per_second = per_second
        self.input_format = input_format
        self.max_request_bytes = max_request_bytes
        self.overlap = bool(overlap)
        self.prefetch = bool(prefetch)
        self.max_pixels = int(max_pixels)  # larger images and video frames are refused before decoding
        self._threshold_arg, self._strategy_arg, self._margin_arg = threshold, strategy, margin
        self._detector = detector
        self._detector_lock = threading.Lock()
        self._state_lock = threading.Lock()

        self.transport: Transport = server if isinstance(server, Transport) else connect(server)
        self.model_name = self.transport.model_name
        try:
            self.metadata: ModelMetadata = self.transport.metadata()
            self._card: dict | None = None
            self._card_spec: str | os.PathLike | None = None  # what model_card named
            self.card_path: Path | None = None  # the card file in use
            self._apply_settings()
            if model_card is not None:
                self.use_model_card(model_card)
        except BaseException:
            self.transport.close()
            raise
        log.info("connected to %s (%s): model %s version %d, crop size %d, %s", self.transport.target,
                 self.transport.kind, self.metadata.name, self.metadata.version, self.crop_size, self.signature)

    # --- settings -------------------------------------------------------------------------------

    @property
    def crop_size(self) -> int:
        """S: the side of the face crops, from the served model's metadata."""
        return self.metadata.crop_size

    @property
    def model_version(self) -> int:
        """The version that answered the last metadata request."""
        return self.metadata.version

    def _apply_settings(self) -> None:
        """Threshold, strategy, margin and signature: the arguments, else the card, else defaults."""
        card = self._card or {}
        if self._threshold_arg is not None:
            self.threshold, self.threshold_source = float(self._threshold_arg), "argument"
        elif "threshold" in card:
            self.threshold, self.threshold_source = float(card["threshold"]), f"model card {self.card_path}"
        else:
            self.threshold, self.threshold_source = DEFAULT_THRESHOLD, "default (no model card)"
        self.strategy = self._strategy_arg or card.get("video_strategy") or DEFAULT_STRATEGY
        margin = self._margin_arg if self._margin_arg is not None else card.get("crop_margin")
        self.margin = float(DEFAULT_CROP_MARGIN if margin is None else margin)
        signature = SIGNATURE_BYTES if self.input_format == "jpeg" and self.metadata.accepts_bytes else SIGNATURE_PIXELS
        if self.input_format == "jpeg" and signature != getattr(self, "signature", SIGNATURE_BYTES):
            log.warning("model %s version %d has no usable %s signature; sending uint8 crops through %s",
                        self.metadata.name, self.metadata.version, SIGNATURE_BYTES, SIGNATURE_PIXELS)
        self.signature = signature

    def use_model_card(self, card: str | os.PathLike) -> None:
        """Take the threshold, crop margin and video strategy from a model card (explicit
        arguments still win). ``card``: the JSON, its version folder, or the model's folder of
        versions (the card of the version that answers is used)."""
        path = find_model_card(card, self.metadata.version)
        content = read_model_card(path)
        with self._state_lock:
            self._card_spec, self._card, self.card_path = card, content, path
            self._apply_settings()
        self._check_card()

    def use_repository_card(self, model_repository: str | os.PathLike, model_name: str | None = None) -> bool:
        """Use the card of the answering version from a local model repository when it is there
        (TensorFlow Serving does not serve model cards). True when a card was found."""
        folder = Path(model_repository) / (model_name or self.metadata.name) / str(self.metadata.version)
        if not (folder / MODEL_CARD_FILE).is_file():
            return False
        self.use_model_card(folder)
        return True

    def _check_card(self) -> None:
        card = self._card
        if card is None:
            return
        if card.get("version") not in (None, self.metadata.version):
            log.warning("model card %s is of version %s but version %d answers: its threshold may not fit",
                        self.card_path, card["version"], self.metadata.version)
        if card.get("crop_size") not in (None, self.crop_size):
            log.warning("model card %s says crop size %s but the served model takes %d: is it the right card?",
                        self.card_path, card["crop_size"], self.crop_size)

    def refresh(self) -> ModelMetadata:
        """Read the model's metadata again (after a new version was deployed). When the model
        card was given as the model's folder of versions, the new version's card is taken."""
        metadata = self.transport.metadata()
        card_path, card = self.card_path, self._card
        if self._card_spec is not None:
            try:
                found = find_model_card(self._card_spec, metadata.version)
                if found != card_path:
                    card_path, card = found, read_model_card(found)
            except ClientError as e:
                log.warning("keeping model card %s: %s", self.card_path, e.message)
        with self._state_lock:
            self.metadata, self.card_path, self._card = metadata, card_path, card
            self._apply_settings()
        self._check_card()
        return metadata

    # --- analysis -------------------------------------------------------------------------------

    def analyze(self, path: str | os.PathLike, *, frames: int | None = None,
                per_second: bool | None = None, keep_crops: bool = False) -> MediaResult:
        """Analyze an image or a video file, by its extension."""
        if check_media_file(path) == "image":
            return self.analyze_image(path, keep_crops=keep_crops)
        return self.analyze_video(path, frames=frames, per_second=per_second, keep_crops=keep_crops)

    def analyze_image(self, image, *, source: str | None = None, keep_crops: bool = False) -> MediaResult:
        """Analyze one image: a file path, encoded bytes (JPEG, PNG, ...) or an RGB uint8 array.

        ``source`` names it in the result (default: the path). With ``keep_crops`` every face
        result carries the crop that was scored (``FaceResult.crop``), e.g. for thumbnails."""
        if isinstance(image, np.ndarray):
            source = source or "<array>"
            frame = image_frame(image, source)
        elif isinstance(image, (bytes, bytearray, memoryview)):
            source = source or "<bytes>"
            try:
                frame = image_frame(decode_image(bytes(image), source, self.max_pixels), source)
            except MediaError as e:
                raise ClientError("INVALID_ARGUMENT", e.problem, source) from None
        else:
            source = source or str(image)
            try:
                check_media_file(image, "image")
            except ClientError as e:
                raise ClientError(e.status, e.message, source) from None
            try:
                frame = read_image_frame(image, max_pixels=self.max_pixels)
            except MediaError as e:
                raise ClientError("INVALID_ARGUMENT", e.problem, source) from None
            except OSError as e:
                raise ClientError("INVALID_ARGUMENT", f"cannot read: {e.strerror or e}", source) from None
        return self._analyze(source, "image", [frame], keep_crops)

    def analyze_video(self, path: str | os.PathLike, *, frames: int | None = None, per_second: bool | None = None,
                      source: str | None = None, keep_crops: bool = False) -> MediaResult:
        """Analyze a video file: ``frames`` evenly spaced frames (default: the client's), or with
        ``per_second`` one frame per second. ``source`` names it in the result (default: the
        path); ``keep_crops`` as for :meth:`analyze_image`."""
        frames = self.frames if frames is None else frames
        per_second = self.per_second if per_second is None else per_second
        _check_frames(frames, per_second)
        source = source or str(path)
        try:
            check_media_file(path, "video")
        except ClientError as e:
            raise ClientError(e.status, e.message, source) from None
        return self._analyze(source, "video", read_video_frames(path, frames=frames, per_second=per_second,
                                                                max_pixels=self.max_pixels), keep_crops)

    def _analyze(self, source: str, kind: str, frames: Iterable[Frame], keep_crops: bool = False) -> MediaResult:
        started = time.perf_counter()
        with self._state_lock:  # one consistent set of crop settings for the whole input
            margin, size, signature = self.margin, self.crop_size, self.signature
        times = StageTimes()
        sampled: list[tuple[int, float]] = []
        scoring = _Scoring(self, signature, times, overlap=self.overlap and kind == "video")
        if self.prefetch and kind == "video":
            frames = prefetch(frames, ahead=self._get_detector().batch_size)
        try:
            try:
                self._faces(frames, margin, size, sampled, scoring, times)
            except MediaError as e:
                raise ClientError("INVALID_ARGUMENT", e.problem, source) from None
            if not sampled:
                raise ClientError("INVALID_ARGUMENT", "no frame could be decoded", source)
            scores, version = scoring.finish()
        except ClientError as e:
            raise e.for_source(source) from None
        finally:
            scoring.close()
        faces = scoring.faces
        if faces and version != self.metadata.version:
            log.info("model %s now answers with version %s (was %d): reading its metadata again",
                     self.model_name, version, self.metadata.version)
            try:
                self.refresh()
            except ClientError as e:
                raise e.for_source(source) from None

        # The candidates were scored with the faces; the tracks decide which of them stay.
        links = select_faces(self._get_detector(), faces, [i for i, _ in sampled])
        found: dict[int, list[FaceResult]] = {}
        by_track: dict[int, list[tuple[int, float]]] = {}
        for link in links:
            face, score = faces[link.index], float(scores[link.index])
            found.setdefault(face.frame_index, []).append(
                FaceResult(box=tuple(int(v) for v in face.box), confidence=float(face.confidence),
                           fake_probability=score, track=link.track, rescued=link.rescued,
                           crop=face.crop if keep_crops else None))
            by_track.setdefault(link.track, []).append((face.frame_index, score))
        with self._state_lock:  # after scoring: the settings of the version that answered
            threshold, strategy = self.threshold, self.strategy
        frame_results = tuple(FrameResult(index=i, timestamp=t, faces=tuple(found.get(i, ()))) for i, t in sampled)
        frame_scores = [f.fake_probability for f in frame_results if f.faces]
        if frame_scores:
            score = video_score(frame_scores, strategy)
            verdict = FAKE if score >= threshold else REAL
        else:
            score, verdict = None, NO_FACE
        tracks = []
        for track_id, members in sorted(by_track.items()):
            track_score = video_score([s for _, s in members], strategy)
            tracks.append(TrackResult(id=track_id, verdict=FAKE if track_score >= threshold else REAL,
                                      fake_probability=track_score, frames=len(members),
                                      first_frame=min(i for i, _ in members), last_frame=max(i for i, _ in members)))
        times.total = time.perf_counter() - started
        log.debug("%s: %d frames, %d faces; decode %.3f s, detection %.3f s, encode %.3f s, requests %.3f s "
                  "(%d), waiting %.3f s, total %.3f s", source, len(sampled), len(faces), times.decode,
                  times.detection, times.encode, times.requests, times.predict_calls, times.waiting, times.total)
        return MediaResult(source=source, kind=kind, verdict=verdict, fake_probability=score, threshold=threshold,
                           model_name=self.metadata.name, model_version=version if links else None,
                           frames=frame_results, strategy=strategy, tracks=tuple(tracks),
                           min_evidence=self.min_evidence, timings=times)

    def _get_detector(self) -> FaceDetector:
        with self._detector_lock:
            if self._detector is None:
                self._detector = FaceDetector()
            return self._detector

    def _faces(self, frames: Iterable[Frame], margin: float, size: int, sampled: list, scoring: "_Scoring",
               times: StageTimes) -> None:
        """Detect and crop the faces of the frames, a detector batch at a time, handing each
        batch's faces to ``scoring`` (frames are let go once cropped: a long video never sits in
        memory whole)."""
        detector = self._get_detector()
        batch: list[Frame] = []

        def flush():
            t0 = time.perf_counter()
            with self._detector_lock:  # MTCNN is not safe to call from two threads at once
                found, _ = faces_in_frames(detector, batch, margin, size, candidates=True)
            times.detection += time.perf_counter() - t0
            batch.clear()
            scoring.add(found)

        frames = iter(frames)
        try:
            while True:
                t0 = time.perf_counter()  # with prefetch: the wait for a frame decoded ahead
                frame = next(frames, None)
                times.decode += time.perf_counter() - t0
                if frame is None:
                    break
                sampled.append((frame.index, frame.timestamp))
                batch.append(frame)
                if len(batch) >= detector.batch_size:
                    flush()
            if batch:
                flush()
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # a failed request stops the decoding thread too

    # --- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection to the server."""
        self.transport.close()

    def __enter__(self) -> "DeepfakeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"DeepfakeClient(connect({self.transport.target!r}, {self.model_name!r}, transport={self.transport.kind!r}), "
                f"version={self.metadata.version}, crop_size={self.crop_size}, threshold={self.threshold:g})")


class _Scoring:
    """The Predict calls of one input, scores kept in the order of the faces.

    Without overlap the faces are kept until the input is read, then sent in as few requests as
    the size limit allows. With overlap, each detector batch's faces are sent by one background
    thread while the caller decodes and detects the next frames; at most MAX_PENDING_CHUNKS
    chunks wait behind the caller (it blocks beyond that), and the faces of the last batch are
    sent by the caller once the others are answered. Either way one request is in flight at a
    time, so every request after the first asks for the version that answered the first (one
    input is judged by one version even during a roll-out), and a failed request stops the
    ones after it and surfaces in the caller as the ClientError it raised.
    """

    def __init__(self, client: DeepfakeClient, signature: str, times: StageTimes, overlap: bool):
        self.client, self.signature, self.times, self.overlap = client, signature, times, overlap
        self.faces: list[Face] = []
        self.version: int | None = None
        self._scores: dict[int, np.ndarray] = {}  # first face index of a chunk -> its scores
        self._sent = 0  # faces[:_sent] are sent or queued
        self._pending: deque[Future] = deque()
        self._executor: ThreadPoolExecutor | None = None
        self._failed = threading.Event()

    def add(self, faces: list[Face]) -> None:
        """The faces of one more detector batch, in frame order."""
        self.faces.extend(faces)
        if not self.overlap or self._sent == len(self.faces):
            return
        while self._pending and self._pending[0].done():  # a failure stops the input now, not at its end
            self._wait_oldest()
        while len(self._pending) >= MAX_PENDING_CHUNKS:
            self._wait_oldest()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dfdetect-predict")
        start, self._sent = self._sent, len(self.faces)
        self._pending.append(self._executor.submit(self._send, start, self._sent))

    def finish(self) -> tuple[np.ndarray, int | None]:
        """Every face's score, in order, and the version that answered (None without faces)."""
        while self._pending:
            self._wait_oldest()
        if self._sent < len(self.faces):
            start, self._sent = self._sent, len(self.faces)
            self._send(start, self._sent)
        if not self.faces:
            return np.zeros(0, np.float32), None
        scores = np.concatenate([self._scores[k] for k in sorted(self._scores)])
        if scores.size != len(self.faces):  # a broken invariant, never a server's answer
            raise ClientError("INTERNAL", f"{scores.size} scores for {len(self.faces)} faces")
        return scores, self.version

    def close(self) -> None:
        """Drop queued chunks and wait for the one in flight (bounded by the call deadline)."""
        if self._pending:  # the input failed: what is still queued must not be sent
            self._failed.set()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _wait_oldest(self) -> None:
        t0 = time.perf_counter()
        try:
            self._pending.popleft().result()
        finally:
            self.times.waiting += time.perf_counter() - t0

    def _send(self, start: int, end: int) -> None:
        """Score faces[start:end] in as few requests as the size limit allows."""
        from dfdetect.faces.crops import encode_jpeg

        if self._failed.is_set():  # an earlier chunk failed: the caller raises its error
            return
        try:
            client, times = self.client, self.times
            crops = [f.crop for f in self.faces[start:end]]
            binary = self.signature == SIGNATURE_BYTES
            t0 = time.perf_counter()
            payloads = [encode_jpeg(c) for c in crops] if binary else crops
            times.encode += time.perf_counter() - t0
            sizes = [client.transport.item_bytes(len(p) if binary else p.nbytes, binary) for p in payloads]
            for a, b in pack_requests(sizes, client.max_request_bytes):
                t0 = time.perf_counter()
                if binary:
                    part, answered = client.transport.predict_bytes(payloads[a:b], self.version)
                else:
                    part, answered = client.transport.predict_pixels(np.stack(payloads[a:b]), self.version)
                times.requests += time.perf_counter() - t0
                times.predict_calls += 1
                self._scores[start + a] = part
                if self.version is None:
                    self.version = answered
        except BaseException:
            self._failed.set()
            raise
