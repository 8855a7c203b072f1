"""Shared fixtures: real photographs of faces, tiny generated videos, one MTCNN detector."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real photograph of a face (RGB), shipped inside scikit-image."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def photos():
    from dfdetect.training.demo import face_photographs

    return dict(face_photographs())


@pytest.fixture(scope="session")
def detector():
    from dfdetect.training.faces import FaceDetector

    return FaceDetector()


def face_frames(photo: np.ndarray, count: int, size=(320, 240)) -> list[np.ndarray]:
    """Frames of a face photograph panning slowly: MTCNN finds the face in each."""
    w, h = size
    frames = []
    for i in range(count):
        scale = h / photo.shape[0] * 1.6
        m = np.float32([[scale, 0, -60 * scale + 2 * i], [0, scale, -10 * scale]])
        frames.append(cv2.warpAffine(photo, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    return frames


def blank_frames(count: int, size=(320, 240)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.full((size[1], size[0], 3), 90 + i, np.uint8) + rng.integers(0, 5, (size[1], size[0], 3), dtype=np.uint8)
            for i in range(count)]


def write_dfdc(root: Path, videos: dict[str, dict], frames: dict[str, list[np.ndarray]] | None = None,
               fps: float = 10.0) -> Path:
    """A DFDC-layout folder: metadata.json plus an mp4 per entry (from ``frames`` or raw bytes)."""
    from dfdetect.training.frames import write_video

    root.mkdir(parents=True, exist_ok=True)
    for name, content in (frames or {}).items():
        if isinstance(content, bytes):
            (root / name).write_bytes(content)
        else:
            write_video(root / name, content, fps)
    (root / "metadata.json").write_text(json.dumps(videos))
    return root
