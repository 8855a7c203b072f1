"""How the client talks to the model server: the :class:`Transport` interface, and ``connect``,
which opens one over gRPC (the default, ``grpc_transport``) or REST (``rest_transport``).

Both transports speak TensorFlow Serving's APIs, so they work against TensorFlow Serving itself
and against the project's local server alike:

- ``metadata()``: GetModelMetadata (REST: ``GET /v1/models/NAME/metadata``), read into a
  :class:`ModelMetadata`: the crop size S (from the ``serving_default`` input shape), the
  signatures, and the version that answered.
- ``predict_pixels(crops)``: Predict on ``serving_default`` with uint8 crops [n, S, S, 3].
- ``predict_bytes(images)``: Predict on ``serve_image_bytes`` with encoded (JPEG/PNG) crops.

Both predict calls return ``(fake_probability per crop, version that answered)``. Every call has
a deadline and retries (``retries``); everything that fails raises :class:`ClientError` with the
gRPC status name.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Protocol, TypeVar, runtime_checkable

import numpy as np

from dfdetect.client.errors import ClientError
from dfdetect.client.metadata import ModelMetadata
from dfdetect.client.retries import DEFAULT_TIMEOUT, RetryPolicy, call_with_retries
from dfdetect.contract import DEFAULT_MODEL_NAME, GRPC_PORT, REST_PORT

T = TypeVar("T")

TRANSPORTS = ("grpc", "rest")
# Room for what a request carries besides the crops (model spec, signature, shape, JSON keys).
REQUEST_OVERHEAD = 1024
# Responses are one float per crop; this only guards against a runaway answer.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# gRPC load balancing: pick_first (one connection, gRPC's default) or round_robin (a connection to
# every address of the target, requests spread over them).
LOAD_BALANCING = ("pick_first", "round_robin")


@runtime_checkable
class Transport(Protocol):
    """The calls :class:`DeepfakeClient` makes of a model server; hand it any object that has them."""

    kind: str  # "grpc", "rest", ...: for messages
    target: str  # the server's address, for messages
    model_name: str

    def metadata(self) -> ModelMetadata:
        """The served model's metadata (GetModelMetadata), of the version asked for."""
        ...

    def predict_pixels(self, crops: np.ndarray, version: int | None = None) -> tuple[np.ndarray, int]:
        """Scores of uint8 crops [n, S, S, 3] and the version that answered."""
        ...

    def predict_bytes(self, images: list[bytes], version: int | None = None) -> tuple[np.ndarray, int]:
        """Scores of encoded (JPEG/PNG) crops and the version that answered."""
        ...

    def item_bytes(self, raw_bytes: int, binary: bool) -> int:
        """Bytes one crop of ``raw_bytes`` adds to a request (encoded as this transport sends it)."""
        ...

    def close(self) -> None:
        ...


class RetryingTransport:
    """What both transports share: the model and version asked for, and every call run with a
    deadline and retries (``call_with_retries``); subclasses make one attempt each."""

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

    @property
    def model_description(self) -> str:
        if self.version is not None:
            return f"model {self.model_name} version {self.version}"
        if self.version_label is not None:
            return f"model {self.model_name} (label {self.version_label})"
        return f"model {self.model_name}"

    def close(self) -> None:
        pass

    def _call(self, what: str, attempt: Callable[[float], T]) -> T:
        return call_with_retries(what, self.target, self.timeout, self.retry, attempt, self._sleep, self._rng)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect(target: str | None = None, model_name: str = DEFAULT_MODEL_NAME, *, transport: str = "grpc",
            version: int | None = None, version_label: str | None = None, timeout: float = DEFAULT_TIMEOUT,
            retry: RetryPolicy | None = None, tls: bool = False, root_certificates=None, private_key=None,
            certificate_chain=None, load_balancing: str = "pick_first") -> Transport:
    """A transport to a model server: ``transport`` "grpc" (``target`` default localhost:8500) or
    "rest" (localhost:8501, or a URL). TLS when ``tls`` or any PEM material is given (bytes or
    file paths; without roots the system's are trusted); ``private_key`` and
    ``certificate_chain`` for mutual TLS. ``load_balancing`` (gRPC): pick_first or round_robin."""
    if transport not in TRANSPORTS:
        raise ClientError("INVALID_ARGUMENT", f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    secure = tls or any(v is not None for v in (root_certificates, private_key, certificate_chain))
    options = dict(version=version, version_label=version_label, timeout=timeout, retry=retry)
    if transport == "grpc":
        from dfdetect.client.grpc_transport import GrpcTransport
        from dfdetect.client.tls import tls_credentials

        creds = tls_credentials(root_certificates, private_key, certificate_chain) if secure else None
        return GrpcTransport(target or f"localhost:{GRPC_PORT}", model_name, credentials=creds,
                             load_balancing=load_balancing, **options)
    from dfdetect.client.rest_transport import RestTransport
    from dfdetect.client.tls import rest_ssl_context

    context = rest_ssl_context(root_certificates, private_key, certificate_chain) if secure else None
    return RestTransport(target or f"localhost:{REST_PORT}", model_name, ssl_context=context, **options)
