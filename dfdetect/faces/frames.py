"""Frames from videos and images: sampling, decoding and the resize rule.

Training and the client both read media through this module, so a face is seen at the same
scale in both.

Sampling happens before decoding at full cost: frames that are not sampled are only grabbed
(the codec advances) and never converted to RGB or copied.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import cv2
import numpy as np

from dfdetect.errors import MediaError
from dfdetect.images import DEFAULT_MAX_PIXELS, too_many_pixels

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

DEFAULT_FRAMES = 32

T = TypeVar("T")
R = TypeVar("R")


def media_kind(path: str | os.PathLike) -> str:
    """"video" or "image", from the file name; MediaError for anything else."""
    ext = Path(path).suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    raise MediaError(
        path,
        f"unsupported file type {ext or '(none)'}; expected a video "
        f"({', '.join(sorted(VIDEO_EXTENSIONS))}) or an image ({', '.join(sorted(IMAGE_EXTENSIONS))})",
    )


def resize_factor(width: int) -> float:
    """The resize rule: how much to scale a frame of this width before face detection.

    Wider than 1900 px: 1/3. From 1000 to 1900 px: 1/2. Narrower than 300 px: x2.
    Otherwise unchanged. Detection on big frames is slow and gains nothing for faces of the
    size deepfakes are made at; tiny frames are enlarged so MTCNN's smallest face still fits.
    """
    if width <= 0:
        raise ValueError(f"frame width must be positive, got {width}")
    if width > 1900:
        return 1 / 3
    if width >= 1000:
        return 1 / 2
    if width < 300:
        return 2.0
    return 1.0


def resize_frame(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Apply the resize rule (aspect ratio kept); returns the frame and the factor used."""
    h, w = image.shape[:2]
    factor = resize_factor(w)
    if factor == 1.0:
        return image, factor
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation), factor


def sample_indices(frame_count: int, fps: float, frames: int | None = DEFAULT_FRAMES,
                   per_second: bool = False) -> list[int]:
    """Indices of the frames to sample from a video.

    ``frames`` evenly spaced frames (first and last included), or with ``per_second`` one
    frame at the start of every second. A video shorter than ``frames`` gives every frame.
    """
    if frame_count <= 0:
        return []
    if per_second:
        if fps <= 0:
            raise ValueError(f"per-second sampling needs a positive frame rate, got {fps}")
        seconds = int(np.ceil(frame_count / fps))
        return sorted({min(frame_count - 1, int(round(s * fps))) for s in range(seconds)})
    if frames is None or frames <= 0:
        raise ValueError(f"frames must be a positive number, got {frames}")
    if frame_count <= frames:
        return list(range(frame_count))
    return sorted({int(round(x)) for x in np.linspace(0, frame_count - 1, frames)})


@dataclass(frozen=True)
class Frame:
    """One decoded frame in RGB: resized by the rule for detection, and as decoded for cropping."""

    index: int
    timestamp: float  # seconds from the start of the video
    image: np.ndarray  # H x W x 3 uint8 RGB, after the resize rule: what the detector sees
    scale: float  # factor applied by the resize rule (original = image / scale)
    original: np.ndarray | None = None  # the frame as decoded: faces are cut from it, at full detail

    @property
    def full(self) -> np.ndarray:
        """The full-resolution frame (the resized one where the original was not kept)."""
        return self.image if self.original is None else self.original


@dataclass(frozen=True)
class VideoInfo:
    frame_count: int
    fps: float
    width: int
    height: int


