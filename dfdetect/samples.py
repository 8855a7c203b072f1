"""Face photographs that ship inside installed packages, and their face boxes.

scikit-image's astronaut and matplotlib's Grace Hopper: the demo dataset, the benchmarks, the
load tests and the tests make their faces from them, with no network.
"""

from __future__ import annotations

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
