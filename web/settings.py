"""Settings of the web front: flags, with environment variables as their defaults.

Every setting has a flag of ``dfdetect web`` and an environment variable (the way a container is
configured); a flag wins over the variable, the variable over the built-in default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from dfdetect.contract import DEFAULT_MODEL_NAME, GRPC_PORT, WEB_PORT
from dfdetect.faces.frames import DEFAULT_FRAMES

MB = 1024 * 1024


@dataclass(frozen=True)
class WebSettings:
    """What the web front needs to know; see ``dfdetect web --help`` for each flag."""

    host: str = "127.0.0.1"                   # address to listen on (0.0.0.0 in a container)
    port: int = WEB_PORT                      # HTTP port of the page and the API
    server: str = f"localhost:{GRPC_PORT}"    # model server's gRPC address
    load_balancing: str = "pick_first"          # round_robin: requests spread over every address of the server name
    model_name: str = DEFAULT_MODEL_NAME       # served model name
    model_card: str | None = None              # model card (file, version folder or model folder)
    model_repository: str | None = "model_repository"  # local repository to find the answering version's card
    threshold: float | None = None             # decision threshold overriding the model card's
    frames: int = DEFAULT_FRAMES               # frames sampled per video
    max_upload_mb: float = 100.0               # largest request body accepted (413 beyond)
    max_concurrent: int = 2                    # analyses at once; more requests wait their turn
    max_waiting: int = 8                       # uploads received or waiting beyond those; more get 503
    timeout: float = 60.0                      # seconds each model-server call may take, retries included
    upload_idle_seconds: float = 10.0          # an upload sending nothing for this long is cut off (408)
    upload_seconds: float = 300.0              # the longest an upload may take to arrive (408 beyond)
    max_image_megapixels: float = 40.0         # larger images and video frames are refused before decoding

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return int(self.max_upload_mb * MB)

    def validate(self) -> "WebSettings":
        """The settings when every one is in range; else ValueError listing each problem."""
        problems = []
        if not 0 < self.port < 65536:
            problems.append(f"port must be in 1..65535, got {self.port}")
        if self.load_balancing not in ("pick_first", "round_robin"):
            problems.append(f"load_balancing must be pick_first or round_robin, got {self.load_balancing!r}")
        if self.max_upload_mb <= 0:
            problems.append(f"max_upload_mb must be > 0, got {self.max_upload_mb}")
        if self.max_concurrent < 1:
            problems.append(f"max_concurrent must be >= 1, got {self.max_concurrent}")
        if self.max_waiting < 0:
            problems.append(f"max_waiting must be >= 0, got {self.max_waiting}")
        if self.frames < 1:
            problems.append(f"frames must be >= 1, got {self.frames}")
        if self.timeout <= 0:
            problems.append(f"timeout must be > 0, got {self.timeout}")
        for name in ("upload_idle_seconds", "upload_seconds", "max_image_megapixels"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            problems.append(f"threshold must be in [0, 1], got {self.threshold}")
        if problems:
            raise ValueError("web settings: " + "; ".join(problems))
        return self


def env_name(field_name: str) -> str:
    """The environment variable of a setting: ``DFDETECT_WEB_<FIELD>``."""
    return f"DFDETECT_WEB_{field_name.upper()}"


def converter(f) -> type:
    """What turns a setting's text (a flag, an environment variable) into its value: int, float or str."""
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    return int if kind.startswith("int") else float if kind.startswith("float") else str


def env_defaults(environ=None) -> dict:
    """Settings given by environment variables, converted to the field's type."""
    environ = os.environ if environ is None else environ
    values = {}
    for f in fields(WebSettings):
        raw = environ.get(env_name(f.name))
        if raw is None or raw == "":
            continue
        convert = converter(f)
        try:
            values[f.name] = convert(raw)
        except ValueError:
            raise ValueError(f"{env_name(f.name)}={raw!r}: expected {convert.__name__}") from None
    return values