def _open(path: str | os.PathLike) -> cv2.VideoCapture:
    if not os.path.isfile(path):
        raise MediaError(path, "file not found")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MediaError(path, "cannot open as a video (corrupt file or unsupported codec)")
    return cap


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, frame rate and size of a video, without decoding it."""
    cap = _open(path)
    try:
        return _info(cap)
    finally:
        cap.release()


def _info(cap: cv2.VideoCapture) -> VideoInfo:
    return VideoInfo(
        frame_count=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
        fps=float(cap.get(cv2.CAP_PROP_FPS)) or 0.0,
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )


def read_video_frames(path: str | os.PathLike, frames: int | None = DEFAULT_FRAMES,
                      per_second: bool = False, resize: bool = True,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Frame]:
    """Yield the sampled frames of a video, decoded to RGB and resized by the rule.

    Raises MediaError when the file cannot be opened, its frames are larger than ``max_pixels``
    (refused before any is decoded), or no frame at all can be decoded. A video whose container
    over-states its length ends early without error.
    """
    cap = _open(path)
    try:
        info = _info(cap)
        if info.width * info.height > max_pixels:
            raise MediaError(path, f"its {info.width}x{info.height} frames ({info.width * info.height / 1e6:.1f} "
                                   f"megapixels) are over the limit of {max_pixels / 1e6:g} megapixels")
        if info.frame_count <= 0:
            raise MediaError(path, "video reports no frames (empty or corrupt)")
        fps = info.fps if info.fps > 0 else 25.0
        wanted = sample_indices(info.frame_count, fps, frames, per_second)
        yielded = 0
        position = 0
        for index in wanted:
            # Frames between samples are grabbed (decoded by the codec, which inter-frame
            # compression needs) but never converted or copied.
            while position < index:
                if not cap.grab():
                    break
                position += 1
            if position < index or not cap.grab():
                break
            position += 1
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            image, scale = resize_frame(rgb) if resize else (rgb, 1.0)
            yielded += 1
            yield Frame(index=index, timestamp=index / fps, image=image, scale=scale, original=rgb)
        if yielded == 0:
            raise MediaError(path, "no frame could be decoded (corrupt or empty video)")
    finally:
        cap.release()


def decode_image(data: bytes, source: str | os.PathLike = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS
                 ) -> np.ndarray:
    """Decode JPEG/PNG/... bytes to an RGB uint8 array; MediaError if they are not an image, or
    if their header declares more than ``max_pixels`` (refused before decoding)."""
    refused = too_many_pixels(data, max_pixels)
    if refused:
        raise MediaError(source, refused)
    array = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(array, cv2.IMREAD_COLOR) if array.size else None
    if bgr is None:
        raise MediaError(source, "cannot decode as an image (corrupt file or unsupported format)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_image_frame(path: str | os.PathLike, resize: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> Frame:
    """An image file as a single frame (index 0), resized by the rule."""
    if not os.path.isfile(path):
        raise MediaError(path, "file not found")
    with open(path, "rb") as f:
        rgb = decode_image(f.read(), path, max_pixels)
    image, scale = resize_frame(rgb) if resize else (rgb, 1.0)
    return Frame(index=0, timestamp=0.0, image=image, scale=scale, original=rgb)


def read_frames(path: str | os.PathLike, frames: int | None = DEFAULT_FRAMES,
                per_second: bool = False, resize: bool = True,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Frame]:
    """Frames of any supported media file: the sampled frames of a video, or the one image;
    images and video frames over ``max_pixels`` are refused before decoding."""
    if media_kind(path) == "image":
        yield read_image_frame(path, resize=resize, max_pixels=max_pixels)
    else:
        yield from read_video_frames(path, frames=frames, per_second=per_second, resize=resize,
                                     max_pixels=max_pixels)


class FramePool:
    """Per-frame work of a batch (the detector's enhancement, its image pyramid) on ``threads``
    threads: OpenCV and numpy release the GIL, so the frames of a batch go side by side on the
    cores. ``threads`` 0: one per core; 1: in the caller, no thread started.

    The threads live for a ``with pool.running():`` block only (a detector batch), so none is
    left behind in a process that later exits, forks or is patched by gevent; ``map`` outside
    such a block, or where gevent has patched threading (the locust load tests), runs in the
    caller. One caller at a time, as the detector that owns the pool.
    """

    def __init__(self, threads: int = 0):
        if threads < 0:
            raise ValueError(f"threads must be >= 0 (0: one per core), got {threads}")
        self.threads = threads or os.cpu_count() or 1
        self._tasks: queue.SimpleQueue | None = None
        self._depth = 0

    @contextlib.contextmanager
    def running(self) -> Iterator[FramePool]:
        """The pool's threads for the block (re-entrant: an inner block uses the outer's)."""
        start = self._depth == 0 and self.threads > 1 and not _green()
        workers: list[threading.Thread] = []
        if start:
            self._tasks = tasks = queue.SimpleQueue()
            workers = [threading.Thread(target=_work, args=(tasks,), name=f"dfdetect-frames-{i}", daemon=True)
                       for i in range(self.threads)]
            for worker in workers:
                worker.start()
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if start:
                for _ in workers:
                    tasks.put(None)
                for worker in workers:
                    worker.join()
                self._tasks = None

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(item) for item in items]``, in order; the exception of the first item that
        failed is raised here."""
        items = list(items)
        tasks = self._tasks
        if tasks is None or len(items) < 2:
            return [fn(item) for item in items]
        answers: list[Future] = [Future() for _ in items]
        for item, answer in zip(items, answers):
            tasks.put(functools.partial(_answer, answer, fn, item))
        return [answer.result() for answer in answers]


def _answer(answer: Future, fn: Callable, item) -> None:
    try:
        answer.set_result(fn(item))
    except BaseException as e:  # raised in the caller, by result()
        answer.set_exception(e)


def _work(tasks: queue.SimpleQueue) -> None:
    while (job := tasks.get()) is not None:
        job()


def _green() -> bool:
    """Whether gevent has patched threading in this process (then no threads of our own)."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("threading"))


def prefetch(items: Iterable[T], ahead: int) -> Iterator[T]:
    """The items of ``items``, produced by a background thread up to ``ahead`` in advance.

    For decoding the next frames while the detector works on the last ones (OpenCV and
    onnxruntime both release the GIL). The producer's exception is raised here, at the item
    where it happened; closing the iterator early stops the producer after at most one item.
    """
    if ahead < 1:
        raise ValueError(f"ahead must be at least 1, got {ahead}")
    done = object()
    slots: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((done, None))
        except BaseException as e:  # handed to the consumer, raised where it reads
            slots.put((done, e))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # a generator's finally (a released capture) runs in this thread

    worker = threading.Thread(target=produce, name="dfdetect-decode", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting for a free slot
            try:
                slots.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()


def write_video(path: str | os.PathLike, frames_rgb, fps: float = 10.0) -> None:
    """Write RGB frames (any iterable, consumed one at a time) as an mp4 (mp4v) video.

    Used by the demo data, the benchmarks and the tests. The file appears only when complete.
    """
    tmp = f"{path}.part.mp4"
    writer = None
    try:
        for frame in frames_rgb:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise MediaError(path, "cannot open a video writer (mp4v)")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        raise ValueError("write_video needs at least one frame")
    os.replace(tmp, path)
