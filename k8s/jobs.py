"""Run one of the batch Jobs in k8s/jobs/ on the cluster of kubectl's context, and wait for it.

    python k8s/jobs.py run train|export|prepare [--image IMAGE] [--model-repository PATH]
                                                 [--timeout SECONDS]

(`make train TARGET=k8s`, `make export TARGET=k8s`.) Renders the Job with `kubectl kustomize`
(default restrictions), sets the image (``--image``: the project image in your registry) and,
for export, the model repository the servers read (``--model-repository``, default /models: the
deepfake-models volume), deletes the Job's previous run (a Job's pod template cannot change),
applies it, and waits: exit 0 once it completes; 1 when it fails or times out, with the failing
pod's last log lines, so `make train export deploy TARGET=k8s` stops at the step that failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate import K8S_DIR, K8sError, kubectl, render  # noqa: E402

JOBS_DIR = K8S_DIR / "jobs"
LOG_TAIL = 40


def say(message: str) -> None:
    print(f"k8s/jobs.py: {message}", file=sys.stderr, flush=True)


def job_objects(name: str, image: str | None = None, model_repository: str | None = None) -> list[dict]:
    """The rendered objects of k8s/jobs/NAME with the image and model repository set."""
    folder = JOBS_DIR / name
    if not (folder / "kustomization.yaml").is_file():
        known = sorted(p.parent.name for p in JOBS_DIR.glob("*/kustomization.yaml"))
        raise K8sError(f"no job {name!r} in k8s/jobs/ (jobs: {', '.join(known)})")
    objects = render(folder)
    for obj in objects:
        if obj.get("kind") != "Job":
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            if image:
                container["image"] = image
            if model_repository:
                container["args"] = [f"--model-repository={model_repository}" if a.startswith("--model-repository=")
                                     else a for a in container.get("args", [])]
    return objects


def _kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([kubectl(), *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise K8sError(f"kubectl {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")
    return result


def log_tail(namespace: str, job: str) -> str:
    result = _kubectl("logs", "--namespace", namespace, "-l", f"job-name={job}", f"--tail={LOG_TAIL}",
                      "--all-containers", "--prefix", check=False)
    return (result.stdout or result.stderr).strip() or "(no logs)"


def job_state(namespace: str, job: str) -> tuple[str, str]:
    """("Complete" | "Failed" | "", reason) of a Job, from its conditions."""
    status = json.loads(_kubectl("get", "job", job, "--namespace", namespace, "--output", "json").stdout).get(
        "status", {})
    for condition in status.get("conditions", []):
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return condition["type"], condition.get("message") or condition.get("reason", "")
    return "", ""


def run_job(name: str, image: str | None = None, model_repository: str | None = None, timeout: float = 86400,
            poll: float = 10.0) -> int:
    objects = job_objects(name, image, model_repository)
    jobs = [o for o in objects if o["kind"] == "Job"]
    if len(jobs) != 1:
        raise K8sError(f"k8s/jobs/{name} renders {len(jobs)} Jobs; expected one")
    namespace, job = jobs[0]["metadata"]["namespace"], jobs[0]["metadata"]["name"]
    _kubectl("delete", "job", job, "--namespace", namespace, "--ignore-not-found", "--wait=true")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix=f"dfdetect-{name}-") as rendered:
        yaml.safe_dump_all(objects, rendered, sort_keys=False)
        rendered.flush()
        _kubectl("apply", "--server-side", "--field-manager=dfdetect-jobs", "-f", rendered.name)
    images = sorted({c["image"] for c in jobs[0]["spec"]["template"]["spec"]["containers"]})
    say(f"job {namespace}/{job} started ({', '.join(images)}); waiting (up to {timeout:g} s)")
    deadline = time.monotonic() + timeout
    while True:
        state, reason = job_state(namespace, job)
        if state == "Complete":
            say(f"job {namespace}/{job} completed")
            return 0
        if state == "Failed" or time.monotonic() > deadline:
            why = f"failed: {reason}" if state == "Failed" else f"did not finish within {timeout:g} s"
            say(f"job {namespace}/{job} {why}; the last {LOG_TAIL} log lines of its pods:\n{log_tail(namespace, job)}")
            return 1
        time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="k8s/jobs.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a job of k8s/jobs/ and wait for it")
    run.add_argument("job", help="a folder of k8s/jobs/: train, export, prepare, ...")
    run.add_argument("--image", help="the project image to run (default: the kustomization's)")
    run.add_argument("--model-repository", help="export: where versions are published (default: /models)")
    run.add_argument("--timeout", type=float, default=86400, help="seconds to wait for the job")
    run.add_argument("--poll", type=float, default=10.0, help="seconds between status checks")
    args = parser.parse_args(argv)
    try:
        return run_job(args.job, args.image, args.model_repository, args.timeout, args.poll)
    except K8sError as e:
        say(str(e))
        return 2


if __name__ == "__main__":
    sys.exit(main())
