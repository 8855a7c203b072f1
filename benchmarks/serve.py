"""Benchmark of serving: what the local model server costs over running the model in process.

What it measures, for the newest version of ``--model-name`` in ``--model-repository``, with
``--backend`` (tf: the SavedModel's signatures; onnx: the version's ONNX twin). With
``--crop-size S`` (``make bench-serve`` gives 224, the production crop size) and a newest version
taking another size (the demo model takes 96 px) or none, an untrained stand-in instead: the
training defaults' architecture at S px, exported with the model contract's signatures (and its
ONNX twin for onnx) to a temporary repository. Serving costs do not depend on the weights, and
the share of them in a request does depend on the model's compute: at 96 px the model's work per
face is a fifth of production's, so the served/in-process figures of a 96 px model say little
about production.

* "in-process": the version loaded here with ``load_runner`` (as the server loads it) and called
  through ``serving_default`` (``images`` uint8 [B, S, S, 3] -> ``fake_probability``), numpy to
  numpy, at batch sizes 1, 8, 16 and 32: ``--warmup`` untimed calls, then timed calls for about
  ``--seconds``. images/s = images in timed calls / their total time; p50 is the median time of
  one call. This sweep picks the best batch size, the baseline every served row is compared with.
* "served": the server as ``make deploy`` runs it: ``python -m dfdetect.serving`` in its own
  process, on free loopback ports, loading the version once (no polling), with batching on
  (BatchingParameters written to a temporary file from ``--max-batch-size``,
  ``--batch-timeout-micros``, ``--num-batch-threads`` and ``--max-enqueued-batches``), TensorFlow
  Serving's threading flags from ``--intra-op-threads`` and ``--inter-op-threads`` (0:
  TensorFlow's defaults) and Prometheus metrics on. ``--matrix`` also runs each model with one
  core per op and batches of up to 8 (``ONE_CORE_PER_OP``). N client threads in this process,
  each with its own gRPC channel (and its own connection: a local subchannel pool) and the
  official ``PredictionServiceStub``, send batch-1 ``Predict`` requests of real face crops back
  to back, for N in ``--concurrency`` (1, 4, 8, 16, 32). Each client first sends ``--warmup``
  untimed requests; then all start together and stop at the first answer after the slice's time.
  images/s = answered requests / time from the common start to the last answer; p50 and p99 are
  of the per-request latencies (request sent to answer decoded). The requests are built once,
  before timing, so the clients spend their time in gRPC, not in building protos.
  REST runs the same way (``POST /v1/models/NAME:predict`` with ``{"instances": [crop]}``, one
  keep-alive ``http.client`` connection per client, bodies encoded before timing) at
  ``--rest-concurrency`` (1, 8).
  A second server with batching off then runs gRPC (and REST) at ``--unbatched-concurrency``
  (1, 8): concurrency 1 there is the pure serving overhead, next to the in-process batch-1 p50.
* The baseline is one caller with TensorFlow's default threads, as a program calling the model
  would run it. A server with one core per op has an advantage of its own: in process, two
  callers with one intra-op thread each make more than one caller at any batch (at 96 px on 2
  cores, 536-564 images/s at batch 8-16 against 452 at batch 32), and its rows include that gain.
* Interleaving: the load of a shared machine comes and goes by tens of percent within a minute,
  so each served row gets its own in-process baseline, measured in the same stretch of time: its
  ``--seconds`` are split into 3 slices, and before each served slice the in-process best batch
  (and, for rows with one client, batch 1) runs for a slice of the same length (the server idle
  meanwhile). served/in-process = the row's images/s / its interleaved baseline's images/s; the
  overhead at one client = the row's p50 - its interleaved batch-1 p50. "mean batch" is the rows
  per model call the server's batcher made while the row was timed (from its metrics endpoint).

The crops are the latest training run's (``sample_crops``: its prepared faces where they are
still there), or random pixels when there is no run.

Caveat: clients and server share this machine's cores (the count is printed): the served figures
include the clients' own CPU use, so they understate what the server does with its clients
elsewhere.

Targets (from the issue): served/in-process >= 0.9 at concurrency >= 8 with batching on (every
such gRPC row); gRPC p50 at concurrency 1 with batching off <= 2 ms over the in-process batch-1
p50. It prints figures and never fails on them.

    python -m benchmarks.serve [--model-repository model_repository]
        [--model-name deepfake] [--backend tf|onnx] [--seconds 3] [--warmup 3]
        [--concurrency 1,4,8,16,32] [--rest-concurrency 1,8] [--unbatched-concurrency 1,8]
        [--max-batch-size 32] [--batch-timeout-micros 5000] [--num-batch-threads CORES]
        [--intra-op-threads 0] [--inter-op-threads 0] [--matrix]
        [--max-enqueued-batches 1000] [--runs-dir runs] [--crop-size S]
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import add_model_arguments, fill_batch, positive_ints, positive_ints_or_none, run_benchmark
from dfdetect.tooling import ModelServerProcess
from dfdetect.contract import INPUT_PIXELS, OUTPUT_SCORE, SIGNATURE_PIXELS
from dfdetect.errors import BadInputError, DfdetectError

log = logging.getLogger("benchmarks.serve")  # also when run with -m

IN_PROCESS_BATCHES = (1, 8, 16, 32)
DEFAULT_CONCURRENCY = "1,4,8,16,32"
DEFAULT_REST_CONCURRENCY = "1,8"
DEFAULT_UNBATCHED_CONCURRENCY = "1,8"
TARGET_RATIO = 0.9
TARGET_RATIO_FROM = 8  # concurrency from which the ratio target applies
TARGET_OVERHEAD_MS = 2.0
REQUEST_TIMEOUT = 60.0  # seconds; a request slower than this counts as an error
CROPS = 16
SLICES = 3  # per served row: slices alternating with its in-process baseline


@dataclass
class Measurement:
    """Timed requests (or calls) of one row of the table."""

    transport: str  # in-process, gRPC, REST
    batching: str  # on, off, -
    concurrency: int  # clients; for in-process: 1
    batch_size: int = 1
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests only
    wall_seconds: float = 0.0
    errors: int = 0
    first_error: str = ""
    batch_rows: float = 0.0  # rows the server's batcher ran while timed
    batch_calls: float = 0.0  # model calls it made for them
    references: dict[int, "Measurement"] = field(default_factory=dict)  # batch size -> interleaved in-process

    @property
    def mean_batch(self) -> float:
        return self.batch_rows / self.batch_calls if self.batch_calls > 0 else math.nan

    @property
    def images_per_second(self) -> float:
        if self.wall_seconds <= 0:
            return math.nan
        return self.batch_size * len(self.latencies) / self.wall_seconds

    @property
    def p50_ms(self) -> float:
        return 1000 * statistics.median(self.latencies) if self.latencies else math.nan

    @property
    def p99_ms(self) -> float:
        return 1000 * float(np.percentile(self.latencies, 99)) if self.latencies else math.nan


# --- in process -------------------------------------------------------------------------------

def measure_in_process(runner, crops: np.ndarray, batch_size: int, seconds: float, warmup: int,
                       into: Measurement | None = None) -> Measurement:
    """``warmup`` untimed calls, then timed calls for about ``seconds``, added to ``into``."""
    batch = fill_batch(crops, batch_size)
    inputs, outputs = {INPUT_PIXELS: batch}, [OUTPUT_SCORE]
    for _ in range(warmup):
        runner.run(SIGNATURE_PIXELS, inputs, outputs)
    m = into if into is not None else Measurement("in-process", "-", 1, batch_size)
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        t0 = time.perf_counter()
        runner.run(SIGNATURE_PIXELS, inputs, outputs)
        t1 = time.perf_counter()
        m.latencies.append(t1 - t0)
        if t1 >= deadline:
            break
    m.wall_seconds = sum(m.latencies)
    return m


# --- clients ----------------------------------------------------------------------------------

def drive(row: Measurement, open_client, seconds: float, warmup: int, batches=None) -> Measurement:
    """``row.concurrency`` threads, each with its own client from ``open_client(i)`` (a pair
    ``(call, close)``; ``call()`` sends one request and raises on any failure): ``warmup``
    untimed requests each, then all start together and send back to back until ``seconds``.
    ``batches()``, if given, returns the server's (rows, model calls) so far. What is measured
    is added to ``row``, so slices of one row can be driven one after another."""
    n = row.concurrency
    clients = [open_client(i) for i in range(n)]
    clock: dict[str, float] = {}
    counts: dict[str, tuple[float, float]] = {}

    def start_clock():
        if batches is not None:
            counts["start"] = batches()
        clock["start"] = time.perf_counter()
        clock["deadline"] = clock["start"] + seconds

    barrier = threading.Barrier(n, action=start_clock)
    latencies: list[list[float]] = [[] for _ in range(n)]
    ends = [0.0] * n
    errors = [0] * n
    first_errors: list[str] = []

    def failed(i: int, e: Exception) -> None:
        errors[i] += 1
        if not first_errors:
            first_errors.append(f"{type(e).__name__}: {_error_text(e)}")

    def worker(i: int) -> None:
        call = clients[i][0]
        for _ in range(warmup):
            try:
                call()
            except Exception as e:  # counted and shown; the benchmark never stops on figures
                failed(i, e)
        barrier.wait()
        deadline = clock["deadline"]
        while True:
            t0 = time.perf_counter()
            try:
                call()
                ok = True
            except Exception as e:
                failed(i, e)
                ok = False
            t1 = time.perf_counter()
            if ok:
                latencies[i].append(t1 - t0)
            if t1 >= deadline:
                ends[i] = t1
                return

    threads = [threading.Thread(target=worker, args=(i,), name=f"bench-client-{i}", daemon=True)
               for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for _, close in clients:
            close()
    row.latencies += [x for per in latencies for x in per]
    row.wall_seconds += max(ends) - clock["start"] if "start" in clock else 0.0
    row.errors += sum(errors)
    row.first_error = row.first_error or (first_errors[0] if first_errors else "")
    if "start" in counts:
        rows, calls = (after - before for after, before in zip(batches(), counts["start"]))
        row.batch_rows += rows
        row.batch_calls += calls
    return row


def _error_text(e: Exception) -> str:
    import grpc

    if isinstance(e, grpc.RpcError) and hasattr(e, "code"):
        return f"{e.code().name}: {e.details()}"
    return str(e)[:300]


def grpc_requests(model_name: str, crops: np.ndarray) -> list:
    """One batch-1 PredictRequest per crop, built before any timing."""
    from dfdetect.wire.requests import predict_request

    return [predict_request(model_name, SIGNATURE_PIXELS, {INPUT_PIXELS: np.ascontiguousarray(crop[None], np.uint8)},
                            output_filter=[OUTPUT_SCORE]) for crop in crops]


def grpc_client_factory(port: int, requests: list):
    import grpc

    from dfdetect.wire.services import PredictionServiceStub

    def open_client(i: int):
        # A local subchannel pool: channels to one address otherwise share one connection.
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        grpc.channel_ready_future(channel).result(timeout=REQUEST_TIMEOUT)
        stub = PredictionServiceStub(channel)
        state = {"k": i}

        def call():
            request = requests[state["k"] % len(requests)]
            state["k"] += 1
            stub.Predict(request, timeout=REQUEST_TIMEOUT)

        return call, channel.close

    return open_client


def rest_bodies(crops: np.ndarray) -> list[bytes]:
    """One ``{"instances": [crop]}`` body per crop, encoded before any timing."""
    return [json.dumps({"instances": crop[None].tolist()}, separators=(",", ":")).encode() for crop in crops]


def rest_client_factory(port: int, model_name: str, bodies: list[bytes]):
    path = f"/v1/models/{model_name}:predict"
    headers = {"Content-Type": "application/json"}

    def open_client(i: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        state = {"k": i}

        def call():
            body = bodies[state["k"] % len(bodies)]
            state["k"] += 1
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()  # the next request opens a new connection
                raise
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {data[:300].decode(errors='replace')}")

        # Closing matters: the REST server waits for its open connections when it stops.
        return call, conn.close

    return open_client


def check_answers(grpc_port: int, rest_port: int, model_name: str, request, body: bytes) -> None:
    """One request per API, answers checked: a benchmark of wrong answers measures nothing."""
    import grpc

    from dfdetect.wire.services import PredictionServiceStub
    from dfdetect.wire.tensors import make_ndarray

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        try:
            response = PredictionServiceStub(channel).Predict(request, timeout=REQUEST_TIMEOUT)
        except grpc.RpcError as e:
            raise BadInputError(f"the server does not answer Predict over gRPC: {_error_text(e)}") from None
    scores = make_ndarray(response.outputs[OUTPUT_SCORE])
    if scores.shape != (1,) or not 0.0 <= float(scores[0]) <= 1.0:
        raise BadInputError(f"gRPC Predict answered {OUTPUT_SCORE} {scores!r}; expected one probability")
    conn = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("POST", f"/v1/models/{model_name}:predict", body=body,
                     headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        data = reply.read()
    finally:
        conn.close()
    if reply.status != 200:
        raise BadInputError(f"REST predict answered HTTP {reply.status}: {data[:300].decode(errors='replace')}")
    predictions = json.loads(data).get("predictions")
    if not isinstance(predictions, list) or len(predictions) != 1:
        raise BadInputError(f"REST predict answered {data[:300]!r}; expected one prediction")


# --- servers ----------------------------------------------------------------------------------

def batching_file(args: argparse.Namespace, folder: str) -> str:
    path = Path(folder) / "batching.config"
    path.write_text(f"max_batch_size {{ value: {args.max_batch_size} }}\n"
                    f"batch_timeout_micros {{ value: {args.batch_timeout_micros} }}\n"
                    f"num_batch_threads {{ value: {args.num_batch_threads} }}\n"
                    f"max_enqueued_batches {{ value: {args.max_enqueued_batches} }}\n")
    return str(path)


MONITORING_CONFIG = 'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'
METRICS_PATH = "/monitoring/prometheus/metrics"


class ServerProcess(ModelServerProcess):
    """``python -m dfdetect.serving`` in its own process (as ``make deploy`` runs it) on free
    loopback ports, its log in ``folder``; started with the version AVAILABLE, or an error."""

    def __init__(self, args: argparse.Namespace, base_path: str, folder: str, batching_path: str | None,
                 clients: int):
        monitoring = Path(folder) / "monitoring.config"
        monitoring.write_text(MONITORING_CONFIG)
        flags = ["--rest_api_host=127.0.0.1", "--file_system_poll_wait_seconds=0", f"--backend={args.backend}",
                 f"--monitoring_config_file={monitoring}", f"--grpc_threads={max(32, clients)}", "--drain_seconds=10"]
        if batching_path:
            flags += ["--enable_batching", f"--batching_parameters_file={batching_path}",
                      f"--tensorflow_intra_op_parallelism={args.intra_op_threads}",
                      f"--tensorflow_inter_op_parallelism={args.inter_op_threads}"]
        super().__init__(args.model_name, base_path, flags=flags,
                         log=Path(folder) / f"server-batching-{'on' if batching_path else 'off'}.log")
        try:
            self.wait_until_available()
        except BaseException:
            self.stop()
            raise

    def batch_counts(self) -> tuple[float, float]:
        """(rows, model calls) the server's batcher has made so far, from its metrics endpoint
        (rows include padding to allowed_batch_sizes; none are set here)."""
        from prometheus_client.parser import text_string_to_metric_families

        conn = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request("GET", METRICS_PATH)
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        found = {"dfdetect_serving_batch_size_sum": 0.0, "dfdetect_serving_batch_size_count": 0.0}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in found and sample.labels.get("model") == self.model_name:
                    found[sample.name] = sample.value
        return found["dfdetect_serving_batch_size_sum"], found["dfdetect_serving_batch_size_count"]


# --- command line and report ------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serve",
        description="in-process images/s of a model version against the local model server's served "
                    "images/s and latency over gRPC and REST, with batching on and off")
    add_model_arguments(parser)
    parser.add_argument("--backend", choices=["tf", "onnx"], default="tf",
                        help="tf: the SavedModel; onnx: its ONNX twin with onnxruntime (tf)")
    parser.add_argument("--runs-dir", default="runs", help="where the latest run's crops are looked up (runs)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="timed seconds per batch size and per concurrency (3)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed calls per batch size, untimed requests per client (3)")
    parser.add_argument("--concurrency", type=positive_ints, default=positive_ints(DEFAULT_CONCURRENCY),
                        help=f"gRPC clients with batching on, comma-separated ({DEFAULT_CONCURRENCY})")
    parser.add_argument("--rest-concurrency", type=positive_ints_or_none, default=positive_ints(DEFAULT_REST_CONCURRENCY),
                        help=f"REST clients with batching on ({DEFAULT_REST_CONCURRENCY}; empty: none)")
    parser.add_argument("--unbatched-concurrency", type=positive_ints_or_none,
                        default=positive_ints(DEFAULT_UNBATCHED_CONCURRENCY),
                        help=f"gRPC and REST clients with batching off ({DEFAULT_UNBATCHED_CONCURRENCY}; "
                             "1 gives the overhead target; empty: no second server)")
    parser.add_argument("--crop-size", type=int, default=0,
                        help="benchmark a model taking crops of this many px: the repository's newest version if "
                             "it does, else an untrained stand-in of the training defaults' architecture at this "
                             "size (0: the newest version, any size; make bench-serve gives 224, production's)")
    parser.add_argument("--max-batch-size", type=int, default=32, help="batching: max_batch_size (32)")
    parser.add_argument("--batch-timeout-micros", type=int, default=5000,
                        help="batching: batch_timeout_micros (5000: long enough for every client answered by one "
                             "batch to send its next request before the next batch closes, short next to a "
                             "batch's compute on a CPU)")
    parser.add_argument("--num-batch-threads", type=int, default=os.cpu_count() or 1,
                        help="batching: num_batch_threads (default: the cores; measured at 96 px on 2 cores, "
                             "two batch-8 calls at once make 255 images/s where one makes 168: a small "
                             "batch leaves cores idle)")
    parser.add_argument("--intra-op-threads", type=int, default=0,
                        help="the batching server's --tensorflow_intra_op_parallelism (0: TensorFlow's default, "
                             "every core; 1: each op of a batch on one core, so the batch threads' calls run side "
                             "by side: see --matrix)")
    parser.add_argument("--inter-op-threads", type=int, default=0,
                        help="the batching server's --tensorflow_inter_op_parallelism (0: TensorFlow's default)")
    parser.add_argument("--matrix", action="store_true",
                        help="96 and 224 px x tf and onnx x two server settings (the flags' batching and threads, "
                             "and one core per op with batches of up to 8) at 1, 16 and 32 clients (gRPC, "
                             "batching on), then one table")
    parser.add_argument("--max-enqueued-batches", type=int, default=1000,
                        help="batching: max_enqueued_batches (1000)")
    args = parser.parse_args(argv)
    if not args.seconds > 0:
        parser.error("--seconds must be positive")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first requests of a client are not representative")
    if not args.concurrency:
        parser.error("--concurrency needs at least one value")
    for name in ("intra_op_threads", "inter_op_threads"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0 (0: the default, every core)")
    for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.batch_timeout_micros < 0:
        parser.error("--batch-timeout-micros must be >= 0")
    if args.crop_size < 0:
        parser.error("--crop-size must be a positive number of pixels (or 0 for the newest version as it is)")
    return args


def load_crops(runs_dir: str, size: int) -> tuple[np.ndarray, str]:
    """Face crops of the latest run (its prepared data), or random pixels without a run."""
    from dfdetect.export.exporter import sample_crops
    from dfdetect.runs import latest_run, read_run_config

    try:
        run_dir = latest_run(runs_dir)
        crops = sample_crops(read_run_config(run_dir)["data"]["prepared"], size, CROPS)
        return crops, f"sample crops of run {run_dir}"
    except DfdetectError as e:
        log.warning("no crops from a training run (%s): using random pixels", e)
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (CROPS, size, size, 3), dtype=np.uint8), "random pixels (no training run)"


def _fmt(value: float, spec: str) -> str:
    if value is None or not math.isfinite(value):
        return "-".rjust(int(spec.split(".")[0]))
    return format(value, spec)


def _load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def report_in_process(rows: list[Measurement]) -> None:
    print()
    print(f"{'in-process batch':>16} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'calls':>6}")
    for m in rows:
        print(f"{m.batch_size:>16d} {_fmt(m.images_per_second, '9.1f')} {_fmt(m.p50_ms, '8.2f')} "
              f"{_fmt(m.p99_ms, '8.2f')} {len(m.latencies):>6d}")


def _ratio(m: Measurement, batch_size: int) -> float:
    reference = m.references.get(batch_size)
    if reference is None or not reference.images_per_second > 0:
        return math.nan
    return m.images_per_second / reference.images_per_second


def report_served(rows: list[Measurement], best_batch: int) -> None:
    print()
    print(f"{'transport':<10} {'batching':<8} {'clients':>7} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'in-proc b' + str(best_batch):>11} {'served/in-proc':>14} {'mean batch':>10} {'requests':>8} "
          f"{'errors':>6}")
    for m in rows:
        ratio = _ratio(m, best_batch)
        reference = m.references.get(best_batch)
        print(f"{m.transport:<10} {m.batching:<8} {m.concurrency:>7d} {_fmt(m.images_per_second, '9.1f')} "
              f"{_fmt(m.p50_ms, '8.2f')} {_fmt(m.p99_ms, '8.2f')} "
              f"{_fmt(reference.images_per_second if reference else math.nan, '11.1f')} "
              f"{_fmt(ratio, '13.2f')}{'x' if math.isfinite(ratio) else ' '} "
              f"{_fmt(m.mean_batch, '10.1f')} {len(m.latencies):>8d} {m.errors:>6d}")
    for m in rows:
        if m.first_error:
            print(f"  {m.transport} batching {m.batching}, {m.concurrency} clients: {m.errors} error(s), "
                  f"first: {m.first_error}")


def report_targets(best_row: Measurement, served: list[Measurement], in_process: list[Measurement],
                   max_batch_size: int) -> None:
    best_batch = best_row.batch_size
    print()
    at_load = [m for m in served if m.transport == "gRPC" and m.batching == "on" and m.concurrency >= TARGET_RATIO_FROM]
    if at_load:
        ratios = {m.concurrency: _ratio(m, best_batch) for m in at_load}
        worst = min(ratios.values())
        figures = ", ".join(f"{c} clients {r:.2f}x" for c, r in ratios.items())
        verdict = "PASS" if worst >= TARGET_RATIO else "BELOW"
        print(f"target: served/in-process >= {TARGET_RATIO:g} at concurrency >= {TARGET_RATIO_FROM}, gRPC with "
              f"batching on, each row against in-process batch {best_batch} interleaved with it ({figures}): "
              f"{verdict}")
        # N clients with batch-1 requests can never make batches of more than N rows.
        for m in at_load:
            rows = min(m.concurrency, max_batch_size)
            fitting = [r for r in in_process if r.batch_size <= rows]
            if fitting:
                ceiling = max(fitting, key=lambda r: r.images_per_second)
                print(f"  ({m.concurrency} clients make batches of at most {rows} rows: in the sweep, the best such "
                      f"batch (batch {ceiling.batch_size}) is {ceiling.images_per_second / best_row.images_per_second:.2f}x "
                      f"of the best)")
    else:
        print(f"target: served/in-process >= {TARGET_RATIO:g} at concurrency >= {TARGET_RATIO_FROM}: not measured "
              f"(no --concurrency of {TARGET_RATIO_FROM} or more)")
    single = next((m for m in served if m.transport == "gRPC" and m.batching == "off" and m.concurrency == 1), None)
    if single is not None and single.latencies and 1 in single.references:
        batch1 = single.references[1]
        overhead = single.p50_ms - batch1.p50_ms
        verdict = "PASS" if overhead <= TARGET_OVERHEAD_MS else "BELOW"
        print(f"target: p50 overhead at concurrency 1 <= {TARGET_OVERHEAD_MS:g} ms over in-process batch 1 "
              f"(gRPC, batching off: {single.p50_ms:.2f} ms vs {batch1.p50_ms:.2f} ms interleaved): "
              f"{overhead:+.2f} ms: {verdict}")
    else:
        print(f"target: p50 overhead at concurrency 1 <= {TARGET_OVERHEAD_MS:g} ms: not measured "
              "(no answered gRPC requests at --unbatched-concurrency 1)")
    batched_single = next((m for m in served if m.transport == "gRPC" and m.batching == "on" and m.concurrency == 1),
                          None)
    if batched_single is not None and batched_single.latencies and 1 in batched_single.references:
        print(f"  (with batching on, concurrency 1: {batched_single.p50_ms - batched_single.references[1].p50_ms:+.2f} "
              f"ms, batch_timeout_micros included)")


def _open_version(backend: str, version_path: str):
    """(runner, crop size) of one version, checked against the model contract's pixels signature."""
    from dfdetect.serving.backends import load_runner

    try:
        runner = load_runner(backend, version_path)
    except FileNotFoundError as e:
        raise BadInputError(str(e)) from None
    sig = runner.signatures.get(SIGNATURE_PIXELS)
    shape = sig.inputs[INPUT_PIXELS].shape if sig is not None and INPUT_PIXELS in sig.inputs else None
    if sig is None or shape is None or OUTPUT_SCORE not in sig.outputs:
        runner.close()
        raise BadInputError(f"{version_path} ({backend}) has no {SIGNATURE_PIXELS} signature "
                            f"{INPUT_PIXELS} -> {OUTPUT_SCORE}")
    if len(shape) != 4 or not shape[1] or shape[1] != shape[2]:
        runner.close()
        raise BadInputError(f"{version_path}: {INPUT_PIXELS} has shape {shape}; expected [-1, S, S, 3]")
    return runner, int(shape[1])


