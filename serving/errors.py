"""Serving errors and their status codes: the one place where a failure gets its gRPC code and
its HTTP status (TensorFlow Serving's mapping), so both APIs answer alike."""

from __future__ import annotations

from http import HTTPStatus

import grpc

from dfdetect import status

Code = grpc.StatusCode

# gRPC code -> HTTP status, as TensorFlow Serving's REST API maps them (dfdetect.status).
HTTP_STATUS = {Code[name]: http_status for name, http_status in status.HTTP_STATUS.items()}


class ServingError(Exception):
    """A request the server refuses or cannot answer, with the status to answer it with."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """The HTTP status TensorFlow Serving's REST API answers for this code (500 when unmapped)."""
        return int(HTTP_STATUS.get(self.code, HTTPStatus.INTERNAL_SERVER_ERROR))

    @property
    def code_name(self) -> str:
        """The gRPC status name, e.g. ``INVALID_ARGUMENT``."""
        return self.code.name


def invalid(message: str) -> ServingError:
    """An INVALID_ARGUMENT error with ``message``."""
    return ServingError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    """A NOT_FOUND error with ``message``."""
    return ServingError(Code.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    """A FAILED_PRECONDITION error with ``message``."""
    return ServingError(Code.FAILED_PRECONDITION, message)


def unimplemented(message: str) -> ServingError:
    """An UNIMPLEMENTED error with ``message``."""
    return ServingError(Code.UNIMPLEMENTED, message)


def exhausted(message: str) -> ServingError:
    """A RESOURCE_EXHAUSTED error with ``message``."""
    return ServingError(Code.RESOURCE_EXHAUSTED, message)


def unavailable(message: str) -> ServingError:
    """An UNAVAILABLE error with ``message``."""
    return ServingError(Code.UNAVAILABLE, message)
