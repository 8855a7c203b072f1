"""TensorFlow Serving's status vocabulary, in one place and without grpc.

A status is a gRPC status name (``"INVALID_ARGUMENT"``, the name of a ``grpc.StatusCode``),
numbered as gRPC and ``tensorflow.error.Code`` number it, with the HTTP status TensorFlow
Serving's REST API answers it with. The server's error mapping, the client's errors and its REST
transport all read these tables, so a status means the same on every path.
"""

from __future__ import annotations

# name -> number (grpc.StatusCode and tensorflow.error.Code agree)
CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
    "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
    "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}
NAMES = frozenset(CODES)

# name -> HTTP status, as TensorFlow Serving's REST API maps them
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,  # client closed request
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}

# What a front for people (the web page) answers when the model server gives a status: problems
# with the upload are 4xx; problems reaching or using the model server are 5xx (the person can do
# nothing about them but retry). Any other status the server gives (unknown model, contract
# broken) is GATEWAY_DEFAULT.
GATEWAY_STATUS = {
    "INVALID_ARGUMENT": 422, "OUT_OF_RANGE": 422, "DATA_LOSS": 422,
    "RESOURCE_EXHAUSTED": 503, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}
GATEWAY_DEFAULT = 502

# What a proxy in front of a server (or an HTTP framework) answers, read as the status it stands for.
_PROXY_STATUS = {502: "UNAVAILABLE", 503: "UNAVAILABLE", 413: "RESOURCE_EXHAUSTED", 405: "UNIMPLEMENTED"}
# Where several names share an HTTP status, the one an answer of that status is read as.
_READ_AS = {400: "INVALID_ARGUMENT", 500: "INTERNAL"}


def status_for_http(http_status: int) -> str:
    """The status name an HTTP error answer stands for: the table read backwards (the first
    name of a shared status), what proxies answer, else INTERNAL (5xx) or INVALID_ARGUMENT."""
    if http_status in _PROXY_STATUS:
        return _PROXY_STATUS[http_status]
    if http_status in _READ_AS:
        return _READ_AS[http_status]
    for name, code in HTTP_STATUS.items():
        if code == http_status:
            return name
    return "INTERNAL" if http_status >= 500 else "INVALID_ARGUMENT"