def write_stand_in(repository: str, model_name: str, size: int, with_onnx: bool) -> str:
    """An untrained model of the training defaults' architecture taking ``size`` px crops,
    exported with the model contract's signatures as version 1 of ``model_name`` in
    ``repository`` (with its ONNX twin if asked): the compute of a trained model of that size.
    Returns the version folder."""
    from dfdetect.export.onnx_twin import convert
    from dfdetect.export.savedmodel import write_savedmodel
    from dfdetect.serving.backends import onnx_path
    from dfdetect.training.config import ModelConfig
    from dfdetect.training.model import build_model

    version_path = os.path.join(repository, model_name, "1")
    write_savedmodel(build_model(ModelConfig(image_size=size)), 1.0, version_path)
    if with_onnx:
        os.makedirs(os.path.dirname(onnx_path(version_path)), exist_ok=True)
        convert(version_path, onnx_path(version_path))
    return version_path


def open_model(args: argparse.Namespace, folder: str):
    """The version to benchmark: (runner, its model folder, crop size, what it is). The
    repository's newest version; with ``--crop-size`` and a version of another size (or none),
    a stand-in of that size written to ``folder``."""
    from dfdetect.serving.models import list_versions
    from dfdetect.training.config import ModelConfig

    base_path = os.path.abspath(os.path.join(args.model_repository, args.model_name))
    versions = list_versions(base_path)
    if not versions and not args.crop_size:
        raise BadInputError(f"no model in {os.path.join(args.model_repository, args.model_name)}: "
                            "run `make train export` first (or give --crop-size for an untrained stand-in)")
    other = ""
    if versions:
        newest = max(versions)
        version_path = os.path.join(base_path, versions[newest])
        runner, size = _open_version(args.backend, version_path)
        what = f"{args.model_name} version {newest} in {args.model_repository}"
        if not args.crop_size or size == args.crop_size:
            return runner, base_path, size, what
        runner.close()
        other = f"; {what} takes {size} px crops"
    log.info("writing an untrained %d px stand-in model ...", args.crop_size)
    version_path = write_stand_in(os.path.join(folder, "repository"), args.model_name, args.crop_size,
                                  args.backend == "onnx")
    runner, size = _open_version(args.backend, version_path)
    return runner, os.path.dirname(version_path), size, (
        f"an untrained {ModelConfig().backbone} with the training defaults' head at {size} px, exported as "
        f"the contract says (a stand-in with the compute of a trained model of that size{other})")


