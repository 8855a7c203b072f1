"""Model versions on disk -> loaded, warmed-up versions that take traffic.

For every configured model the manager watches ``base_path`` (every
``--file_system_poll_wait_seconds``), decides which versions to serve by the version policy
(latest N, all, specific), loads each new one, replays its warm-up requests, and only then makes
it AVAILABLE. A version that leaves the policy is marked UNLOADING (no new requests reach it)
and released once its in-flight requests finish, so a switch under load fails nothing; it leaves
only once a version it makes way for is AVAILABLE. A version that fails to load is reported with
its error and never serves (and the version before it keeps serving); it is tried again, up to
``--max_num_load_retries`` times ``--load_retry_interval_micros`` apart (a folder still being
copied loads once it is whole).

A version folder's name is its number: ``00000123/`` is version 123, loaded from that folder.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from dfdetect.contract import WARMUP_FILE
from dfdetect.serving.backends import Runner, Signature, load_runner
from dfdetect.serving.batching import BatchingOptions, BatchQueue
from dfdetect.serving.errors import failed_precondition, invalid, not_found

log = logging.getLogger(__name__)

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclass
class ModelSettings:
    """What the server knows of one model from its flags or config file."""

    name: str
    base_path: str
    policy: str = "latest"  # latest, all, specific
    num_versions: int = 1
    versions: tuple[int, ...] = ()  # for the specific policy
    labels: dict[str, int] = field(default_factory=dict)


def settings_from_config(config) -> list[ModelSettings]:
    """The models a ``ModelServerConfig`` lists, checked as TensorFlow Serving checks them;
    ValueError with its wording otherwise."""
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError("ServerModelConfig type not supported by HandleReloadConfigRequest. "
                         "Only ModelConfigList is currently supported")
    settings: list[ModelSettings] = []
    for m in config.model_config_list.config:
        if not m.name:
            raise ValueError("Each model in the config list must have a name")
        if any(s.name == m.name for s in settings):
            raise ValueError(f"Illegal to list model {m.name} multiple times in config list")
        if m.model_platform not in ("", "tensorflow"):
            raise ValueError(f"model {m.name}: model_platform {m.model_platform!r} is not supported "
                             "(expected tensorflow)")
        policy = m.model_version_policy.WhichOneof("policy_choice") or "latest"
        settings.append(ModelSettings(
            name=m.name, base_path=m.base_path, policy=policy,
            num_versions=m.model_version_policy.latest.num_versions or 1,
            versions=tuple(m.model_version_policy.specific.versions), labels=dict(m.version_labels)))
    return settings


@dataclass
class VersionState:
    """One version's lifecycle state, its last load error and retries, and its LoadedVersion while loaded."""

    version: int
    state: str
    error: str = ""
    loaded: "LoadedVersion | None" = None
    failures: int = 0  # failed loads so far
    retry_at: float = 0.0  # time.monotonic() after which a failed load is tried again


