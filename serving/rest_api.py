"""The REST API of TensorFlow Serving, on uvicorn (HTTP/1.1 parsed by h11).

``GET  /v1/models/NAME[/versions/N|/labels/L]``            model status
``GET  /v1/models/NAME[/versions/N|/labels/L]/metadata``   signatures
``POST /v1/models/NAME[/versions/N|/labels/L]:predict``    row (``instances``) or columnar
                                                          (``inputs``) JSON, ``{"b64": ...}`` binaries
``GET  <monitoring path>``                                 Prometheus metrics, when enabled

Errors are ``{"error": "..."}`` with TensorFlow Serving's HTTP status for the gRPC code.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

import numpy as np
import tensorflow as tf

from dfdetect.serving import inference, protos
from dfdetect.serving.core import ServingCore, Spec
from dfdetect.serving.errors import ServingError, invalid

log = logging.getLogger(__name__)

_PREDICT = re.compile(r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)")
_STATUS = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?")
MAX_BODY_BYTES = 64 * 1024 * 1024
HEADER_SECONDS = 10.0  # the longest a client may take to send a request's headers


def _spec(name, version, label, signature="") -> Spec:
    if version is not None:
        try:
            number = int(version)
            if number >= 2**63:
                raise ValueError
        except ValueError:
            raise invalid(f"Failed to convert version: {version} to numeric.") from None
    else:
        number = None
    return Spec(unquote(name), number, unquote(label) if label else None, signature)


# --- JSON <-> tensors ------------------------------------------------------------------------

def _leaf_bytes(value):
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise invalid(f"JSON Value: {json.dumps(value)} Type: Object is not of expected type: string "
                          "(a string or {\"b64\": \"...\"})")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError:
            raise invalid("Unable to base64 decode") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise invalid(f"JSON Value: {json.dumps(value)} is not of expected type: string")


def _has_boolean(value) -> bool:
    if isinstance(value, list):
        return any(_has_boolean(v) for v in value)
    return isinstance(value, bool)


def _to_array(value, spec, where: str, booleans: bool = True) -> np.ndarray:
    """A JSON value as an array of the input's dtype. ``booleans``: whether the body may hold
    true/false at all (numpy reads a true among numbers as 1, so they are looked for)."""
    if spec.dtype == tf.string:
        def convert(v):
            return [convert(x) for x in v] if isinstance(v, list) else _leaf_bytes(v)
        converted = convert(value)
        try:
            array = np.array(converted, dtype=object)
        except ValueError as e:
            raise invalid(f"{where}: ragged string values ({e})") from None
        return array
    try:
        array = np.array(value)  # as JSON has them: then each kind is checked against the dtype
    except (ValueError, TypeError, OverflowError) as e:
        raise invalid(f"{where}: cannot read the values as {spec.dtype.name} ({e})") from None
    dtype = spec.dtype
    if array.dtype == object or array.dtype.kind in "US":
        raise invalid(f"{where}: cannot read the values as {dtype.name} (they are not all numbers)")
    if array.size and dtype != tf.bool and (array.dtype.kind == "b" or (booleans and _has_boolean(value))):
        raise invalid(f"JSON Value: true/false Type: Boolean is not of expected type: {dtype.name} ({where})")
    if array.size and dtype.is_integer:
        if array.dtype.kind == "f":
            bad = array.reshape(-1)[np.flatnonzero(array.reshape(-1) != np.round(array.reshape(-1)))[:1]]
            shown = float(bad[0]) if bad.size else float(array.reshape(-1)[0])
            raise invalid(f"JSON Value: {shown!r} Type: Number is not of expected type: {dtype.name} ({where})")
        low, high = array.min(), array.max()
        if low < dtype.min or high > dtype.max:
            raise invalid(f"JSON Value: {int(low if low < dtype.min else high)} Type: Number is out of range for "
                          f"type: {dtype.name} ({dtype.min} to {dtype.max}; {where})")
    try:
        return array.astype(dtype.as_numpy_dtype, copy=False)
    except (ValueError, TypeError, OverflowError) as e:
        raise invalid(f"{where}: cannot read the values as {dtype.name} ({e})") from None


def parse_predict_body(body: bytes, signature_of, limits=None) -> tuple[str, dict[str, np.ndarray], bool]:
    """(signature name, inputs, row format?) of a predict request body.

    ``signature_of(name)`` returns the Signature the inputs are read against; more instances
    than ``limits`` (RequestLimits) allow are refused before any is converted.
    """
    if not body.strip():
        raise invalid("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise invalid(f"JSON Parse error: {e}") from None
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {json.dumps(doc)[:200]} Is not object")
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid("JSON Value: ... not formatted correctly. 'signature_name' key must be a string value.")
    if "instances" in doc and "inputs" in doc:
        raise invalid("JSON Value: request Not formatted correctly expecting only one of 'inputs' or "
                      "'instances' keys to exist ")
    if "instances" not in doc and "inputs" not in doc:
        raise invalid("Missing 'inputs' or 'instances' key")
    sig = signature_of(signature_name)
    aliases = sorted(sig.inputs)
    booleans = b"true" in body or b"false" in body

    def to_array(value, alias, where):
        return _to_array(value, sig.inputs[alias], where, booleans)

    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid("JSON Value: instances Excepting 'instances' to be an list/array")
        if not instances:
            raise invalid("JSON Value: instances No values in 'instances' array")
        if limits is not None:
            limits.check_batch("instances", len(instances))
        if len(aliases) == 1 and not all(isinstance(i, dict) and set(i) == set(aliases) and "b64" not in i
                                         for i in instances):
            return sig.name, {aliases[0]: to_array(instances, aliases[0], "instances")}, True
        columns: dict[str, list] = {a: [] for a in aliases}
        for n, row in enumerate(instances):
            if not isinstance(row, dict):
                raise invalid("instances is a plain list, but expecting list of objects as multiple input tensors "
                              "required as per tensorinfo_map")
            if set(row) != set(aliases):
                raise invalid(f"Failed to process element: {n} of 'instances' list. JSON object: "
                              f"{json.dumps(row)[:200]} must only have keys: {','.join(aliases)}")
            for a in aliases:
                columns[a].append(row[a])
        return sig.name, {a: to_array(columns[a], a, f"instances key {a}") for a in aliases}, True
    inputs = doc["inputs"]
    if len(aliases) == 1 and not (isinstance(inputs, dict) and set(inputs) == set(aliases)):
        return sig.name, {aliases[0]: to_array(inputs, aliases[0], "inputs")}, False
    if not isinstance(inputs, dict):
        raise invalid("inputs is a plain value/list, but expecting an object as multiple input tensors required "
                      "as per tensorinfo_map")
    for a in aliases:
        if a not in inputs:
            raise invalid(f"Missing named input: {a} in 'inputs' object.")
    extra = sorted(set(inputs) - set(aliases))
    if extra:
        raise invalid(f"input tensor alias not found in signature: {extra[0]}. "
                      f"Inputs expected to be in the set {{{','.join(aliases)}}}.")
    return sig.name, {a: to_array(inputs[a], a, f"inputs key {a}") for a in aliases}, False


def _jsonable(name: str, array: np.ndarray):
    if array.dtype.kind in ("S", "O"):
        def render(v):
            if isinstance(v, list):
                return [render(x) for x in v]
            if name.endswith("_bytes"):
                return {"b64": base64.b64encode(v).decode()}
            try:
                return v.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(v).decode()}
        return render(array.tolist())
    return array.tolist()


def render_outputs(outputs: dict[str, np.ndarray], row: bool) -> dict:
    """Outputs as the REST answer: columnar ``outputs``, or with ``row`` per-instance ``predictions``
    (INVALID_ARGUMENT when their batch sizes differ)."""
    names = sorted(outputs)
    if not row:
        if len(names) == 1:
            return {"outputs": _jsonable(names[0], outputs[names[0]])}
        return {"outputs": {n: _jsonable(n, outputs[n]) for n in names}}
    sizes = {n: (outputs[n].shape[0] if outputs[n].ndim else None) for n in names}
    for n, size in sizes.items():
        if size is None:
            raise invalid(f"Tensor name: {n} has no shape information ")
    first = sizes[names[0]]
    for n in names:
        if sizes[n] != first:
            raise invalid(f"Tensor name: {n} has inconsistent batch size: {sizes[n]} expecting: {first}")
    if len(names) == 1:
        return {"predictions": _jsonable(names[0], outputs[names[0]])}
    columns = {n: _jsonable(n, outputs[n]) for n in names}
    return {"predictions": [{n: columns[n][i] for n in names} for i in range(first)]}


def _feature(value, where: str):
    """A JSON value (number, string, {"b64": ...}, or a list of one kind) as a tf.train.Feature."""
    values = value if isinstance(value, list) else [value]
    if values and all(isinstance(v, bool) for v in values):
        raise invalid(f"{where}: booleans are not a tf.Example feature type")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    if all(isinstance(v, (str, dict)) for v in values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[_leaf_bytes(v) for v in values]))
    raise invalid(f"{where}: a feature takes numbers, strings or {{\"b64\": ...}} values of one kind, got "
                  f"{json.dumps(value)[:200]}")


def _example(features, where: str):
    if not isinstance(features, dict):
        raise invalid(f"{where}: an example is a JSON object of features, got {json.dumps(features)[:200]}")
    example = tf.train.Example()
    for name, value in features.items():
        example.features.feature[name].CopyFrom(_feature(value, f"{where} feature {name}"))
    return example


def parse_examples_body(body: bytes) -> tuple[str, list[bytes]]:
    """A :classify / :regress body: (signature name, serialized tf.Example per example)."""
    try:
        doc = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError) as e:
        raise invalid(f"JSON Parse error: {e}") from None
    if not isinstance(doc, dict):
        raise invalid("JSON Value: request is not an object with 'examples'")
    signature = doc.get("signature_name", "")
    if not isinstance(signature, str):
        raise invalid("'signature_name' key must be a string value.")
    examples = doc.get("examples")
    if not isinstance(examples, list) or not examples:
        raise invalid("'examples' key must be a non-empty list of objects")
    parsed = [_example(e, f"examples[{i}]") for i, e in enumerate(examples)]
    context = _example(doc["context"], "context") if "context" in doc else None
    return signature, inference.serialized_examples(parsed, context)


# --- the HTTP server -------------------------------------------------------------------------

# --- requests -> the core -----------------------------------------------------------------------

Response = tuple[int, bytes, str]  # status, body, content type


def _json(status: int, doc) -> Response:
    return status, (json.dumps(doc, indent=4) + "\n").encode(), "application/json"


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message})


class RestHandler:
    """TensorFlow Serving's REST API over the core: (method, path, body) -> response. Runs in the
    server's worker threads (the core's calls block)."""

    def __init__(self, core: ServingCore, metrics=None, metrics_path: str | None = None):
        self.core = core
        self.metrics = metrics
        self.metrics_path = metrics_path if metrics is not None else None

    def handle(self, method: str, path: str, body: bytes) -> Response:
        """Answer one request: (status, body, content type); errors as ``{"error": ...}``, a bug as 500."""
        try:
            if self.metrics_path and path == self.metrics_path and method == "GET":
                data, content_type = self.metrics.exposition()
                return 200, data, content_type
            if not re.fullmatch(r"(?i)/v1/.*", path):
                return _error(404, f"Not found: {method} {path}")
            if method == "POST" and (m := _PREDICT.fullmatch(path)):
                name, version, label, verb = m.groups()
                if verb.lower() != "predict":
                    return self._infer(verb.lower(), _spec(name, version, label), body)
                return self._predict(_spec(name, version, label), body)
            if method == "GET" and (m := _STATUS.fullmatch(path)):
                name, version, label, metadata = m.groups()
                if not name:
                    raise invalid("Missing model name in request.")
                spec = _spec(name, version, label)
                if metadata:
                    model, resolved, signature_defs = self.core.metadata(spec)
                    return _json(200, protos.metadata_json(model, resolved, signature_defs))
                states = self.core.status(spec.name, spec.version, spec.label)
                return _json(200, protos.to_json(protos.status_response(states)))
            raise invalid(f"Malformed request: {method} {path}")
        except ServingError as e:
            return _error(e.http_status, e.message)
        except Exception as e:  # a bug must not take the server down; the client gets a 500
            log.exception("REST request %s %s failed", method, path)
            return _error(500, f"internal error: {type(e).__name__}")

    def _infer(self, verb: str, spec: Spec, body: bytes) -> Response:
        """:classify and :regress: JSON examples -> tf.Example -> the signature -> "results"."""
        signature, examples = parse_examples_body(body)
        spec.signature = signature
        if verb == "classify":
            rows = inference.classify(self.core, spec, examples, api="rest").rows()
            results = [[list(pair) for pair in row] for row in rows]
        else:
            results = [float(v) for v in inference.regress(self.core, spec, examples, api="rest").values]
        return _json(200, {"results": results})

    def _predict(self, spec: Spec, body: bytes) -> Response:
        core = self.core

        def signature_of(name: str):
            with core.manager.acquire(spec.name, spec.version, spec.label) as loaded:
                return core.manager.signature(loaded, name)

        signature, inputs, row = parse_predict_body(body, signature_of, core.limits)
        spec.signature = signature
        result = core.predict(spec, inputs, api="rest")
        return _json(200, render_outputs(result.outputs, row))


# --- HTTP ---------------------------------------------------------------------------------------

def _no_delay(transport) -> None:
    """Send small writes at once (TCP_NODELAY). asyncio sets it only on sockets made with the
    protocol number, which a listening socket from ``socket.create_server`` is not: without it an
    answer's body, written after its headers, waited for the client's delayed ACK (40 ms a
    request on a kept-alive connection, measured: a status GET 44 ms instead of 1)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # the connection is already gone
            pass


