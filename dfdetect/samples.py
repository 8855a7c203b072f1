"""Face photographs that ship inside installed packages, and generated footage made from them.

scikit-image's astronaut and matplotlib's Grace Hopper: the demo dataset, the benchmarks, the
load tests and the tests make their faces from them, with no network. ``footage`` puts them into
generated video as real footage shows faces: dim, low in contrast, noisy, small, moving, two
people, or nobody (the face detection benchmark and tests measure recall on it).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def face_photographs() -> list[tuple[str, np.ndarray]]:
    """Photographs of real faces shipped inside installed packages, as RGB uint8 arrays."""
    from matplotlib import cbook
    from skimage import data

    photos = [("astronaut", data.astronaut())]
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        bgr = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    photos.append(("grace_hopper", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return photos


def face_boxes(photos: list[np.ndarray]) -> list[tuple[int, int, int, int]]:
    """The face box of each photograph, found with the product's detector (one, for all of them)."""
    from dfdetect.faces.detection import FaceDetector

    detector = FaceDetector(min_confidence=0.9)
    boxes = []
    for photo in photos:
        found = detector.detect([photo])[0]
        if not found:
            raise RuntimeError("the detector found no face in a packaged photograph")
        boxes.append(found[0].box)
    return boxes


# --- generated footage: the hard cases of real video ---------------------------------------------

@dataclass(frozen=True)
class FootageSpec:
    """How a generated video looks. Frames are made at the detection size (after the resize rule)."""

    people: int = 1  # faces in the frame: 0, 1 or 2 (the two demo photographs)
    face_height: float = 110.0  # face box height, in pixels of the frame
    luminance: float | None = None  # mean luminance of the frame (0-255); None: as lit
    contrast: float = 1.0  # contrast around the frame's mean (1: unchanged)
    noise: float = 0.0  # sensor noise, standard deviation in grey levels
    moving: bool = False  # faces cross the frame (with motion blur) instead of swaying in place


FOOTAGE = {
    "clean": FootageSpec(),
    "two_people": FootageSpec(people=2, face_height=80),
    "dark": FootageSpec(luminance=40, contrast=0.35, noise=6),
    "dark_small": FootageSpec(luminance=40, contrast=0.35, noise=6, face_height=40),
    "dark_moving": FootageSpec(luminance=40, contrast=0.35, noise=6, moving=True),
    "dark_two_people": FootageSpec(people=2, luminance=40, contrast=0.35, noise=6, face_height=80),
    "dark_faceless": FootageSpec(people=0, luminance=40, contrast=0.35, noise=6),
}
HARD_FOOTAGE = tuple(name for name in FOOTAGE if name.startswith("dark"))
MOTION_BLUR = 5  # pixels of horizontal motion blur on moving faces


@dataclass(frozen=True)
class Footage:
    """A generated video: its frames (RGB) and, per frame, the true box of each person's face."""

    name: str
    frames: list  # H x W x 3 uint8 RGB
    faces: list  # per frame: [(x, y, w, h) for each person, in person order]


def _wall(size, rng: np.random.Generator) -> np.ndarray:
    """A lit room's wall: brick texture, tinted, brighter towards a lamp on one side."""
    from skimage import data

    width, height = size
    brick = cv2.resize(data.brick(), (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    tint = rng.uniform(0.7, 1.1, size=3)
    light = np.linspace(rng.uniform(0.6, 0.8), rng.uniform(1.0, 1.2), width, dtype=np.float32)[None, :, None]
    return np.clip(brick[..., None] * tint * light * 0.9 + 25, 0, 255)


def _place(canvas: np.ndarray, photo: np.ndarray, box, face_height: float, centre) -> tuple[np.ndarray, tuple]:
    """The photograph's head and shoulders pasted (soft-edged) with its face ``face_height`` tall at
    ``centre``; returns the frame and the face's box in it."""
    x, y, w, h = box
    s = face_height / h
    cx, cy = centre
    matrix = np.float32([[s, 0, cx - s * (x + w / 2)], [0, s, cy - s * (y + h / 2)]])
    height, width = canvas.shape[:2]
    person = cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    mask = np.zeros(photo.shape[:2], np.float32)
    cv2.ellipse(mask, (int(x + w / 2), int(y + h * 0.9)), (int(w * 1.3), int(h * 2.0)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, w * 0.12))
    alpha = cv2.warpAffine(mask, matrix, (width, height))[..., None]
    frame = canvas * (1 - alpha) + person.astype(np.float32) * alpha
    return frame, (int(round(cx - s * w / 2)), int(round(cy - s * h / 2)), int(round(s * w)), int(round(s * h)))


def footage(name: str, frames: int = 32, size=(640, 360), seed: int = 0,
            spec: FootageSpec | None = None) -> Footage:
    """One of the generated videos of FOOTAGE, deterministic for a seed (or, with ``spec``, a
    video made to that spec, called ``name``).

    The demo faces in a room: as lit (``clean``), or as in the footage face detection finds
    hard: dim (mean luminance about 40 of 255), low in contrast, with sensor noise, small (a face
    40 px tall) or moving across the frame with motion blur, two people, or nobody at all.
    """
    if spec is None and name not in FOOTAGE:
        raise ValueError(f"unknown footage {name!r}; expected one of {', '.join(FOOTAGE)}")
    spec = spec or FOOTAGE[name]
    rng = np.random.default_rng(seed)
    photos = [photo for _, photo in face_photographs()]
    boxes = _photo_face_boxes()
    width, height = size
    wall = _wall(size, rng)
    phases = rng.uniform(0, 2 * np.pi, size=2)
    out, truth = [], []
    for i in range(frames):
        t = i / max(1, frames - 1)
        frame, faces = wall.copy(), []
        for person in range(spec.people):
            across = (0.5 if spec.people == 1 else 0.28 + 0.44 * person) * width
            if spec.moving:  # across the frame and back, bobbing
                cx = across + 0.3 * width * np.sin(2 * np.pi * t + phases[person]) * (0.6 if spec.people > 1 else 1)
                cy = height * (0.45 + 0.08 * np.cos(4 * np.pi * t + phases[person]))
            else:  # a person standing: a slight sway
                cx = across + 0.02 * width * np.sin(2 * np.pi * t + phases[person])
                cy = height * 0.45 + 0.01 * height * np.cos(2 * np.pi * t + phases[person])
            frame, face = _place(frame, photos[person % 2], boxes[person % 2], spec.face_height, (cx, cy))
            faces.append(face)
        if spec.moving:
            kernel = np.zeros((MOTION_BLUR, MOTION_BLUR), np.float32)
            kernel[MOTION_BLUR // 2, :] = 1.0 / MOTION_BLUR
            frame = cv2.filter2D(frame, -1, kernel)
        if spec.contrast != 1.0:
            frame = (frame - frame.mean()) * spec.contrast + frame.mean()
        if spec.luminance is not None:
            luma = frame @ np.float32([0.299, 0.587, 0.114])
            frame = frame * (spec.luminance / max(1.0, float(luma.mean())))
        if spec.noise:
            frame = frame + rng.normal(0, spec.noise, frame.shape).astype(np.float32)
        out.append(np.clip(frame, 0, 255).astype(np.uint8))
        truth.append(faces)
    return Footage(name=name, frames=out, faces=truth)


_BOXES: list | None = None


def _photo_face_boxes() -> list:
    """The face boxes of the demo photographs (found once per process)."""
    global _BOXES
    if _BOXES is None:
        _BOXES = face_boxes([photo for _, photo in face_photographs()])
    return _BOXES
