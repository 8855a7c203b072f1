import threading

import numpy as np
import pytest

from dfdetect.errors import MediaError
from dfdetect.faces.frames import (FramePool, media_kind, prefetch, probe_video, read_frames, read_image_frame,
                                   read_video_frames, resize_factor, resize_frame, sample_indices, write_video)


@pytest.mark.parametrize("width, factor", [
    (3840, 1 / 3), (1920, 1 / 3), (1901, 1 / 3),   # wider than 1900: a third
    (1900, 1 / 2), (1280, 1 / 2), (1000, 1 / 2),   # 1000 to 1900: a half
    (999, 1.0), (640, 1.0), (300, 1.0),            # otherwise unchanged
    (299, 2.0), (160, 2.0), (1, 2.0),              # narrower than 300: doubled
])
def test_resize_rule(width, factor):
    assert resize_factor(width) == pytest.approx(factor)


def test_resize_rule_rejects_empty_width():
    with pytest.raises(ValueError, match="width"):
        resize_factor(0)


@pytest.mark.parametrize("shape, expected", [((1080, 1920), (360, 640)), ((720, 1280), (360, 640)),
                                             ((240, 320), (240, 320)), ((120, 160), (240, 320))])
def test_resize_frame_keeps_aspect_ratio(shape, expected):
    image = np.zeros((*shape, 3), np.uint8)
    resized, _ = resize_frame(image)
    assert resized.shape[:2] == expected


def test_evenly_spaced_sampling():
    idx = sample_indices(300, 30.0, frames=32)
    assert len(idx) == 32 and idx[0] == 0 and idx[-1] == 299
    gaps = np.diff(idx)
    assert gaps.min() >= 9 and gaps.max() <= 10


def test_short_video_gives_every_frame():
    assert sample_indices(5, 30.0, frames=32) == [0, 1, 2, 3, 4]
    assert sample_indices(0, 30.0, frames=32) == []


def test_per_second_sampling():
    assert sample_indices(300, 30.0, per_second=True) == list(range(0, 300, 30))
    assert sample_indices(95, 30.0, per_second=True) == [0, 30, 60, 90]
    with pytest.raises(ValueError, match="frame rate"):
        sample_indices(100, 0.0, per_second=True)


def _numbered_video(path, count=20, fps=10.0):
    """Each frame a flat grey whose level encodes its index (10 levels apart)."""
    write_video(path, [np.full((96, 128, 3), 10 * i + 20, np.uint8) for i in range(count)], fps)


def test_reads_exactly_the_sampled_frames(tmp_path):
    path = tmp_path / "numbered.mp4"
    _numbered_video(path)
    frames = list(read_video_frames(path, frames=5))
    assert [f.index for f in frames] == [0, 5, 10, 14, 19]
    for f in frames:
        # The grey level proves the decoder really returned frame f.index (the codec is lossy: +-4).
        assert abs(float(f.image.mean()) - (10 * f.index + 20)) < 4, f.index
        assert f.timestamp == pytest.approx(f.index / 10.0)
        assert f.image.shape == (192, 256, 3) and f.scale == 2.0  # 128 px wide: doubled


def test_probe_video(tmp_path):
    path = tmp_path / "numbered.mp4"
    _numbered_video(path, count=12, fps=12.0)
    info = probe_video(path)
    assert (info.frame_count, info.fps, info.width, info.height) == (12, 12.0, 128, 96)


def test_corrupt_video_is_a_media_error(tmp_path):
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(b"\x00\x01 definitely not a video" * 100)
    with pytest.raises(MediaError, match="corrupt.mp4"):
        list(read_video_frames(path))


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty.mp4"):
        list(read_video_frames(empty))
    with pytest.raises(MediaError, match="file not found"):
        list(read_video_frames(tmp_path / "missing.mp4"))


