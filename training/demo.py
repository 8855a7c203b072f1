"""The demo dataset: a few short videos in DFDC layout, generated on the spot.

Real videos are made from face photographs that ship inside installed packages (scikit-image's
astronaut, matplotlib's Grace Hopper), each given its own look (mirroring, colour) and moved,
zoomed and relit frame to frame. Each real video has a fake twin with the same motion whose
face was self-blended (see blending.py). A metadata.json links every fake to its original, so
the demo goes through exactly the code path of real DFDC data.

It is deterministic for a seed, needs no network, and takes seconds. It is a demo: its scores
say the pipeline works, not that the detector would catch real deepfakes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from dfdetect.faces.frames import write_video
from dfdetect.samples import face_boxes, face_photographs
from dfdetect.training.blending import DEMO, self_blend

log = logging.getLogger(__name__)

STAMP = "DEMO.json"
DEFAULT_GROUPS = 40
DEFAULT_FRAMES = 12
DEFAULT_FPS = 10.0
DEFAULT_SIZE = (320, 240)  # width, height


def _look(photo: np.ndarray, box, rng: np.random.Generator):
    """A video's own look: maybe mirrored, recoloured."""
    x, y, w, h = box
    if rng.random() < 0.5:
        photo = photo[:, ::-1].copy()
        x = photo.shape[1] - x - w
    tint = rng.uniform(0.85, 1.15, size=3)
    photo = np.clip(photo.astype(np.float32) * tint, 0, 255).astype(np.uint8)
    return photo, (x, y, w, h)


def _render(photo: np.ndarray, box, t: float, motion: dict, size) -> np.ndarray:
    """Frame at time t in [0, 1]: the face centred with some pan, zoom, tilt and light."""
    width, height = size
    x, y, w, h = box
    zoom = motion["zoom"] * (1 + 0.12 * math.sin(2 * math.pi * (motion["fz"] * t + motion["pz"])))
    scale = zoom * height * 0.42 / h
    angle = 5.0 * math.sin(2 * math.pi * (motion["fr"] * t + motion["pr"]))
    cx = width / 2 + 0.12 * width * math.sin(2 * math.pi * (motion["fx"] * t + motion["px"]))
    cy = height / 2 + 0.08 * height * math.sin(2 * math.pi * (motion["fy"] * t + motion["py"]))
    matrix = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), angle, scale)
    matrix[0, 2] += cx - (x + w / 2)
    matrix[1, 2] += cy - (y + h / 2)
    frame = cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    light = 1.0 + 0.18 * math.sin(2 * math.pi * (motion["fl"] * t + motion["pl"]))
    return np.clip(frame.astype(np.float32) * light, 0, 255).astype(np.uint8)


def make_demo_dataset(out: str | os.PathLike, groups: int = DEFAULT_GROUPS, frames: int = DEFAULT_FRAMES,
                      fps: float = DEFAULT_FPS, size=DEFAULT_SIZE, seed: int = 0) -> Path:
    """Write the demo dataset (``groups`` real videos and their fakes) unless it is already there."""
    out = Path(out)
    settings = {"groups": groups, "frames": frames, "fps": fps, "size": list(size), "seed": seed}
    stamp = out / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()) == settings:
        log.info("demo dataset already at %s", out)
        return out
    if groups < 2 or frames < 1:
        raise ValueError(f"the demo needs at least 2 groups and 1 frame, got {groups} and {frames}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    named = face_photographs()
    photos = [(name, photo, box) for (name, photo), box in zip(named, face_boxes([p for _, p in named]))]
    metadata = {}
    for g in range(groups):
        name, photo, box = photos[g % len(photos)]
        look, look_box = _look(photo, box, rng)
        fake_look = self_blend(look, look_box, rng, DEMO)
        motion = {"zoom": rng.uniform(0.85, 1.15), **{k: rng.uniform(0.3, 1.2) for k in ("fz", "fr", "fx", "fy", "fl")},
                  **{k: rng.uniform(0, 1) for k in ("pz", "pr", "px", "py", "pl")}}
        times = [i / max(1, frames - 1) for i in range(frames)]
        real_name, fake_name = f"demo_{name}_{g:02d}_real.mp4", f"demo_{name}_{g:02d}_fake.mp4"
        write_video(tmp / real_name, (_render(look, look_box, t, motion, size) for t in times), fps)
        write_video(tmp / fake_name, (_render(fake_look, look_box, t, motion, size) for t in times), fps)
        metadata[real_name] = {"label": "REAL", "split": "train"}
        metadata[fake_name] = {"label": "FAKE", "split": "train", "original": real_name}
    (tmp / "metadata.json").write_text(json.dumps(metadata, indent=1))
    (tmp / STAMP).write_text(json.dumps(settings))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    log.info("demo dataset: %d videos (%d real, %d fake) written to %s", 2 * groups, groups, groups, out)
    return out
