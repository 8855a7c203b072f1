"""Local deployment: the model server in the background, as ``make deploy`` / ``make undeploy`` run it.

    python -m dfdetect.serving.deploy up   [--model-repository DIR] [--grpc-port 8500] [--rest-port 8501]
    python -m dfdetect.serving.deploy down

``up`` starts ``python -m dfdetect.serving`` detached (pid and log in the state folder), waits
until the model is AVAILABLE, then starts the web page beside it (``dfdetect web`` on
``--web-port``, 0 for none) and waits until it reaches the model, and prints the endpoints; what is
already up is said and left alone. ``down`` sends SIGTERM to the web page, then to the model
server (which drains its requests), and waits for each.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dfdetect.contract import DEFAULT_MODEL_NAME, GRPC_PORT, REST_PORT, WEB_PORT
from dfdetect.tooling import ModelServerProcess, NotReadyError, get_json, newest_available, stop_process, wait_until

MONITORING = Path(__file__).with_name("monitoring.config")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid(state: Path, name: str) -> int | None:
    try:
        pid = int((state / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _web_ready(web_port: int) -> str | None:
    """The model version the web front reaches, once it is ready, or None."""
    body = get_json(f"http://127.0.0.1:{web_port}/readyz")
    return None if not body or body.get("status") != "ready" else str(body.get("model_version"))


def _endpoints(args, version) -> str:
    return (f"model {args.model_name} version {version} is AVAILABLE\n"
            f"  gRPC  127.0.0.1:{args.grpc_port}   (tensorflow_serving.apis PredictionService)\n"
            f"  REST  http://127.0.0.1:{args.rest_port}/v1/models/{args.model_name}\n"
            f"  metrics http://127.0.0.1:{args.rest_port}/monitoring/prometheus/metrics")


def _web_endpoint(args) -> str:
    return f"  web   http://127.0.0.1:{args.web_port}/   (upload a file; API: POST /api/analyze)"


def _started(state: Path, name: str, what: str, process: subprocess.Popen, log: Path, wait):
    """Call ``wait()`` (it returns once the process started detached answers, or raises
    NotReadyError) with the process's pid in ``state``; the answer, or None after printing why it
    did not come (the process is then stopped)."""
    (state / f"{name}.pid").write_text(str(process.pid))
    try:
        answer = wait()
    except NotReadyError as e:
        stop_process(process, 10)
        (state / f"{name}.pid").unlink(missing_ok=True)
        print(f"error: {e}", file=sys.stderr)
        return None
    print(f"started the {what} (pid {process.pid}, log {log})")
    return answer


def up(args) -> int:
    """Start the model server, then the web page, each unless it already runs; 0 once both answer,
    2 without model versions, 1 when one did not start."""
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    pid = _pid(state, "serve")
    if pid is not None:
        print(f"the local model server is already running (pid {pid}); nothing changed")
        version = newest_available(args.rest_port, args.model_name)
        if version:
            print(_endpoints(args, version))
    else:
        base = Path(args.model_repository).resolve() / args.model_name
        if not base.is_dir() or not any(p.name.isdigit() for p in base.iterdir()):
            print(f"error: no model versions in {base}: run `make export` first", file=sys.stderr)
            return 2
        server = ModelServerProcess(args.model_name, base, grpc_port=args.grpc_port, rest_port=args.rest_port,
                                    flags=[f"--monitoring_config_file={MONITORING}", f"--backend={args.backend}",
                                           *args.server_args],
                                    log=state / "serve.log", detached=True)
        version = _started(state, "serve", "local model server", server.process, server.log,
                           lambda: server.wait_until_available(args.timeout))
        if not version:
            return 1
        print(_endpoints(args, version))
    if not args.web_port:
        return 0
    pid = _pid(state, "web")
    if pid is not None:
        print(f"the web page is already running (pid {pid}); nothing changed")
    else:
        cmd = [sys.executable, "-m", "dfdetect", "web", "--host", "127.0.0.1", "--port", str(args.web_port),
               "--server", f"127.0.0.1:{args.grpc_port}", "--model-name", args.model_name,
               "--model-repository", str(Path(args.model_repository).resolve())]
        log = state / "web.log"
        with open(log, "ab") as output:
            process = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        if not _started(state, "web", "web page", process, log,
                        lambda: wait_until(lambda: _web_ready(args.web_port), process, args.timeout, "web page", log)):
            return 1
    print(_web_endpoint(args))
    return 0


def _stop(state: Path, name: str, what: str, timeout: float) -> int:
    pid = _pid(state, name)
    if pid is None:
        print(f"the {what} is not running")
        (state / f"{name}.pid").unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        print(f"error: the {what} (pid {pid}) is still running after {timeout:.0f} s", file=sys.stderr)
        return 1
    (state / f"{name}.pid").unlink(missing_ok=True)
    print(f"stopped the {what} (pid {pid})")
    return 0


def down(args) -> int:
    """The web page first (it calls the model server), then the model server (it drains)."""
    state = Path(args.state_dir)
    web = _stop(state, "web", "web page", args.timeout) if (state / "web.pid").exists() else 0
    return max(web, _stop(state, "serve", "local model server", args.timeout))


def main(argv=None) -> int:
    """Run ``up`` or ``down`` with the flags in ``argv`` (model server flags after ``--``); the exit status."""
    p = argparse.ArgumentParser(prog="python -m dfdetect.serving.deploy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("--model-repository", default="model_repository")
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    p.add_argument("--grpc-port", type=int, default=GRPC_PORT)
    p.add_argument("--rest-port", type=int, default=REST_PORT)
    p.add_argument("--backend", choices=["tf", "onnx"], default="tf")
    p.add_argument("--web-port", type=int, default=WEB_PORT,
                   help="port of the web page started beside the model server (0: no web page)")
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
