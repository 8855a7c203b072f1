"""Self-blending: a fake made from a real face by blending a altered copy of it back onto itself.

The idea of Self-Blended Images (Shiohara and Yamasaki, CVPR 2022): take a face, make a slightly
warped, recoloured and re-filtered copy of it, and blend the copy's face region onto the
original through a soft mask. The result carries the traces every face swap leaves (a blending
boundary, a colour mismatch, a change of sharpness) without any identity change, so a detector
learns those traces instead of the identities of one dataset.

Used twice: by the demo-data generator (strong, visible blends) and by training as on-the-fly
pseudo-fakes from real crops (subtler, randomised).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class BlendStrength:
    """Ranges the random alterations are drawn from."""

    colour_shift: float  # max per-channel offset, in pixel values
    gain: float  # max relative per-channel gain change
    warp_scale: float  # max relative scale change of the copy
    warp_shift: float  # max shift of the copy, as a fraction of the face size
    blend: tuple[float, float]  # range of the mask's peak opacity
    mask_scale: tuple[float, float]  # mask ellipse size relative to the face box
    colour_shift_min: float = 0.0  # least offset of the strongest channel (0: may be none)
    smooth: tuple[float, float] | None = None  # always blur with a sigma in this range (as a
    # generator's output is smoother than the camera's); None: blur or sharpen at random


# Demo fakes: plainly visible (a colour mismatch of at least 25 levels and a smoothed face), so a
# small model trained for minutes on a tiny demo set can learn them.
DEMO = BlendStrength(colour_shift=40.0, gain=0.15, warp_scale=0.06, warp_shift=0.04,
                     blend=(0.85, 1.0), mask_scale=(0.9, 1.1), colour_shift_min=25.0, smooth=(1.5, 2.5))
# Training pseudo-fakes: the subtler range of the paper's augmentations.
TRAINING = BlendStrength(colour_shift=20.0, gain=0.12, warp_scale=0.05, warp_shift=0.03,
                         blend=(0.5, 1.0), mask_scale=(0.8, 1.1))


def soft_face_mask(shape, box, rng: np.random.Generator, scale_range=(0.9, 1.1)) -> np.ndarray:
    """A blurred ellipse over the face box: 1 inside, fading to 0 at the boundary (float32 HxW)."""
    h, w = shape[:2]
    x, y, bw, bh = box
    mask = np.zeros((h, w), np.float32)
    centre = (int(round(x + bw / 2)), int(round(y + bh / 2)))
    axes = (max(2, int(bw * 0.5 * rng.uniform(*scale_range))), max(2, int(bh * 0.55 * rng.uniform(*scale_range))))
    cv2.ellipse(mask, centre, axes, 0.0, 0, 360, 1.0, thickness=-1)
    # Blur proportional to the face, odd kernel: the soft boundary is what the detector must see.
    k = max(3, int(min(bw, bh) * rng.uniform(0.15, 0.35)) | 1)
    return cv2.GaussianBlur(mask, (k, k), 0)


def _alter(image: np.ndarray, box, rng: np.random.Generator, s: BlendStrength) -> np.ndarray:
    """The copy that gets blended: recoloured, sharpened or blurred, slightly warped."""
    out = image.astype(np.float32)
    gain = 1.0 + rng.uniform(-s.gain, s.gain, size=3)
    shift = rng.uniform(-s.colour_shift, s.colour_shift, size=3)
    strongest = int(np.argmax(np.abs(shift)))
    if abs(shift[strongest]) < s.colour_shift_min:
        shift[strongest] = np.copysign(rng.uniform(s.colour_shift_min, s.colour_shift), shift[strongest])
    out = out * gain + shift
    if s.smooth is not None:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=rng.uniform(*s.smooth))
    elif rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=rng.uniform(0.8, 1.6))
    else:
        blurred = cv2.GaussianBlur(out, (0, 0), sigmaX=1.0)
        out = out + rng.uniform(0.5, 1.5) * (out - blurred)  # unsharp mask
    x, y, bw, bh = box
    centre = (x + bw / 2, y + bh / 2)
    scale = 1.0 + rng.uniform(-s.warp_scale, s.warp_scale)
    matrix = cv2.getRotationMatrix2D(centre, 0.0, scale)
    matrix[:, 2] += rng.uniform(-s.warp_shift, s.warp_shift, size=2) * np.array([bw, bh])
    out = cv2.warpAffine(out, matrix, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REFLECT)
    return np.clip(out, 0, 255)


def self_blend(image: np.ndarray, box, rng: np.random.Generator,
               strength: BlendStrength = TRAINING) -> np.ndarray:
    """A self-blended fake of ``image`` (RGB uint8) whose face lies in ``box`` (x, y, w, h)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"self_blend needs an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    x, y, bw, bh = (int(v) for v in box)
    if bw <= 0 or bh <= 0:
        raise ValueError(f"face box must have a positive size, got {box}")
    altered = _alter(image, (x, y, bw, bh), rng, strength)
    mask = soft_face_mask(image.shape, (x, y, bw, bh), rng, strength.mask_scale)
    mask *= rng.uniform(*strength.blend)
    mask = mask[..., None]
    blended = mask * altered + (1.0 - mask) * image.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
