"""How the client talks to the model server: gRPC (the default) or REST, behind one small interface.

Both transports speak TensorFlow Serving's APIs, so they work against TensorFlow Serving itself
and against the project's local server alike:

- ``metadata()``: GetModelMetadata (REST: ``GET /v1/models/NAME/metadata``), read into a
  :class:`ModelMetadata`: the crop size S (from the ``serving_default`` input shape), the
  signatures, and the version that answered.
- ``predict_pixels(crops)``: Predict on ``serving_default`` with uint8 crops [n, S, S, 3].
- ``predict_bytes(images)``: Predict on ``serve_image_bytes`` with encoded (JPEG/PNG) crops.

Both predict calls return ``(fake_probability per crop, version that answered)``.

Every call has a deadline (``timeout`` seconds, retries included) and is retried with
exponential backoff and jitter when the server says it is unavailable or overloaded
(``UNAVAILABLE`` / ``RESOURCE_EXHAUSTED``; over REST 503 / 429, and connections refused).
Everything that fails raises :class:`ClientError` with the gRPC status name.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import random
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, TypeVar
from urllib.parse import quote

import numpy as np

from dfdetect.client.errors import ClientError
from dfdetect.contract import (INPUT_BYTES, INPUT_PIXELS, OUTPUT_SCORE, SIGNATURE_BYTES, SIGNATURE_PIXELS)
from dfdetect.status import status_for_http

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0  # seconds per call, retries included
RETRYABLE = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED"})
# Room for what a request carries besides the crops (model spec, signature, shape, JSON keys).
REQUEST_OVERHEAD = 1024
# Responses are one float per crop; this only guards against a runaway answer.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# gRPC load balancing: pick_first (one connection, gRPC's default) or round_robin (a connection to
# every address of the target, requests spread over them).
LOAD_BALANCING = ("pick_first", "round_robin")
KEEPALIVE_MS = 30_000


# --- retries ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a call the server refused for now (UNAVAILABLE, RESOURCE_EXHAUSTED).

    The n-th retry (n = 0, 1, ...) waits ``initial_backoff * multiplier**n`` seconds, capped at
    ``max_backoff``, with jitter: a uniform draw from the upper half of that delay, so many
    clients refused together do not come back together. The call's deadline bounds the total.
    """

    retries: int = 3  # retries after the first attempt (0: none)
    initial_backoff: float = 0.1  # seconds before the first retry (before jitter)
    max_backoff: float = 5.0  # longest wait between two attempts
    multiplier: float = 2.0  # growth of the wait from one retry to the next

    def __post_init__(self):
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ClientError("INVALID_ARGUMENT", f"retries must be a whole number >= 0, got {self.retries!r}")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ClientError("INVALID_ARGUMENT", "backoff must satisfy 0 <= initial_backoff <= max_backoff, got "
                                                  f"initial {self.initial_backoff}, max {self.max_backoff}")
        if self.multiplier < 1:
            raise ClientError("INVALID_ARGUMENT", f"backoff multiplier must be >= 1, got {self.multiplier}")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based), jitter included."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** retry)
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


class _AttemptFailed(Exception):
    """One attempt of a call failed; ``retryable`` says whether trying again can help."""

    def __init__(self, error: ClientError, retryable: bool | None = None):
        super().__init__(str(error))
        self.error = error
        self.retryable = error.status in RETRYABLE if retryable is None else retryable


# --- what the server says about the model -------------------------------------------------------

@dataclass(frozen=True)
class ModelMetadata:
    """What GetModelMetadata says of a dfdetect model."""

    name: str
    version: int  # the version that answered
    crop_size: int  # S: the side of the uint8 crops ``serving_default`` takes
    signatures: tuple[str, ...]  # all signature names, sorted
    accepts_bytes: bool  # serve_image_bytes is there and takes encoded crops


def _dims(tensor: dict) -> list[int]:
    shape = tensor.get("tensor_shape", {})
    if shape.get("unknown_rank"):
        return []
    return [int(d.get("size", 0)) for d in shape.get("dim", [])]


