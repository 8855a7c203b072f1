"""The client's one exception type: :class:`ClientError`, carrying a gRPC status name.

Everything that goes wrong in the client raises it: a missing or corrupt input file, a bad
argument, a model server that cannot be reached, a deadline that passed, a model that does not
follow the contract. Backends switch on ``status`` (the name of a ``grpc.StatusCode``, the same
vocabulary for the gRPC and REST transports) and show ``message`` to people.
"""

from __future__ import annotations

from dfdetect.errors import DfdetectError
from dfdetect.status import NAMES as STATUS_NAMES

class ClientError(DfdetectError):
    """Something went wrong analysing an input or talking to the model server.

    ``status``: a ``grpc.StatusCode`` name, e.g. ``"INVALID_ARGUMENT"`` (bad input),
    ``"NOT_FOUND"`` (missing file, unknown model or version), ``"UNAVAILABLE"`` (server not
    reachable, after retries), ``"DEADLINE_EXCEEDED"``. ``source``: the input it concerns, if any.
    """

    def __init__(self, status: str, message: str, source: str | None = None):
        if status not in STATUS_NAMES:
            raise ValueError(f"status must be a grpc.StatusCode name, got {status!r}")
        self.status = status
        self.message = message
        self.source = None if source is None else str(source)
        super().__init__(f"{self.source}: {message} [{status}]" if self.source else f"{message} [{status}]")

    def for_source(self, source) -> "ClientError":
        """The same error, naming the input it concerns (unchanged when it already names one)."""
        if self.source is not None:
            return self
        error = ClientError(self.status, self.message, source)
        error.__cause__ = self.__cause__
        return error

    def to_dict(self) -> dict:
        """``{"status": ..., "message": ...}``, as ``dfdetect predict --json`` prints a failed input."""
        return {"status": self.status, "message": self.message}

    def __reduce__(self):  # picklable, so errors can cross process boundaries (worker pools)
        return ClientError, (self.status, self.message, self.source)
