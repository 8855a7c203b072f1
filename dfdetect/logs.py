"""Logging, configured once for the whole product.

Modules log through named loggers (``logging.getLogger(__name__)``); the level comes from the
``DFDETECT_LOG_LEVEL`` environment variable (default INFO).
"""

import logging
import os

LEVEL_ENV = "DFDETECT_LOG_LEVEL"


def configure_logging(level: str | None = None) -> None:
    """Set up the root handler once; later calls only change the level."""
    name = (level or os.environ.get(LEVEL_ENV) or "INFO").upper()
    numeric = logging.getLevelName(name)
    if not isinstance(numeric, int):
        raise ValueError(f"{LEVEL_ENV} must be one of DEBUG, INFO, WARNING, ERROR; got {name!r}")
    root = logging.getLogger()
    if not any(getattr(h, "_dfdetect", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._dfdetect = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(numeric)