def parse_metadata(name: str, version: int, signature_defs: dict) -> ModelMetadata:
    """Check a model's signatures against the dfdetect contract and read S from them.

    ``signature_defs`` is the SignatureDefMap as JSON with proto field names, as the REST API
    returns it and as ``json_format.MessageToDict`` renders the gRPC answer.
    """
    where = f"model {name} version {version}"
    expected = (f"a dfdetect model has {SIGNATURE_PIXELS} (input {INPUT_PIXELS}: uint8 [-1, S, S, 3], output "
                f"{OUTPUT_SCORE}) and {SIGNATURE_BYTES} (input {INPUT_BYTES}: string [-1])")
    names = tuple(sorted(signature_defs))
    pixels = signature_defs.get(SIGNATURE_PIXELS)
    if pixels is None:
        raise ClientError("FAILED_PRECONDITION", f"{where} has no {SIGNATURE_PIXELS} signature "
                                                 f"(signatures: {', '.join(names) or 'none'}); {expected}")
    tensor = pixels.get("inputs", {}).get(INPUT_PIXELS)
    if tensor is None:
        raise ClientError("FAILED_PRECONDITION", f"{where}: {SIGNATURE_PIXELS} has no input {INPUT_PIXELS} "
                                                 f"(inputs: {', '.join(sorted(pixels.get('inputs', {}))) or 'none'}); "
                                                 f"{expected}")
    dims = _dims(tensor)
    dtype = tensor.get("dtype", "DT_INVALID")
    if dtype != "DT_UINT8" or len(dims) != 4 or dims[3] != 3 or dims[1] != dims[2] or dims[1] <= 0:
        raise ClientError("FAILED_PRECONDITION", f"{where}: input {INPUT_PIXELS} of {SIGNATURE_PIXELS} is {dtype} "
                                                 f"{dims or 'of unknown shape'}; {expected}")
    if OUTPUT_SCORE not in pixels.get("outputs", {}):
        raise ClientError("FAILED_PRECONDITION", f"{where}: {SIGNATURE_PIXELS} has no output {OUTPUT_SCORE}; "
                                                 f"{expected}")
    raw = signature_defs.get(SIGNATURE_BYTES, {})
    accepts_bytes = (raw.get("inputs", {}).get(INPUT_BYTES, {}).get("dtype") == "DT_STRING"
                     and OUTPUT_SCORE in raw.get("outputs", {}))
    return ModelMetadata(name=name, version=int(version), crop_size=dims[1], signatures=names,
                         accepts_bytes=accepts_bytes)


def metadata_from_grpc(response, model_name: str, what: str) -> ModelMetadata:
    """A GetModelMetadata answer (``dfdetect.wire`` messages) read as the client's ModelMetadata."""
    from google.protobuf import json_format

    from dfdetect.wire.services import signature_def_map

    signatures = signature_def_map(response)
    if signatures is None:
        raise ClientError("FAILED_PRECONDITION", f"{what}: the answer carries no signature_def")
    as_json = json_format.MessageToDict(signatures, preserving_proto_field_name=True)
    return parse_metadata(response.model_spec.name or model_name, response.model_spec.version.value,
                          as_json.get("signature_def", {}))


def _checked_scores(values, count: int, where: str) -> np.ndarray:
    scores = np.asarray(values, dtype=np.float32).reshape(-1)
    if scores.size != count:
        raise ClientError("INTERNAL", f"{where}: the server answered {scores.size} scores for {count} crops")
    return scores


def _read(source: bytes | str | os.PathLike | None, what: str) -> bytes | None:
    """PEM material given as bytes or as a file path."""
    if source is None or isinstance(source, bytes):
        return source
    try:
        with open(source, "rb") as f:
            return f.read()
    except OSError as e:
        raise ClientError("INVALID_ARGUMENT", f"cannot read the {what} file {source}: {e.strerror or e}") from None


