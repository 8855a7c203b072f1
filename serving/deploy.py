"""Local deployment: the model server in the background, as ``make deploy`` / ``make undeploy`` run it.

    python -m dfdetect.serving.deploy up   [--model-repository DIR] [--grpc-port 8500] [--rest-port 8501]
    python -m dfdetect.serving.deploy down

``up`` starts ``python -m dfdetect.serving`` detached (pid and log in the state folder), waits
until the model is AVAILABLE and prints the endpoints; when the server is already up it says so
and changes nothing. ``down`` sends SIGTERM (the server drains its requests) and waits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from dfdetect.contract import DEFAULT_MODEL_NAME, GRPC_PORT, REST_PORT

MONITORING = Path(__file__).with_name("monitoring.config")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid(state: Path) -> int | None:
    try:
        pid = int((state / "serve.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _status(rest_port: int, model: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/{model}", timeout=2) as r:
            versions = json.loads(r.read())["model_version_status"]
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return None
    available = [v["version"] for v in versions if v["state"] == "AVAILABLE"]
    return max(available, key=int) if available else None


def _endpoints(args, version) -> str:
    return (f"model {args.model_name} version {version} is AVAILABLE\n"
            f"  gRPC  127.0.0.1:{args.grpc_port}   (tensorflow_serving.apis PredictionService)\n"
            f"  REST  http://127.0.0.1:{args.rest_port}/v1/models/{args.model_name}\n"
            f"  metrics http://127.0.0.1:{args.rest_port}/monitoring/prometheus/metrics")


def up(args) -> int:
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    pid = _pid(state)
    if pid is not None:
        version = _status(args.rest_port, args.model_name)
        print(f"already running (pid {pid}); nothing changed")
        if version:
            print(_endpoints(args, version))
        return 0
    base = Path(args.model_repository).resolve() / args.model_name
    if not base.is_dir() or not any(p.name.isdigit() for p in base.iterdir()):
        print(f"error: no model versions in {base}: run `make export` first", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "dfdetect.serving", f"--port={args.grpc_port}", f"--rest_api_port={args.rest_port}",
           f"--model_name={args.model_name}", f"--model_base_path={base}",
           f"--monitoring_config_file={MONITORING}", f"--backend={args.backend}", *args.server_args]
    log = open(state / "serve.log", "ab")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    (state / "serve.pid").write_text(str(process.pid))
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        version = _status(args.rest_port, args.model_name)
        if version:
            print(f"started the local model server (pid {process.pid}, log {state / 'serve.log'})")
            print(_endpoints(args, version))
            return 0
        if process.poll() is not None:
            break
        time.sleep(0.5)
    if process.poll() is None:
        process.terminate()
    (state / "serve.pid").unlink(missing_ok=True)
    tail = (state / "serve.log").read_text(errors="replace").splitlines()[-15:]
    print("error: the model server did not become AVAILABLE; last log lines:\n  " + "\n  ".join(tail), file=sys.stderr)
    return 1


def down(args) -> int:
    state = Path(args.state_dir)
    pid = _pid(state)
    if pid is None:
        print("the local model server is not running")
        (state / "serve.pid").unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        print(f"error: pid {pid} still running after {args.timeout:.0f} s", file=sys.stderr)
        return 1
    (state / "serve.pid").unlink(missing_ok=True)
    print(f"stopped the local model server (pid {pid})")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dfdetect.serving.deploy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("--model-repository", default="model_repository")
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    p.add_argument("--grpc-port", type=int, default=GRPC_PORT)
    p.add_argument("--rest-port", type=int, default=REST_PORT)
    p.add_argument("--backend", choices=["tf", "onnx"], default="tf")
    p.add_argument("--state-dir", default=".run", help="where the pid file and the log go")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for start or stop")
    argv = list(sys.argv[1:] if argv is None else argv)
    server_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p.epilog = "More model server flags go after --, e.g. -- --enable_batching"
    args = p.parse_args(argv)
    args.server_args = server_args
    return up(args) if args.action == "up" else down(args)


if __name__ == "__main__":
    sys.exit(main())