def test_image_as_one_frame(tmp_path, astronaut):
    import cv2

    path = tmp_path / "face.png"
    cv2.imwrite(str(path), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    frame = read_image_frame(path)
    assert frame.index == 0 and frame.image.shape == (512, 512, 3)
    np.testing.assert_array_equal(frame.image, astronaut)  # PNG is lossless; RGB order kept
    assert [f.index for f in read_frames(path)] == [0]


def test_corrupt_image_and_unknown_type(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(MediaError, match="cannot decode as an image"):
        read_image_frame(bad)
    with pytest.raises(MediaError, match="unsupported file type .txt"):
        media_kind(tmp_path / "notes.txt")


def test_prefetch_runs_ahead_in_order_and_raises_where_it_failed():
    produced = []
    ahead_reached = threading.Event()

    def items():
        for i in range(6):
            produced.append(i)
            if len(produced) == 4:
                ahead_reached.set()
            if i == 5:
                raise MediaError("clip.mp4", "frame 5 is corrupt")
            yield i

    got = []
    stream = prefetch(items(), ahead=2)
    got.append(next(stream))
    # While the first item is used, the producer goes on: two waiting in the queue, one in hand.
    assert ahead_reached.wait(timeout=30), f"the producer did not run ahead: produced {produced}"
    with pytest.raises(MediaError, match="frame 5 is corrupt"):
        for item in stream:
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_prefetch_closed_early_stops_the_producer_and_its_generator():
    finished = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            finished.set()

    stream = prefetch(endless(), ahead=3)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()
    assert finished.is_set(), "closing the prefetching iterator must close the source (release the capture)"
    assert not any(t.name == "dfdetect-decode" for t in threading.enumerate())
    with pytest.raises(ValueError, match="ahead must be at least 1"):
        next(prefetch([], ahead=0))


def test_frame_pool_maps_in_order_on_its_threads_and_raises_the_first_failure():
    seen = set()

    def work(k):
        seen.add(threading.current_thread().name)
        return k * k

    pool = FramePool(2)
    before = threading.active_count()
    with pool.running():
        assert threading.active_count() == before + 2
        with pool.running():  # re-entrant: the outer block's threads
            assert pool.threads == 2 and pool.map(work, range(20)) == [k * k for k in range(20)]
        assert threading.active_count() == before + 2
    assert threading.active_count() == before  # no thread outlives the block
    assert seen and all(name.startswith("dfdetect-frames") for name in seen)
    seen.clear()
    assert pool.map(work, range(5)) == [0, 1, 4, 9, 16] and seen == {threading.current_thread().name}
    with FramePool(1).running() as alone:
        assert alone.map(work, range(3)) == [0, 1, 4] and seen == {threading.current_thread().name}
    assert FramePool(0).threads >= 1

    def fail(k):
        if k == 3:
            raise ValueError("frame 3 is broken")
        return k

    with pool.running(), pytest.raises(ValueError, match="frame 3 is broken"):
        pool.map(fail, range(8))
    assert threading.active_count() == before
    with pytest.raises(ValueError, match="threads must be >= 0"):
        FramePool(-1)


def test_the_detector_leaves_no_thread_behind_and_gevent_can_patch_after_it():
    """A process that found faces can then be patched by gevent (as importing locust does) and
    exit: the detector's threads live for a batch only; under gevent they are not started."""
    import subprocess
    import sys

    script = """
import threading
import numpy as np
from dfdetect.faces.detection import FaceDetector
from dfdetect.faces.frames import FramePool
detector = FaceDetector(threads=2)
before = threading.active_count()
detector.detect([np.zeros((120, 160, 3), np.uint8)] * 4)
assert threading.active_count() == before, threading.enumerate()
from gevent import monkey
monkey.patch_all()
pool = FramePool(2)
with pool.running():
    assert set(pool.map(lambda k: threading.current_thread().name, range(4))) == {threading.current_thread().name}
detector.detect([np.zeros((120, 160, 3), np.uint8)] * 4)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