def run(args: argparse.Namespace) -> int:
    if args.matrix:
        return run_matrix(args)
    with tempfile.TemporaryDirectory(prefix="dfdetect-bench-serve-") as tmp:
        runner, base_path, size, what = open_model(args, tmp)
        try:
            return measure_and_report(args, runner, base_path, size, what, tmp)
        finally:
            runner.close()


def measure_and_report(args: argparse.Namespace, runner, base_path: str, size: int, what: str, tmp: str,
                       collect: list | None = None) -> int:
    crops, source = load_crops(args.runs_dir, size)
    print(f"model: {what}; backend {args.backend}, crops {size}x{size} px ({source})")
    print(f"machine: {os.cpu_count()} CPU core(s), shared by the clients and the server; load average "
          f"{_load_average()} (other work on the machine skews every figure)")
    print(f"in process: batch sizes {', '.join(map(str, IN_PROCESS_BATCHES))}; {args.warmup} untimed calls, then "
          f"about {args.seconds:g} s each ...")
    sys.stdout.flush()
    in_process = []
    for batch_size in IN_PROCESS_BATCHES:
        m = measure_in_process(runner, crops, batch_size, args.seconds, args.warmup)
        in_process.append(m)
        print(f"  batch {batch_size}: {m.images_per_second:.1f} images/s, p50 {m.p50_ms:.2f} ms")
        sys.stdout.flush()
    best_row = max(in_process, key=lambda m: m.images_per_second)

    requests = grpc_requests(args.model_name, crops)
    bodies = rest_bodies(crops)
    served: list[Measurement] = []
    most_clients = max([*args.concurrency, *args.rest_concurrency, *args.unbatched_concurrency])
    slice_seconds = args.seconds / SLICES

    def level(server: ServerProcess, transport: str, batching: str, clients: int) -> None:
        """One served row, in slices, each after a slice of its in-process baseline(s)."""
        row = Measurement(transport, batching, clients)
        references = [best_row.batch_size] + ([1] if clients == 1 and best_row.batch_size != 1 else [])
        row.references = {b: Measurement("in-process", "-", 1, b) for b in references}
        if transport == "gRPC":
            factory = grpc_client_factory(server.grpc_port, requests)
        else:
            factory = rest_client_factory(server.rest_port, args.model_name, bodies)
        for i in range(SLICES):
            for batch_size, reference in row.references.items():
                measure_in_process(runner, crops, batch_size, slice_seconds, 1, into=reference)
            drive(row, factory, slice_seconds, args.warmup if i == 0 else 1,
                  server.batch_counts if batching == "on" else None)
        served.append(row)
        print(f"  {transport} batching {batching}, {clients} client(s): {row.images_per_second:.1f} images/s, "
              f"p50 {row.p50_ms:.2f} ms, p99 {row.p99_ms:.2f} ms, "
              f"{_ratio(row, best_row.batch_size):.2f}x of in-process batch {best_row.batch_size}"
              + (f", mean batch {row.mean_batch:.1f}" if math.isfinite(row.mean_batch) else "")
              + (f", {row.errors} error(s)" if row.errors else ""))
        sys.stdout.flush()

    batching_path = batching_file(args, tmp)
    print()
    print(f"served by python -m dfdetect.serving in its own process, batching on (max_batch_size "
          f"{args.max_batch_size}, batch_timeout_micros {args.batch_timeout_micros}, num_batch_threads "
          f"{args.num_batch_threads}, max_enqueued_batches {args.max_enqueued_batches}; intra-op threads "
          f"{args.intra_op_threads}, inter-op {args.inter_op_threads}): batch-1 requests, "
          f"{args.warmup} untimed per client, then {SLICES} slices of {slice_seconds:.2g} s per level, each "
          f"after a slice of in-process batch {best_row.batch_size} ...")
    sys.stdout.flush()
    server = ServerProcess(args, base_path, tmp, batching_path, most_clients)
    try:
        check_answers(server.grpc_port, server.rest_port, args.model_name, requests[0], bodies[0])
        for clients in args.concurrency:
            level(server, "gRPC", "on", clients)
        for clients in args.rest_concurrency:
            level(server, "REST", "on", clients)
    finally:
        server.stop()

    if args.unbatched_concurrency:
        print()
        print("served, batching off ...")
        sys.stdout.flush()
        server = ServerProcess(args, base_path, tmp, None, most_clients)
        try:
            check_answers(server.grpc_port, server.rest_port, args.model_name, requests[0], bodies[0])
            for transport in ("gRPC", "REST"):
                for clients in args.unbatched_concurrency:
                    level(server, transport, "off", clients)
        finally:
            server.stop()

    print()
    print(f"load average at the end: {_load_average()}")
    report_in_process(in_process)
    print(f"best in the sweep: batch {best_row.batch_size}, {best_row.images_per_second:.1f} images/s; "
          f"batch 1 p50 {in_process[0].p50_ms:.2f} ms (served rows are compared with their own interleaved "
          f"in-process figures, column in-proc b{best_row.batch_size})")
    report_served(served, best_row.batch_size)
    report_targets(best_row, served, in_process, args.max_batch_size)
    if collect is not None:
        collect.append((in_process, served, best_row))
    return 0


