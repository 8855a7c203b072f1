"""Server-side batching, as TensorFlow Serving's ``--enable_batching`` does it.

Requests from concurrent clients for one version and signature wait in a queue; batch threads
merge them into one model call of at most ``max_batch_size`` rows, waiting at most
``batch_timeout_micros`` after the first request of a batch arrived for more to arrive (as in
TensorFlow Serving, a request that already waited that long while the batch threads were busy
goes out with the next free thread, with no further wait). With
``allowed_batch_sizes`` a batch is padded (with copies of its first row) up to the next allowed
size, so the model sees only a few shapes. A queue holding ``max_enqueued_batches`` batches
refuses more work with RESOURCE_EXHAUSTED instead of growing without bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from dfdetect.serving.errors import exhausted, invalid, unavailable

log = logging.getLogger(__name__)


@dataclass
class BatchingOptions:
    """TensorFlow Serving's BatchingParameters, with its defaults."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    num_batch_threads: int = 4
    max_enqueued_batches: int = 10000
    allowed_batch_sizes: list[int] = field(default_factory=list)
    pad_variable_length_inputs: bool = False

    def validate(self) -> None:
        """ValueError for a size, thread count or timeout out of range, or allowed_batch_sizes not
        increasing up to max_batch_size."""
        if self.max_batch_size < 1 or self.num_batch_threads < 1 or self.max_enqueued_batches < 1:
            raise ValueError("max_batch_size, num_batch_threads and max_enqueued_batches must be positive")
        if self.batch_timeout_micros < 0:
            raise ValueError("batch_timeout_micros must be >= 0")
        sizes = self.allowed_batch_sizes
        if sizes:
            if sorted(sizes) != sizes or len(set(sizes)) != len(sizes) or sizes[0] < 1:
                raise ValueError(f"allowed_batch_sizes must be increasing positive numbers, got {sizes}")
            if sizes[-1] != self.max_batch_size:
                raise ValueError(f"the last of allowed_batch_sizes ({sizes[-1]}) must equal max_batch_size "
                                 f"({self.max_batch_size})")


@dataclass
class _Task:
    inputs: dict[str, np.ndarray]
    rows: int
    future: Future
    arrived: float  # time.monotonic() when queued


class BatchQueue:
    """The queue and batch threads of one (version, signature)."""

    def __init__(self, run, outputs: list[str], options: BatchingOptions, name: str = "", metrics=None):
        options.validate()
        self._run = run  # callable(inputs dict) -> outputs dict, batch-first arrays
        self._outputs = outputs
        self.options = options
        self.name = name
        self._metrics = metrics
        self._tasks: deque[_Task] = deque()
        self._queued_rows = 0
        self._lock = threading.Lock()
        # One batch thread at a time forms a batch (waits for it to fill or time out) on
        # ``_filling``; the others wait their turn on ``_turn``. Two threads waiting on the same
        # first request would both wake at its deadline, and the second would run whatever
        # trickled in after the first took its batch: a batch of one or two rows.
        self._filling = threading.Condition(self._lock)
        self._turn = threading.Condition(self._lock)
        self._forming = False
        self._closed = False
        self._threads = [threading.Thread(target=self._loop, name=f"batch-{name}-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]
        for t in self._threads:
            t.start()

    @property
    def depth(self) -> int:
        """Requests waiting in the queue (requests, not rows)."""
        return len(self._tasks)

    def submit(self, inputs: dict[str, np.ndarray]) -> Future:
        """Queue one request's inputs; a Future of its rows of the outputs. INVALID_ARGUMENT for a bad
        batch, RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE once it is closing."""
        rows = {len(v) for v in inputs.values()}
        if len(rows) != 1:
            raise invalid(f"batched inputs must share their first dimension, got sizes {sorted(rows)}")
        (n,) = rows
        if n > self.options.max_batch_size:
            raise invalid(f"Task size {n} is larger than maximum input batch size {self.options.max_batch_size}")
        task = _Task(inputs, n, Future(), time.monotonic())
        with self._lock:
            if self._closed:
                raise unavailable("the model version is unloading")
            capacity = self.options.max_enqueued_batches * self.options.max_batch_size
            if self._queued_rows + n > capacity:
                raise exhausted("The batch scheduling queue to which this task was submitted is full")
            self._tasks.append(task)
            self._queued_rows += n
            (self._filling if self._forming else self._turn).notify()
        return task.future

    def _take_batch(self) -> list[_Task] | None:
        timeout = self.options.batch_timeout_micros / 1e6
        with self._lock:
            while (self._forming or not self._tasks) and not self._closed:
                self._turn.wait()
            if not self._tasks:
                return None
            self._forming = True
            deadline = self._tasks[0].arrived + timeout
            while self._queued_rows < self.options.max_batch_size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._filling.wait(remaining)
            batch, rows = [], 0
            while self._tasks and rows + self._tasks[0].rows <= self.options.max_batch_size:
                task = self._tasks.popleft()
                batch.append(task)
                rows += task.rows
            self._queued_rows -= rows
            self._forming = False
            if self._tasks:
                self._turn.notify()  # another thread forms the next batch from what is left
            return batch

    def _padded_size(self, rows: int) -> int:
        for size in self.options.allowed_batch_sizes:
            if size >= rows:
                return size
        return rows

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:  # closing: another thread took what was left
                continue
            try:
                rows = sum(t.rows for t in batch)
                merged = {k: np.concatenate([t.inputs[k] for t in batch]) for k in batch[0].inputs}
                size = self._padded_size(rows)
                if size > rows:
                    merged = {k: np.concatenate([v, np.repeat(v[:1], size - rows, axis=0)]) for k, v in merged.items()}
                if self._metrics:
                    self._metrics.batch_size.labels(model=self.name).observe(size)
                result = self._run(merged)
                start = 0
                for t in batch:
                    t.future.set_result({k: result[k][start:start + t.rows] for k in self._outputs})
                    start += t.rows
            except BaseException as e:  # every waiting request gets the failure
                for t in batch:
                    if not t.future.done():
                        t.future.set_exception(e)

    def close(self) -> None:
        """Finish what is queued, then stop the threads."""
        with self._lock:
            self._closed = True
            self._filling.notify_all()
            self._turn.notify_all()
        for t in self._threads:
            t.join()
