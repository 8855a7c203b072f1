"""RestUser: TensorFlow Serving's REST API (``/v1/models/NAME...``), JSON over HTTP, reported by
locust's HTTP client (request types ``POST`` and ``GET``).

Task mix per user: ``:predict`` with one face crop (6) and with a batch of faces (3, default 16),
the model's metadata (1) and its status (1). JPEG crops go as ``{"b64": ...}`` instances to
``serve_image_bytes``, or pixels as nested lists to ``serving_default`` (``--signature``), cut at
the size S the metadata gives. Host: locust's ``--host`` (default http://localhost:8501).
"""

import base64
import json
from urllib.parse import quote

import gevent
from locust import task
from locust.contrib.fasthttp import FastHttpUser

import _common
from dfdetect.client.errors import ClientError
from dfdetect.client.metadata import parse_metadata
from dfdetect.contract import SIGNATURE_BYTES

JSON = {"Content-Type": "application/json"}


def _predict_body(signature: str, items) -> bytes:
    """The body of a ``:predict`` request, serialized once."""
    if signature == SIGNATURE_BYTES:
        instances = [{"b64": base64.b64encode(item).decode("ascii")} for item in items]
    else:
        instances = [item.tolist() for item in items]
    return json.dumps({"signature_name": signature, "instances": instances}, separators=(",", ":")).encode()


def _failure_text(response) -> str:
    """What went wrong with an answer: the server's ``{"error": ...}``, else the HTTP status or
    the connection error."""
    if not response.status_code:
        return f"no answer: {response.error}"
    try:
        detail = json.loads(response.content or b"{}").get("error")
    except (ValueError, AttributeError):
        detail = None
    return f"HTTP {response.status_code}: {detail or (response.text or '')[:200]}"


class RestUser(FastHttpUser):
    """Calls the model server's REST API as a web backend would."""

    host = _common.DEFAULT_REST_HOST
    wait_time = _common.think_time

    def __init__(self, environment):
        timeout = _common.settings(environment).request_timeout
        self.network_timeout = self.connection_timeout = timeout
        super().__init__(environment)

    def on_start(self):
        """Read the options and the model's metadata."""
        self.options = _common.settings(self.environment)
        self.model_path = f"/v1/models/{quote(self.options.model_name, safe='')}"
        self.workload = None
        self.turn = 0
        self._ready()

    def _get(self, name: str, path: str):
        """A GET reported under ``name``; its JSON answer, or None when it failed."""
        with self.client.get(path, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(_failure_text(response))
                return None
            try:
                return json.loads(response.content)
            except ValueError:
                response.failure("the answer is not JSON")
                return None

    def _ready(self) -> bool:
        """Read the model's metadata once (S and its signatures) and take this process's
        prepared request bodies for it; after a failure, pause and let the next task try again."""
        if self.workload is not None:
            return True
        with self.client.get(f"{self.model_path}/metadata", name=_common.METADATA, catch_response=True) as response:
            meta = None
            if response.status_code != 200:
                response.failure(_failure_text(response))
            else:
                try:
                    doc = json.loads(response.content)
                    spec = doc["model_spec"]
                    meta = parse_metadata(spec.get("name") or self.options.model_name, int(spec["version"]),
                                          doc["metadata"]["signature_def"].get("signature_def", {}))
                except (ValueError, KeyError, TypeError, AttributeError):
                    response.failure("unexpected metadata (expected model_spec and metadata.signature_def)")
                except ClientError as e:
                    response.failure(str(e))
        if meta is None:
            gevent.sleep(_common.SETUP_RETRY_SECONDS)
            return False
        signature = _common.choose_signature(self.options.signature, meta.accepts_bytes)
        size = self.options.batch_size

        def build():
            payload = _common.FACES.payload(meta.crop_size, size)
            items = payload.jpegs if signature == SIGNATURE_BYTES else payload.pixels
            return [_predict_body(signature, [item]) for item in items], _predict_body(signature, items)

        self.workload = _common.WORKLOADS.get(("rest", signature, meta.crop_size, size), build)
        return True

    def _predict(self, name: str, body: bytes, count: int) -> None:
        with self.client.post(f"{self.model_path}:predict", data=body, headers=JSON, name=name,
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(_failure_text(response))
                return
            try:
                predictions = json.loads(response.content)["predictions"]
            except (ValueError, KeyError, TypeError):
                response.failure("unexpected answer (expected predictions)")
                return
            if not isinstance(predictions, list) or len(predictions) != count:
                response.failure(f"{len(predictions) if isinstance(predictions, list) else 'no'} predictions "
                                 f"for {count} crops")

    # --- tasks ----------------------------------------------------------------------------------

    @task(6)
    def predict_one_face(self):
        """POST ``:predict`` with one face crop (the next of the prepared ones)."""
        if self._ready():
            singles, _ = self.workload
            self.turn = (self.turn + 1) % len(singles)
            self._predict(_common.SINGLE, singles[self.turn], 1)

    @task(3)
    def predict_batch(self):
        """POST ``:predict`` with the batch of ``--batch-size`` crops."""
        if self._ready():
            _, batch = self.workload
            self._predict(_common.batch_name(self.options.batch_size), batch, self.options.batch_size)

    @task(1)
    def metadata(self):
        """GET the model's metadata (``/v1/models/NAME/metadata``)."""
        self._get(_common.METADATA, f"{self.model_path}/metadata")

    @task(1)
    def status(self):
        """GET the model's status (``/v1/models/NAME``)."""
        self._get(_common.STATUS, self.model_path)