MATRIX_SIZES = (96, 224)
MATRIX_BACKENDS = ("tf", "onnx")
MATRIX_CLIENTS = [1, 16, 32]
# The second server setting (serving/batching_cpu.config, with the threading flags below): a CPU
# server for cheap models. Each op of a batch on one core, so the two batch threads' calls run
# side by side instead of splitting every small op over the cores (in process at 96 px on 2
# cores, two callers make 536-564 images/s this way against 452 for one caller at batch 32 with
# TensorFlow's defaults), and batches of 8, which 16 clients fill two at a time. Its cost: where
# the clients can fill only one batch at a time (8 clients), that batch runs on one core. The
# batch size is the preset's own, read from it.
CPU_PRESET = Path(__file__).resolve().parents[1] / "serving" / "batching_cpu.config"


def _one_core_per_op() -> dict:
    from dfdetect.serving.config import read_batching_parameters

    return {"max_batch_size": read_batching_parameters(CPU_PRESET).max_batch_size.value, "intra_op_threads": 1,
            "inter_op_threads": os.cpu_count() or 1}


ONE_CORE_PER_OP = _one_core_per_op()


def _settings_label(args: argparse.Namespace) -> str:
    return (f"batches <= {args.max_batch_size}, intra-op "
            f"{args.intra_op_threads or 'default'}, inter-op {args.inter_op_threads or 'default'}")


