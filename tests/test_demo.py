import json

import numpy as np

from dfdetect.faces.frames import read_video_frames
from dfdetect.training.datasets import load_dataset
from dfdetect.training.demo import make_demo_dataset


def test_demo_dataset_is_dfdc_layout_and_deterministic(tmp_path, detector):
    a = make_demo_dataset(tmp_path / "a", groups=2, frames=4)
    b = make_demo_dataset(tmp_path / "b", groups=2, frames=4)
    meta = json.loads((a / "metadata.json").read_text())
    assert meta == json.loads((b / "metadata.json").read_text())
    fakes = {k: v for k, v in meta.items() if v["label"] == "FAKE"}
    assert len(fakes) == 2 and all(v["original"] in meta for v in fakes.values())

    ds = load_dataset(a)
    assert ds.layout == "dfdc" and len(ds.items) == 4 and not ds.problems

    name = sorted(fakes)[0]
    fa = [f.image for f in read_video_frames(a / name, frames=4)]
    fb = [f.image for f in read_video_frames(b / name, frames=4)]
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb))  # same seed, same pixels

    # The fake differs from its original only around the face, which MTCNN still finds.
    real = [f.image for f in read_video_frames(a / fakes[name]["original"], frames=4)]
    (found,) = detector.detect([fa[0]])
    assert found
    x, y, w, h = found[0].box
    diff = np.abs(fa[0].astype(int) - real[0].astype(int)).sum(axis=2)
    assert diff[y:y + h, x:x + w].mean() > 3 * (diff.mean() + 1e-6) / 2


def test_demo_is_reused_when_present(tmp_path):
    a = make_demo_dataset(tmp_path / "a", groups=2, frames=2)
    stamp = (a / "metadata.json").stat().st_mtime_ns
    make_demo_dataset(tmp_path / "a", groups=2, frames=2)
    assert (a / "metadata.json").stat().st_mtime_ns == stamp