class LoadedVersion:
    """A version in memory: its runner, batch queues, and a count of requests in flight."""

    def __init__(self, name: str, version: int, path: str, runner: Runner, batching: BatchingOptions | None,
                 metrics=None):
        self.name, self.version, self.path, self.runner = name, version, path, runner
        self._inflight = 0
        self._idle = threading.Condition()
        self._queues: dict[str, BatchQueue] = {}
        if batching is not None:
            for sig_name, sig in runner.signatures.items():
                if sig.batchable:
                    outputs = list(sig.outputs)
                    self._queues[sig_name] = BatchQueue(
                        lambda inputs, s=sig_name, o=outputs: runner.run(s, inputs, o), outputs, batching,
                        name=f"{name}", metrics=metrics)

    @property
    def signatures(self) -> dict[str, Signature]:
        """The runner's signatures by name."""
        return self.runner.signatures

    def queue_depth(self) -> int:
        """Requests waiting in this version's batch queues."""
        return sum(q.depth for q in self._queues.values())

    def batches(self, signature: str) -> bool:
        """Whether requests to this signature are merged into batches."""
        return signature in self._queues

    def run(self, signature: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Run a signature, through its batch queue when it has one; the outputs named."""
        queue = self._queues.get(signature)
        if queue is None:
            return self.runner.run(signature, inputs, outputs)
        result = queue.submit(inputs).result()
        return {k: result[k] for k in outputs}

    def enter(self) -> None:
        """Count a request in flight (the version is not released while any is)."""
        with self._idle:
            self._inflight += 1

    def leave(self) -> None:
        """Count a request done; at none in flight, wake ``wait_idle``."""
        with self._idle:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no request is in flight (at most ``timeout`` s); whether that happened."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    def close(self) -> None:
        """Stop the batch queues (what is queued runs first) and release the runner."""
        for q in self._queues.values():
            q.close()
        self.runner.close()


def settle_heap() -> None:
    """Take the long-lived objects alive now out of the cyclic garbage collector's sight.

    A loaded model is a great many Python objects that live as long as the version; every full
    collection walks them all while no thread runs: on this project's model, a pause of about
    260 ms at random moments (REST p99 at one client 252 ms, against 28 ms with the heap
    frozen). Called after a version is loaded or unloaded; what an earlier call froze is unfrozen
    and collected first, so the reference cycles of an unloaded version are still freed. The one
    full collection here happens at a version change instead of in the middle of requests."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def warm_up(loaded: LoadedVersion, iterations: int = 1) -> int:
    """Replay the version's warm-up requests (PredictionLog records), each ``iterations`` times;
    returns how many ran. A request for a signature the backend lacks (the bytes signature on
    ONNX) is skipped."""
    if iterations <= 0:
        return 0
    path = os.path.join(loaded.path, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return 0
    from tensorflow_serving.apis import prediction_log_pb2

    count = 0
    for raw in tf.data.TFRecordDataset([path]):
        log_entry = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        if not log_entry.HasField("predict_log"):
            continue
        request = log_entry.predict_log.request
        signature = request.model_spec.signature_name or "serving_default"
        sig = loaded.signatures.get(signature)
        if sig is None:
            continue
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        for _ in range(iterations):
            loaded.runner.run(signature, inputs, list(sig.outputs))
            count += 1
    return count


def list_versions(base_path: str) -> dict[int, str]:
    """version -> its folder's name, for the folders named by a number (``00000123`` is 123)."""
    if not tf.io.gfile.isdir(base_path):
        return {}
    found: dict[int, str] = {}
    for entry in sorted(tf.io.gfile.listdir(base_path)):
        entry = entry.rstrip("/")
        if not (entry.isascii() and entry.isdigit()) or int(entry) <= 0:
            continue
        if not tf.io.gfile.isdir(os.path.join(base_path, entry)):
            continue
        version = int(entry)
        if version in found:
            log.warning("%s: folders %s and %s are both version %d; serving %s", base_path, found[version], entry,
                        version, found[version])
            continue
        found[version] = entry
    return dict(sorted(found.items()))


def aspired(settings: ModelSettings, on_disk: list[int]) -> set[int]:
    """The versions the policy serves out of those on disk (ascending): all, the listed ones, or the latest N."""
    if settings.policy == "all":
        return set(on_disk)
    if settings.policy == "specific":
        return set(settings.versions) & set(on_disk)
    return set(on_disk[-max(1, settings.num_versions):])


class ModelManager:
    """The versions of every configured model: loaded, served and unloaded as the disk and the config change."""

    def __init__(self, models: list[ModelSettings], backend: str = "tf", batching: BatchingOptions | None = None,
                 metrics=None, *, load_retries: int = 5, retry_interval: float = 60.0, warmup_iterations: int = 1,
                 model_threads: int = 0):
        self.settings = {m.name: m for m in models}
        self.backend = backend
        self.model_threads = model_threads  # onnxruntime's intra-op threads (0: every core)
        self.load_retries = max(0, load_retries)
        self.retry_interval = max(0.0, retry_interval)
        self.warmup_iterations = warmup_iterations
        self.batching = batching
        self.metrics = metrics
        self._states: dict[str, dict[int, VersionState]] = {m.name: {} for m in models}
        self._lock = threading.Lock()
        self._changes = threading.RLock()  # one poll or reconfiguration at a time
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Bring every model's loaded versions in line with what is on disk and the policy."""
        with self._changes:
            self._poll()

    def _poll(self) -> None:
        for name, settings in list(self.settings.items()):
            try:
                on_disk = list_versions(settings.base_path)
            except tf.errors.OpError as e:
                log.error("cannot list %s: %s", settings.base_path, e)
                continue
            wanted = aspired(settings, sorted(on_disk))
            states = self._states[name]
            for version in sorted(wanted):
                st = states.get(version)
                if st is None or (st.state == END and not st.error and st.loaded is None) or self._retry_due(st):
                    self._load(settings, version, on_disk[version])
            # Availability first: versions leave only once a wanted version serves in their place,
            # so a new version that fails to load leaves the old one serving.
            if any(states[v].state == AVAILABLE for v in wanted if v in states):
                for version, st in list(states.items()):
                    if st.state == AVAILABLE and version not in wanted:
                        self._unload(name, st)
        self._report_loaded()

    def reconfigure(self, models: list[ModelSettings]) -> list[str]:
        """Serve ``models`` from now on: a model that is new (or has a new base path) is loaded
        before this returns; a model no longer listed stops taking requests at once and is
        unloaded once its requests in flight are done; the others keep serving, under their
        new policy and labels. Returns the errors of models that loaded no version."""
        with self._changes:
            new = {m.name: m for m in models}
            old = self.settings
            changed = [n for n in old if n not in new or new[n].base_path != old[n].base_path]
            with self._lock:
                retiring = [(name, st) for name in changed for st in self._states.get(name, {}).values()]
                for name in changed:
                    del self._states[name]
                for name in new:
                    self._states.setdefault(name, {})
                self.settings = new
            for name, st in retiring:
                if st.state == AVAILABLE:
                    self._unload(name, st)
            if self.metrics is not None:
                for name in changed:
                    self.metrics.versions_loaded.labels(model=name).set(0)
            self._poll()
            errors = []
            for name in new:
                if name in old and name not in changed:
                    continue
                states = self._states[name].values()
                if not any(st.state == AVAILABLE for st in states):
                    failed = [f"version {st.version}: {st.error}" for st in states if st.error]
                    if failed:
                        errors.append(f"model {name}: {'; '.join(failed)}")
                    else:
                        log.warning("model %s: no version found under %s", name, new[name].base_path)
            log.info("model config: serving %s (%d added or moved, %d removed)", ", ".join(new) or "nothing",
                     sum(n not in old or n in changed for n in new), sum(n not in new for n in old))
            return errors

    def _retry_due(self, st: VersionState) -> bool:
        return (st.state == END and bool(st.error) and st.failures <= self.load_retries
                and time.monotonic() >= st.retry_at)

    def _load(self, settings: ModelSettings, version: int, folder: str) -> None:
        states = self._states[settings.name]
        failures = states[version].failures if version in states else 0
        with self._lock:
            states[version] = VersionState(version, LOADING, failures=failures)
        path = os.path.join(settings.base_path, folder)
        started = time.perf_counter()
        try:
            runner = load_runner(self.backend, path, self.model_threads)
            loaded = LoadedVersion(settings.name, version, path, runner, self.batching, self.metrics)
            warmed = warm_up(loaded, self.warmup_iterations)
        except Exception as e:  # any failure: reported in the status, never served
            failures += 1
            again = failures <= self.load_retries
            log.error("model %s version %d failed to load%s: %s", settings.name, version,
                      f" (try {failures} of {self.load_retries + 1}; again in {self.retry_interval:g} s)" if again
                      else "", e)
            with self._lock:
                states[version] = VersionState(version, END, error=f"{type(e).__name__}: {e}", failures=failures,
                                               retry_at=time.monotonic() + self.retry_interval)
            return
        settle_heap()
        with self._lock:
            states[version] = VersionState(version, AVAILABLE, loaded=loaded)
        log.info("model %s version %d AVAILABLE (%s backend, %d warm-up requests, %.1f s)", settings.name, version,
                 self.backend, warmed, time.perf_counter() - started)

    def _unload(self, name: str, st: VersionState) -> None:
        with self._lock:
            st.state = UNLOADING  # no new request resolves to it from here on
        loaded = st.loaded
        threading.Thread(target=self._finish_unload, args=(name, st, loaded), daemon=True,
                         name=f"unload-{name}-{st.version}").start()

    def _finish_unload(self, name: str, st: VersionState, loaded: LoadedVersion) -> None:
        loaded.wait_idle()
        loaded.close()
        with self._lock:
            st.state, st.loaded = END, None
        del loaded
        settle_heap()
        log.info("model %s version %d unloaded", name, st.version)
        self._report_loaded()

    def _report_loaded(self) -> None:
        if self.metrics is None:
            return
        with self._lock:
            counts = {name: sum(s.state == AVAILABLE for s in states.values()) for name, states in self._states.items()}
        for name, count in counts.items():
            self.metrics.versions_loaded.labels(model=name).set(count)

    def start(self, poll_seconds: float) -> None:
        """Load what is there now, then keep watching (poll_seconds <= 0: load once only)."""
        self.poll_once()
        if poll_seconds > 0:
            self._poller = threading.Thread(target=self._poll_loop, args=(poll_seconds,), daemon=True,
                                            name="version-poller")
            self._poller.start()

    def _poll_loop(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.poll_once()
            except Exception:  # the poller must survive a bad version or a flaky file system
                log.exception("version poll failed")

    def stop(self, drain_seconds: float = 30.0) -> None:
        """Stop watching; wait for in-flight requests (up to drain_seconds) and unload everything."""
        self._stop.set()
        if self._poller:
            self._poller.join()
        for states in self._states.values():
            for st in states.values():
                if st.loaded is not None:
                    st.loaded.wait_idle(drain_seconds)
                    st.loaded.close()
                    st.state, st.loaded = END, None

    # --- requests ----------------------------------------------------------------------------

    def _model(self, name: str) -> ModelSettings:
        if not name:
            raise invalid("ModelSpec has no name specified.")
        if name not in self.settings:
            raise not_found(f"Servable not found for request: Latest({name})")
        return self.settings[name]

    @contextmanager
    def acquire(self, name: str, version: int | None = None, label: str | None = None):
        """The AVAILABLE version a request asks for, held until the request is done."""
        settings = self._model(name)
        if label:
            if label not in settings.labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = settings.labels[label]
        with self._lock:
            states = self._states.get(name, {})  # {}: removed from the config since the check above
            if version is None:
                available = [v for v, s in states.items() if s.state == AVAILABLE]
                if not available:
                    raise not_found(f"Servable not found for request: Latest({name})")
                version = max(available)
            st = states.get(version)
            if st is None or st.state != AVAILABLE:
                raise not_found(f"Servable not found for request: Specific({name}, {version})")
            loaded = st.loaded
            loaded.enter()
        try:
            yield loaded
        finally:
            loaded.leave()

    def signature(self, loaded: LoadedVersion, name: str) -> Signature:
        """A version's signature by name (``serving_default`` when empty); FAILED_PRECONDITION when it
        has no such signature."""
        name = name or "serving_default"
        sig = loaded.signatures.get(name)
        if sig is None:
            raise failed_precondition(f"Serving signature key \"{name}\" not found.")
        return sig

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[VersionState]:
        """The model's version states, newest first (one version's, or a label's); NOT_FOUND when there
        are none, INVALID_ARGUMENT for an unknown label."""
        if name not in self.settings:
            raise not_found(f"Could not find any versions of model {name}")
        settings = self.settings[name]
        if label:
            if label not in settings.labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = settings.labels[label]
        with self._lock:
            states = sorted(self._states.get(name, {}).values(), key=lambda s: -s.version)
            if version is not None:
                states = [s for s in states if s.version == version]
                if not states:
                    raise not_found(f"Could not find version {version} of model {name}")
            if not states:
                raise not_found(f"Could not find any versions of model {name}")
            return [VersionState(s.version, s.state, s.error) for s in states]

    def queue_depth(self) -> int:
        """Requests waiting in the batch queues of every loaded version."""
        with self._lock:
            return sum(s.loaded.queue_depth() for states in self._states.values() for s in states.values()
                       if s.loaded is not None)
