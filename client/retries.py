"""Deadlines and retries of the client's calls to the model server.

Every call has a deadline (``timeout`` seconds, retries included) and is retried with
exponential backoff and jitter when the server says it is unavailable or overloaded
(``UNAVAILABLE`` / ``RESOURCE_EXHAUSTED``; over REST 503 / 429, and connections refused), or
cancelled a call as it shut down (``CANCELLED``).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from dfdetect.client.errors import ClientError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0  # seconds per call, retries included
# CANCELLED too: the client cancels none of its own calls (its deadline ends them as
# DEADLINE_EXCEEDED), so a cancelled call is one a server cancelled as it shut down, having taken
# it but not started it; every call the client makes only reads, so trying again is safe.
RETRYABLE = frozenset({"UNAVAILABLE", "RESOURCE_EXHAUSTED", "CANCELLED"})


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a call the server refused for now (UNAVAILABLE, RESOURCE_EXHAUSTED) or cancelled.

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


class AttemptFailed(Exception):
    """One attempt of a call failed; ``retryable`` says whether trying again can help."""

    def __init__(self, error: ClientError, retryable: bool | None = None):
        super().__init__(str(error))
        self.error = error
        self.retryable = error.status in RETRYABLE if retryable is None else retryable




def call_with_retries(what: str, target: str, timeout: float, retry: RetryPolicy, attempt: Callable[[float], T],
                      sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None) -> T:
    """Run ``attempt(seconds left)`` until it succeeds, retrying what can be retried, within
    ``timeout`` seconds. Attempts raise AttemptFailed; the caller sees ClientError."""
    deadline = time.monotonic() + timeout
    retries = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClientError("DEADLINE_EXCEEDED", f"{what}: no answer from {target} within the "
                                                   f"deadline of {timeout:g} s")
        try:
            return attempt(left)
        except AttemptFailed as failed:
            error = failed.error
            if not failed.retryable:
                raise error from None
            if retries >= retry.retries:
                raise ClientError(error.status, f"{error.message} (gave up after {retries + 1} attempt"
                                                f"{'s' if retries else ''})") from None
            delay = retry.delay(retries, rng)
            if time.monotonic() + delay >= deadline:
                raise ClientError(error.status, f"{error.message} (gave up after {retries + 1} attempt"
                                                f"{'s' if retries else ''}: the deadline of {timeout:g} s "
                                                "leaves no time to retry)") from None
            retries += 1
            log.warning("%s: %s; retry %d of %d in %.2f s", what, error.message, retries, retry.retries, delay)
            sleep(delay)
