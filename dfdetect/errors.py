"""The product's exception types.

Every error a user can cause derives from :class:`DfdetectError`; the command line prints its
message and exits non-zero instead of showing a traceback.
"""


class DfdetectError(Exception):
    """Base class of the errors the product reports to its users."""


class BadInputError(DfdetectError):
    """Input that cannot be used: a missing dataset, a wrong layout, a bad option value."""


class MediaError(DfdetectError):
    """A media file (video or image) that cannot be read or holds nothing usable."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