def run_matrix(args: argparse.Namespace) -> int:
    """--matrix: every crop size x backend (the repository's model where it has that size, else
    a stand-in) x server setting (the flags', and ONE_CORE_PER_OP), gRPC batch-1 requests at 1,
    16 and 32 in flight with batching on; then one table."""
    import copy

    table = []
    for size in MATRIX_SIZES:
        for backend in MATRIX_BACKENDS:
            model = copy.copy(args)
            model.crop_size, model.backend = size, backend
            model.concurrency, model.rest_concurrency, model.unbatched_concurrency = MATRIX_CLIENTS, [], []
            # One model (a stand-in is exported once) for both server settings.
            with tempfile.TemporaryDirectory(prefix="dfdetect-bench-serve-") as tmp:
                runner, base_path, crop, what = open_model(model, tmp)
                try:
                    for settings in ({}, ONE_CORE_PER_OP):
                        sub = copy.copy(model)
                        for name, value in settings.items():
                            setattr(sub, name, value)
                        label = _settings_label(sub)
                        print(f"\n=== {size} px, {backend} backend, {label} ===")
                        collected: list = []
                        measure_and_report(sub, runner, base_path, crop, what, tmp, collect=collected)
                        in_process, served, best = collected[0]
                        table.append((size, backend, label, in_process, served, best))
                finally:
                    runner.close()
    print("\nserved gRPC (batch-1 requests, batching on) against in process, every model, backend and server "
          "setting:")
    print(f"{'crop':>5s} {'backend':8s} {'server':48s} {'clients':>7s} {'images/s':>9s} {'vs best batch':>13s} "
          f"{'vs batch <= clients':>19s} {'mean batch':>10s}")
    for size, backend, label, in_process, served, best in table:
        by_batch = {m.batch_size: m.images_per_second for m in in_process}
        for row in served:
            reachable = max((b for b in by_batch if b <= row.concurrency), default=1)
            print(f"{size:5d} {backend:8s} {label:48s} {row.concurrency:7d} {row.images_per_second:9.1f} "
                  f"{_ratio(row, best.batch_size):12.2f}x "
                  f"{row.images_per_second / by_batch[reachable]:12.2f}x (b{reachable:<2d}) "
                  f"{row.mean_batch:10.1f}")
    print("(vs best batch: the row's interleaved in-process best batch, one caller with TensorFlow's default "
          "threads; vs batch <= clients: the in-process sweep's batch the clients can fill at most. Targets from "
          "the issue: >= 0.75 at 96 px, >= 0.9 at 224 px.)")
    return 0


def main(argv=None) -> int:
    return run_benchmark(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
