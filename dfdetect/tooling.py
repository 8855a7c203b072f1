"""Tools for the deploy script, the tests and the benchmarks: a free loopback port, the model
server in a process of its own, waited on until a model is AVAILABLE, and raw HTTP exchanges
(the hostile-input checks: bytes as a broken or slow client sends them, image-bomb headers).

Nothing here imports TensorFlow or grpc; the server process is ``python -m dfdetect.serving``,
started the way ``make deploy`` starts it.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from dfdetect.errors import DfdetectError

T = TypeVar("T")

START_TIMEOUT = 300.0  # seconds for a server to load a version (a large model on a busy machine)


class NotReadyError(DfdetectError):
    """A process that was started did not become ready (it exited, or the time ran out)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for a server started by a test or a benchmark)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 2.0):
    """The JSON body at ``url``, or None while nothing (or no JSON) answers there."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None


def version_states(rest_port: int, model: str, host: str = "127.0.0.1") -> list[dict] | None:
    """The model's ``model_version_status`` entries from a server's REST port, or None while the
    server does not answer (or does not know the model yet)."""
    body = get_json(f"http://{host}:{rest_port}/v1/models/{model}")
    try:
        return list(body["model_version_status"])
    except (TypeError, KeyError):
        return None


def newest_available(rest_port: int, model: str, host: str = "127.0.0.1") -> str | None:
    """The newest AVAILABLE version of the model on the server, or None."""
    available = [v["version"] for v in version_states(rest_port, model, host) or [] if v["state"] == "AVAILABLE"]
    return max(available, key=int) if available else None


def log_tail(path: Path | None, lines: int = 15) -> str:
    """The last lines of a log file ('' when there is none)."""
    if path is None or not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_until(ready: Callable[[], T | None], process: subprocess.Popen, timeout: float, what: str,
               log: Path | None = None) -> T:
    """Poll ``ready()`` until it answers; NotReadyError (with the log's last lines) when the
    process exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        answer = ready()
        if answer:
            return answer
        if process.poll() is not None:
            why = f"exited with status {process.returncode}"
            break
        if time.monotonic() > deadline:
            why = f"was not ready within {timeout:g} s"
            break
        time.sleep(0.3)
    tail = log_tail(log)
    raise NotReadyError(f"the {what} {why}" + (f"; last lines of its log:\n  {tail.replace(chr(10), chr(10) + '  ')}"
                                               if tail else ""))


def stop_process(process: subprocess.Popen, timeout: float = 60.0) -> int:
    """SIGTERM (a server drains and exits), then SIGKILL if it has not exited within ``timeout``;
    its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


class ModelServerProcess:
    """``python -m dfdetect.serving`` serving one model in its own process, on ``grpc_port`` and
    ``rest_port`` (free loopback ports unless given), with more model-server ``flags``; its output
    goes to ``log`` (a file, appended to) or nowhere. ``detached`` starts it in a session of its
    own, so it outlives the caller (``make deploy``). Usable as a context manager (stopped on exit)."""

    def __init__(self, model_name: str, base_path: str | Path, *, flags: Sequence[str] = (),
                 grpc_port: int | None = None, rest_port: int | None = None, log: str | Path | None = None,
                 detached: bool = False):
        self.model_name = model_name
        self.base_path = Path(base_path)
        self.grpc_port = grpc_port or free_port()
        self.rest_port = rest_port or free_port()
        self.log = Path(log) if log else None
        self.command = [sys.executable, "-m", "dfdetect.serving", f"--port={self.grpc_port}",
                        f"--rest_api_port={self.rest_port}", f"--model_name={model_name}",
                        f"--model_base_path={self.base_path}", *flags]
        output = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(self.command, stdout=output, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=detached)
        finally:
            if self.log:
                output.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_until_available(self, timeout: float = START_TIMEOUT) -> str:
        """The newest AVAILABLE version once there is one; NotReadyError (with the server's log
        tail, or every version's load error) if the server exits, fails every version, or
        ``timeout`` seconds pass."""

        def available() -> str | None:
            states = version_states(self.rest_port, self.model_name) or []
            failed = [s for s in states if s["state"] == "END" and s.get("status", {}).get("error_message")]
            if states and len(failed) == len(states):
                errors = "; ".join(f"version {s['version']}: {s['status']['error_message']}" for s in failed)
                raise NotReadyError(f"the model server could not load {self.base_path}: {errors}")
            return newest_available(self.rest_port, self.model_name)

        return wait_until(available, self.process, timeout, "model server", self.log)

    def log_tail(self, lines: int = 15) -> str:
        return log_tail(self.log, lines)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (the server drains), SIGKILL after ``timeout`` s; the exit status."""
        return stop_process(self.process, timeout)

    def __enter__(self) -> ModelServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def http_exchange(port: int, data: bytes, wait: float = 1.0, pause: float = 0.0) -> bytes:
    """Raw bytes to an HTTP server on loopback (``pause`` s between bytes: a slow client), then
    everything it sends back within ``wait`` s or until it closes (hostile-input checks)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        if pause:
            for b in data:
                try:
                    s.sendall(bytes([b]))
                except OSError:
                    break
                time.sleep(pause)
        else:
            s.sendall(data)
        s.settimeout(wait)
        received = b""
        try:
            while chunk := s.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return received


def http_statuses(raw: bytes) -> list[int]:
    """The status codes of the HTTP/1.1 answers in raw bytes, in order."""
    return [int(line.split()[1]) for line in raw.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def png_header(width: int, height: int) -> bytes:
    """The first bytes of a PNG declaring width x height, with no pixel data: an image bomb's
    header, never decodable."""
    ihdr = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + ihdr + zlib.crc32(ihdr).to_bytes(4, "big")