# --- the interface ----------------------------------------------------------------------------

class Transport:
    """The calls the client makes, with deadlines and retries; subclasses do one attempt each."""

    kind = "?"

    def __init__(self, target: str, model_name: str, *, version: int | None = None,
                 version_label: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep):
        if not model_name:
            raise ClientError("INVALID_ARGUMENT", "model_name must not be empty")
        if version is not None and version_label is not None:
            raise ClientError("INVALID_ARGUMENT", f"give a model version or a version label, not both "
                                                  f"(got version {version} and label {version_label!r})")
        if version is not None and (not isinstance(version, int) or version <= 0):
            raise ClientError("INVALID_ARGUMENT", f"model version must be a positive integer, got {version!r}")
        if not timeout or timeout <= 0:
            raise ClientError("INVALID_ARGUMENT", f"timeout must be a positive number of seconds, got {timeout!r}")
        self.target = target
        self.model_name = model_name
        self.version = version
        self.version_label = version_label
        self.timeout = float(timeout)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = random.Random()

    # Subclasses implement these.
    def metadata(self) -> ModelMetadata:
        raise NotImplementedError

    def predict_pixels(self, crops: np.ndarray, version: int | None = None) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def predict_bytes(self, images: list[bytes], version: int | None = None) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def item_bytes(self, raw_bytes: int, binary: bool) -> int:
        """Bytes one crop of ``raw_bytes`` adds to a request (encoded as this transport sends it)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    # Shared.
    @property
    def model_description(self) -> str:
        if self.version is not None:
            return f"model {self.model_name} version {self.version}"
        if self.version_label is not None:
            return f"model {self.model_name} (label {self.version_label})"
        return f"model {self.model_name}"

    def _call(self, what: str, attempt: Callable[[float], T]) -> T:
        """Run ``attempt(seconds left)`` until it succeeds, retrying what can be retried, within
        the deadline. Attempts raise _AttemptFailed; the caller sees ClientError."""
        deadline = time.monotonic() + self.timeout
        retry = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientError("DEADLINE_EXCEEDED", f"{what}: no answer from {self.target} within the "
                                                       f"deadline of {self.timeout:g} s")
            try:
                return attempt(left)
            except _AttemptFailed as failed:
                error = failed.error
                if not failed.retryable:
                    raise error from None
                if retry >= self.retry.retries:
                    raise ClientError(error.status, f"{error.message} (gave up after {retry + 1} attempt"
                                                    f"{'s' if retry else ''})") from None
                delay = self.retry.delay(retry, self._rng)
                if time.monotonic() + delay >= deadline:
                    raise ClientError(error.status, f"{error.message} (gave up after {retry + 1} attempt"
                                                    f"{'s' if retry else ''}: the deadline of {self.timeout:g} s "
                                                    "leaves no time to retry)") from None
                retry += 1
                log.warning("%s: %s; retry %d of %d in %.2f s", what, error.message, retry, self.retry.retries,
                            delay)
                self._sleep(delay)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- gRPC ---------------------------------------------------------------------------------------

def tls_credentials(root_certificates: bytes | str | os.PathLike | None = None,
                    private_key: bytes | str | os.PathLike | None = None,
                    certificate_chain: bytes | str | os.PathLike | None = None):
    """gRPC channel credentials for TLS.

    ``root_certificates``: PEM of the CAs to trust (bytes or a file path; None: the system's).
    ``private_key`` and ``certificate_chain``: the client's own key and certificate, for servers
    that require mutual TLS (both or neither).
    """
    import grpc

    if (private_key is None) != (certificate_chain is None):
        raise ClientError("INVALID_ARGUMENT", "mutual TLS needs both private_key and certificate_chain, or neither")
    return grpc.ssl_channel_credentials(root_certificates=_read(root_certificates, "root certificates"),
                                        private_key=_read(private_key, "private key"),
                                        certificate_chain=_read(certificate_chain, "certificate chain"))


class GrpcTransport(Transport):
    """TensorFlow Serving's PredictionService over one gRPC channel (thread-safe)."""

    kind = "grpc"

    def __init__(self, target: str, model_name: str, *, credentials=None, load_balancing: str = "pick_first",
                 **options):
        super().__init__(target, model_name, **options)
        import grpc

        from dfdetect.wire.services import PredictionServiceStub

        if load_balancing not in LOAD_BALANCING:
            raise ClientError("INVALID_ARGUMENT", f"load_balancing must be one of {', '.join(LOAD_BALANCING)}, "
                                                  f"got {load_balancing!r}")
        self.load_balancing = load_balancing
        channel_options = [("grpc.max_send_message_length", -1),
                           ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
                           # round_robin: one connection to every address the target resolves to
                           # (dns:///a headless Service name: every pod), requests spread over them.
                           ("grpc.service_config", json.dumps({"loadBalancingConfig": [{load_balancing: {}}]})),
                           # Pings keep idle connections alive through proxies and find dead peers;
                           # a peer's GOAWAY or loss makes the channel resolve the name again (new
                           # pods join when servers cap their connections' age).
                           ("grpc.keepalive_time_ms", KEEPALIVE_MS), ("grpc.keepalive_timeout_ms", 10_000),
                           ("grpc.dns_min_time_between_resolutions_ms", 5_000)]
        self.channel = (grpc.secure_channel(target, credentials, channel_options) if credentials is not None
                        else grpc.insecure_channel(target, channel_options))
        self.stub = PredictionServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _version_choice(self, version: int | None = None) -> dict:
        """The version a request asks for: the one given, else the client's pin or label."""
        return dict(version=version if version is not None else self.version,
                    version_label=None if version is not None else self.version_label)

    def _attempt(self, method, request, left: float, what: str):
        import grpc

        try:
            return method(request, timeout=left)
        except grpc.RpcError as e:
            code = e.code() if callable(getattr(e, "code", None)) else grpc.StatusCode.UNKNOWN
            details = (e.details() if callable(getattr(e, "details", None)) else None) or str(e)
            status = code.name
            if status == "UNAVAILABLE":
                message = f"model server {self.target} unavailable: {details}"
            elif status == "DEADLINE_EXCEEDED":
                message = f"{what}: no answer from {self.target} within the deadline of {self.timeout:g} s"
            else:
                message = f"{what}: {details}"
            # A request over the server's message limit fails the same way every time.
            too_large = status == "RESOURCE_EXHAUSTED" and "larger than max" in details
            if too_large:
                message += " (lower max_request_bytes so requests stay under the server's limit)"
            raise _AttemptFailed(ClientError(status, message), retryable=False if too_large else None) from None

    def metadata(self) -> ModelMetadata:
        from dfdetect.wire.requests import metadata_request

        request = metadata_request(self.model_name, **self._version_choice())
        what = f"GetModelMetadata of {self.model_description}"
        response = self._call(what, lambda left: self._attempt(self.stub.GetModelMetadata, request, left, what))
        return metadata_from_grpc(response, self.model_name, what)

    def _predict(self, signature: str, alias: str, value: np.ndarray, count: int,
                 version: int | None) -> tuple[np.ndarray, int]:
        from dfdetect.wire.requests import predict_request
        from dfdetect.wire.tensors import make_ndarray

        request = predict_request(self.model_name, signature, {alias: value}, output_filter=[OUTPUT_SCORE],
                                  **self._version_choice(version))
        what = f"Predict ({signature}, {count} crops) on {self.model_description}"
        response = self._call(what, lambda left: self._attempt(self.stub.Predict, request, left, what))
        if OUTPUT_SCORE not in response.outputs:
            raise ClientError("FAILED_PRECONDITION", f"{what}: the answer has no {OUTPUT_SCORE} output "
                                                     f"(outputs: {', '.join(sorted(response.outputs)) or 'none'})")
        try:
            values = make_ndarray(response.outputs[OUTPUT_SCORE])
        except ValueError as e:
            raise ClientError("FAILED_PRECONDITION", f"{what}: the {OUTPUT_SCORE} output cannot be read: {e}") from None
        scores = _checked_scores(values, count, what)
        return scores, int(response.model_spec.version.value)

    def predict_pixels(self, crops: np.ndarray, version: int | None = None) -> tuple[np.ndarray, int]:
        return self._predict(SIGNATURE_PIXELS, INPUT_PIXELS, np.ascontiguousarray(crops, dtype=np.uint8),
                             len(crops), version)

    def predict_bytes(self, images: list[bytes], version: int | None = None) -> tuple[np.ndarray, int]:
        value = np.empty(len(images), dtype=object)
        value[:] = list(images)
        return self._predict(SIGNATURE_BYTES, INPUT_BYTES, value, len(images), version)

    def item_bytes(self, raw_bytes: int, binary: bool) -> int:
        # A string element costs its length plus a tag and a length varint; pixels are raw.
        return raw_bytes + 6 if binary else raw_bytes


# --- REST -------------------------------------------------------------------------------------------

class RestTransport(Transport):
    """TensorFlow Serving's REST API (``/v1/models/...``), JSON over HTTP(S).

    REST answers do not say which version answered, so predictions go to the version the
    metadata named (``/versions/N:predict``); when that version has been unloaded since, the
    metadata is read again once. The deadline bounds every wait on the socket.
    """

    kind = "rest"

    def __init__(self, target: str, model_name: str, *, ssl_context: ssl.SSLContext | None = None, **options):
        super().__init__(target, model_name, **options)
        scheme = "https" if ssl_context is not None else "http"
        self.base_url = (target if "://" in target else f"{scheme}://{target}").rstrip("/")
        self.ssl_context = ssl_context
        self._served_version: int | None = None

    def _model_path(self, version: int | None = None) -> str:
        path = f"/v1/models/{quote(self.model_name, safe='')}"
        version = version if version is not None else self.version
        if version is not None:
            return f"{path}/versions/{version}"
        if self.version_label is not None:
            return f"{path}/labels/{quote(self.version_label, safe='')}"
        return path

    def _attempt(self, method: str, path: str, body: dict | None, left: float, what: str) -> dict:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=left, context=self.ssl_context) as response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read() or b"{}").get("error") or e.reason
            except (ValueError, AttributeError, OSError):
                detail = e.reason
            status = status_for_http(e.code)
            message = (f"model server {self.base_url} unavailable: HTTP {e.code}: {detail}"
                       if status == "UNAVAILABLE" else f"{what}: HTTP {e.code}: {detail}")
            raise _AttemptFailed(ClientError(status, message), retryable=False if e.code == 413 else None) from None
        except (TimeoutError, socket.timeout):
            raise _AttemptFailed(ClientError("DEADLINE_EXCEEDED", f"{what}: no answer from {self.base_url} within "
                                                                  f"the deadline of {self.timeout:g} s")) from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (TimeoutError, socket.timeout)):
                raise _AttemptFailed(ClientError("DEADLINE_EXCEEDED", f"{what}: no answer from {self.base_url} "
                                                                      f"within the deadline of {self.timeout:g} s")) from None
            raise _AttemptFailed(ClientError("UNAVAILABLE", f"model server {self.base_url} unavailable: "
                                                            f"{e.reason}")) from None
        except (http.client.HTTPException, ConnectionError, ssl.SSLError) as e:
            raise _AttemptFailed(ClientError("UNAVAILABLE", f"model server {self.base_url} unavailable: "
                                                            f"{type(e).__name__}: {e}")) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise _AttemptFailed(ClientError("INTERNAL", f"{what}: the answer is not JSON"), retryable=False) from None

    def _request(self, method: str, path: str, body: dict | None, what: str) -> dict:
        return self._call(what, lambda left: self._attempt(method, path, body, left, what))

    def metadata(self) -> ModelMetadata:
        what = f"GET {self._model_path()}/metadata"
        doc = self._request("GET", f"{self._model_path()}/metadata", None, what)
        try:
            spec = doc["model_spec"]
            signature_defs = doc["metadata"]["signature_def"].get("signature_def", {})
            version = int(spec["version"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ClientError("INTERNAL", f"{what}: unexpected answer (expected model_spec and "
                                          "metadata.signature_def)") from None
        meta = parse_metadata(spec.get("name") or self.model_name, version, signature_defs)
        self._served_version = meta.version
        return meta

    def _predict(self, signature: str, instances: list, count: int, version: int | None) -> tuple[np.ndarray, int]:
        pinned = version if version is not None else self.version
        for refreshed in (False, True):
            target = pinned if pinned is not None else (self._served_version or self.metadata().version)
            path = f"{self._model_path(target)}:predict"
            what = f"POST {path} ({signature}, {count} crops)"
            try:
                doc = self._request("POST", path, {"signature_name": signature, "instances": instances}, what)
            except ClientError as e:
                # The version the metadata named was unloaded since: follow the server once.
                if e.status == "NOT_FOUND" and pinned is None and not refreshed:
                    self.metadata()
                    continue
                raise
            if not isinstance(doc, dict) or "predictions" not in doc:
                raise ClientError("INTERNAL", f"{what}: unexpected answer (expected predictions)")
            predictions = doc["predictions"]
            if predictions and isinstance(predictions[0], dict):  # several outputs: one object per row
                predictions = [row.get(OUTPUT_SCORE) for row in predictions]
            try:
                return _checked_scores(predictions, count, what), int(target)
            except (TypeError, ValueError):
                raise ClientError("INTERNAL", f"{what}: the predictions are not {OUTPUT_SCORE} scores") from None
        raise AssertionError("unreachable")

    def predict_pixels(self, crops: np.ndarray, version: int | None = None) -> tuple[np.ndarray, int]:
        crops = np.asarray(crops, dtype=np.uint8)
        return self._predict(SIGNATURE_PIXELS, crops.tolist(), len(crops), version)

    def predict_bytes(self, images: list[bytes], version: int | None = None) -> tuple[np.ndarray, int]:
        instances = [{"b64": base64.b64encode(b).decode("ascii")} for b in images]
        return self._predict(SIGNATURE_BYTES, instances, len(images), version)

    def item_bytes(self, raw_bytes: int, binary: bool) -> int:
        # Base64 in {"b64":"..."}, or each pixel as up to three digits and a comma.
        return 4 * ((raw_bytes + 2) // 3) + 12 if binary else 4 * raw_bytes + 16


def rest_ssl_context(root_certificates: str | os.PathLike | bytes | None = None,
                     private_key: str | os.PathLike | None = None,
                     certificate_chain: str | os.PathLike | None = None) -> ssl.SSLContext:
    """An HTTPS context trusting ``root_certificates`` (PEM bytes or a file; None: the system's),
    with the client's key and certificate files for mutual TLS."""
    if (private_key is None) != (certificate_chain is None):
        raise ClientError("INVALID_ARGUMENT", "mutual TLS needs both private_key and certificate_chain, or neither")
    try:
        if isinstance(root_certificates, bytes):
            context = ssl.create_default_context(cadata=root_certificates.decode("ascii"))
        else:
            context = ssl.create_default_context(cafile=None if root_certificates is None else str(root_certificates))
        if certificate_chain is not None:
            if isinstance(private_key, bytes) or isinstance(certificate_chain, bytes):
                raise ClientError("INVALID_ARGUMENT", "over REST, the client key and certificate must be file paths")
            context.load_cert_chain(str(certificate_chain), str(private_key))
    except (OSError, ssl.SSLError, UnicodeDecodeError) as e:
        raise ClientError("INVALID_ARGUMENT", f"cannot load TLS certificates: {e}") from None
    return context