class _Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 (h11: strict parsing, so no body is ever read as a request) with a
    deadline for a request's headers: from a connection's first byte, or from the end of the
    answer before on a kept-alive one. (uvicorn bounds only the idle time between requests.)"""

    header_seconds = 10.0

    def connection_made(self, transport):
        super().connection_made(transport)
        _no_delay(transport)
        self._header_timer = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_seconds, self._headers_too_slow)
        elif not waiting and self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_lost(self, exc):
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.debug("REST client %s: no complete request headers in %.0f s; closing", self.client,
                      self.header_seconds)
            self.transport.close()


class _App:
    """The ASGI side: reads the body (bounded in size and time), hands the request to a worker
    thread, answers; while draining, every new request is 503 with ``Connection: close``."""

    def __init__(self, server: "RestServer"):
        self.server = server

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":  # (uvicorn runs it with lifespan off)
            return
        server = self.server
        method = scope["method"]
        path = scope["raw_path"].decode("latin-1")  # names stay percent-encoded until the handler reads them
        if server.draining:
            return await _send(send, *_error(503, "the server is shutting down"), close=True)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if method in ("POST", "PUT") and length is None and b"transfer-encoding" not in headers:
            return await _send(send, *_error(411, "a request with a body needs a Content-Length header"), close=True)
        if length is not None and int(length) > server.max_body_bytes:  # h11 has checked it is a number
            return await _send(send, *_error(413, f"request body of {int(length)} bytes exceeds the limit of "
                                                  f"{server.max_body_bytes} bytes"), close=True)
        try:
            body = await self._body(receive)
        except _TooLarge:
            return await _send(send, *_error(413, f"request body exceeds the limit of {server.max_body_bytes} "
                                                  "bytes"), close=True)
        except asyncio.TimeoutError:
            return await _send(send, *_error(408, f"the request body did not arrive within {server.timeout:g} s"),
                               close=True)
        except _Disconnected:
            return
        work = asyncio.get_running_loop().run_in_executor(server.workers, server.handler.handle, method, path, body)
        try:
            response = await asyncio.wait_for(asyncio.shield(work), server.timeout)
        except asyncio.TimeoutError:  # the work finishes on its thread; nobody waits for it
            response = _error(504, f"Deadline Exceeded: no answer within --rest_api_timeout_in_ms "
                                   f"({server.timeout * 1000:.0f} ms)")
        await _send(send, *response, close=server.draining)

    async def _body(self, receive) -> bytes:
        server = self.server
        deadline = asyncio.get_running_loop().time() + server.timeout
        chunks, size = [], 0
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise asyncio.TimeoutError
            message = await asyncio.wait_for(receive(), remaining)
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > server.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def _send(send, status: int, body: bytes, content_type: str, close: bool = False) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RestServer:
    """The REST API on uvicorn, in a thread of its own with its own event loop.

    ``timeout`` (--rest_api_timeout_in_ms): for a request's headers to arrive (at most
    HEADER_SECONDS), its body, and its answer (504 DEADLINE_EXCEEDED after it). ``workers`` (--rest_api_num_threads): the threads that run
    requests. ``max_body_bytes``: larger bodies are 413, unread."""

    def __init__(self, core: ServingCore, port: int, host: str = "0.0.0.0", metrics=None,
                 metrics_path: str | None = None, timeout: float = 30.0, workers: int = 0,
                 max_body_bytes: int = MAX_BODY_BYTES):
        import uvicorn

        self.handler = RestHandler(core, metrics, metrics_path)
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.draining = False
        self.workers = ThreadPoolExecutor(max_workers=workers or 4 * (os.cpu_count() or 1), thread_name_prefix="rest")
        self._socket = socket.create_server((host, port), reuse_port=False, backlog=1024)
        self.port = self._socket.getsockname()[1]
        protocol = type("Protocol", (_Protocol,), {"header_seconds": min(HEADER_SECONDS, timeout)})
        config = uvicorn.Config(_App(self), http=protocol, lifespan="off", log_level="warning", access_log=False,
                                timeout_keep_alive=5, timeout_graceful_shutdown=30, server_header=False,
                                date_header=False, h11_max_incomplete_event_size=64 * 1024)
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._socket]}, name="rest",
                                        daemon=True)

    def start(self) -> None:
        """Start uvicorn in its thread and wait until it listens; OSError when it does not within 30 s."""
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the REST server did not start on port {self.port}")
            time.sleep(0.01)

    def drain(self) -> None:
        """From now on every new request is answered 503 with ``Connection: close``."""
        self.draining = True

    def stop(self, grace: float = 30.0) -> None:
        """Stop accepting, close idle connections, give requests in flight up to ``grace`` s."""
        self.draining = True
        self._uvicorn.config.timeout_graceful_shutdown = grace
        self._uvicorn.should_exit = True
        self._thread.join(grace + 5)
        self.workers.shutdown(wait=False, cancel_futures=True)
