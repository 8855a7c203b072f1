"""The REST transport: TensorFlow Serving's REST API (``/v1/models/...``), JSON over HTTP(S)."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import urllib.error
import urllib.request
from urllib.parse import quote

import numpy as np

from dfdetect.client.errors import ClientError
from dfdetect.client.metadata import ModelMetadata, checked_scores, parse_metadata
from dfdetect.client.retries import AttemptFailed
from dfdetect.client.transport import MAX_RESPONSE_BYTES, RetryingTransport
from dfdetect.contract import OUTPUT_SCORE, SIGNATURE_BYTES, SIGNATURE_PIXELS
from dfdetect.status import status_for_http


class RestTransport(RetryingTransport):
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
            raise AttemptFailed(ClientError(status, message), retryable=False if e.code == 413 else None) from None
        except (TimeoutError, socket.timeout):
            raise AttemptFailed(ClientError("DEADLINE_EXCEEDED", f"{what}: no answer from {self.base_url} within "
                                                                  f"the deadline of {self.timeout:g} s")) from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (TimeoutError, socket.timeout)):
                raise AttemptFailed(ClientError("DEADLINE_EXCEEDED", f"{what}: no answer from {self.base_url} "
                                                                      f"within the deadline of {self.timeout:g} s")) from None
            raise AttemptFailed(ClientError("UNAVAILABLE", f"model server {self.base_url} unavailable: "
                                                            f"{e.reason}")) from None
        except (http.client.HTTPException, ConnectionError, ssl.SSLError) as e:
            raise AttemptFailed(ClientError("UNAVAILABLE", f"model server {self.base_url} unavailable: "
                                                            f"{type(e).__name__}: {e}")) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise AttemptFailed(ClientError("INTERNAL", f"{what}: the answer is not JSON"), retryable=False) from None

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
                return checked_scores(predictions, count, what), int(target)
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
