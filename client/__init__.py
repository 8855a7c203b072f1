"""The client media backends call: a video or an image in, per-face, per-frame and per-input
verdicts out, from the served model over gRPC (or REST). ``dfdetect predict`` is its command line.

    from dfdetect.client import DeepfakeClient, ClientError

The names below are imported on first use, so that building the command line's parsers stays
cheap (the client itself imports OpenCV, onnxruntime and gRPC).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DeepfakeClient": "dfdetect.client.client",
    "MediaResult": "dfdetect.client.client",
    "FrameResult": "dfdetect.client.client",
    "FaceResult": "dfdetect.client.client",
    "FAKE": "dfdetect.client.client",
    "REAL": "dfdetect.client.client",
    "NO_FACE": "dfdetect.client.client",
    "ClientError": "dfdetect.client.errors",
    "RetryPolicy": "dfdetect.client.retries",
    "ModelMetadata": "dfdetect.client.metadata",
    "Transport": "dfdetect.client.transport",
    "connect": "dfdetect.client.transport",
    "GrpcTransport": "dfdetect.client.grpc_transport",
    "RestTransport": "dfdetect.client.rest_transport",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
