"""The REST API of TensorFlow Serving, on a threaded HTTP server.

``GET  /v1/models/NAME[/versions/N|/labels/L]``            model status
``GET  /v1/models/NAME[/versions/N|/labels/L]/metadata``   signatures
``POST /v1/models/NAME[/versions/N|/labels/L]:predict``    row (``instances``) or columnar
                                                          (``inputs``) JSON, ``{"b64": ...}`` binaries
``GET  <monitoring path>``                                 Prometheus metrics, when enabled

Errors are ``{"error": "..."}`` with TensorFlow Serving's HTTP status for the gRPC code.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import numpy as np
import tensorflow as tf

from dfdetect.serving import inference, protos
from dfdetect.serving.core import ServingCore, Spec
from dfdetect.serving.errors import ServingError, invalid

log = logging.getLogger(__name__)

_PREDICT = re.compile(r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)")
_STATUS = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?")
MAX_BODY_BYTES = 256 * 1024 * 1024


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


def _to_array(value, spec, where: str) -> np.ndarray:
    """A JSON value as an array of the input's dtype."""
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
        array = np.array(value, dtype=spec.dtype.as_numpy_dtype)
    except (ValueError, TypeError, OverflowError) as e:
        raise invalid(f"{where}: cannot read the values as {spec.dtype.name} ({e})") from None
    return array


def parse_predict_body(body: bytes, signature_of) -> tuple[str, dict[str, np.ndarray], bool]:
    """(signature name, inputs, row format?) of a predict request body.

    ``signature_of(name)`` returns the Signature the inputs are read against.
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
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid("JSON Value: instances Excepting 'instances' to be an list/array")
        if not instances:
            raise invalid("JSON Value: instances No values in 'instances' array")
        if len(aliases) == 1 and not all(isinstance(i, dict) and set(i) == set(aliases) and "b64" not in i
                                         for i in instances):
            return sig.name, {aliases[0]: _to_array(instances, sig.inputs[aliases[0]], "instances")}, True
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
        return sig.name, {a: _to_array(columns[a], sig.inputs[a], f"instances key {a}") for a in aliases}, True
    inputs = doc["inputs"]
    if len(aliases) == 1 and not (isinstance(inputs, dict) and set(inputs) == set(aliases)):
        return sig.name, {aliases[0]: _to_array(inputs, sig.inputs[aliases[0]], "inputs")}, False
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
    return sig.name, {a: _to_array(inputs[a], sig.inputs[a], f"inputs key {a}") for a in aliases}, False


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

class _Handler(BaseHTTPRequestHandler):
    server_version = "dfdetect-model-server"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart
    timeout = 5  # an idle keep-alive connection closes after 5 s, so a drain never waits on it
    api: "RestServer"

    def log_message(self, fmt, *args):  # routed to the named logger, not stderr
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc) -> None:
        self._send(status, (json.dumps(doc, indent=4) + "\n").encode())

    def _error(self, error: ServingError) -> None:
        self._json(error.http_status, {"error": error.message})

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise invalid(f"request body of {length} bytes exceeds the limit of {MAX_BODY_BYTES}")
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        api = self.api
        try:
            body = self._body() if method in ("POST", "PUT") else b""
            if api.metrics_path and path == api.metrics_path and method == "GET":
                data, content_type = api.metrics.exposition()
                return self._send(200, data, content_type)
            if not re.fullmatch(r"(?i)/v1/.*", path):
                return self._json(404, {"error": f"Not found: {method} {path}"})
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
                    model, resolved, signature_defs = api.core.metadata(spec)
                    return self._json(200, protos.metadata_json(model, resolved, signature_defs))
                states = api.core.status(spec.name, spec.version, spec.label)
                return self._json(200, protos.to_json(protos.status_response(states)))
            raise invalid(f"Malformed request: {method} {path}")
        except ServingError as e:
            self._error(e)
        except (ConnectionResetError, BrokenPipeError) as e:  # the client left mid-request: nobody to answer
            log.debug("REST client went away during %s %s: %s", method, path, e)
            self.close_connection = True
        except Exception as e:  # a bug must not take the server down; the client gets a 500
            log.exception("REST request %s %s failed", method, path)
            self._json(500, {"error": f"internal error: {type(e).__name__}: {e}"})

    def _infer(self, verb: str, spec: Spec, body: bytes) -> None:
        """:classify and :regress: JSON examples -> tf.Example -> the signature -> "results"."""
        signature, examples = parse_examples_body(body)
        spec.signature = signature
        if verb == "classify":
            rows = inference.classify(self.api.core, spec, examples, api="rest").rows()
            results = [[list(pair) for pair in row] for row in rows]
        else:
            results = [float(v) for v in inference.regress(self.api.core, spec, examples, api="rest").values]
        self._json(200, {"results": results})

    def _predict(self, spec: Spec, body: bytes) -> None:
        core = self.api.core

        def signature_of(name: str):
            with core.manager.acquire(spec.name, spec.version, spec.label) as loaded:
                return core.manager.signature(loaded, name)

        signature, inputs, row = parse_predict_body(body, signature_of)
        spec.signature = signature
        result = core.predict(spec, inputs, api="rest")
        self._json(200, render_outputs(result.outputs, row))


class RestServer:
    def __init__(self, core: ServingCore, port: int, host: str = "0.0.0.0", metrics=None, metrics_path: str | None = None,
                 timeout: float = 30.0):
        self.core = core
        self.metrics = metrics
        self.metrics_path = metrics_path if metrics is not None else None
        # --rest_api_timeout_in_ms bounds every wait for a client's bytes (and idle keep-alive).
        handler = type("Handler", (_Handler,), {"api": self, "timeout": min(_Handler.timeout, timeout)})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = False  # shutdown waits for requests in flight
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="rest", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, then wait for the requests in flight."""
        self.httpd.shutdown()
        self.httpd.server_close()
