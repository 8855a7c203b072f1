"""The two images' own layers, measured without a Docker engine: each image's /opt/dfdetect
virtual environment, installed as the Dockerfile installs it.

    python -m benchmarks.image_sizes [--only web]      (make image-sizes)

For each build target (``web``: the thin client and the web page; ``full``: every stage), a
fresh virtual environment with ``pip install ".[EXTRAS]"`` from this checkout, then its size
on disk, its package count and whether TensorFlow is in it. The images add the base image
(python:3.11-slim-bookworm) and a user to that. Targets (from the issue): the client install at
most 500 MB; the web image's environment holds no TensorFlow. It prints figures and never fails
on them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"client": "client", "web": "web", "full": "all"}  # what each installs (the Dockerfile's)
HEAVY = ("tensorflow", "keras", "tensorflow-serving-api")
CLIENT_LIMIT_MB = 500


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.image_sizes", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--only", choices=sorted(TARGETS), action="append",
                        help="measure only these (repeatable; default: all three)")
    return parser.parse_args(argv)


def size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def measure(target: str, extras: str, tmp: Path) -> dict:
    venv = tmp / target
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                              f"{ROOT}[{extras}]"], capture_output=True, text=True)
    if install.returncode != 0:
        from dfdetect.errors import DfdetectError

        raise DfdetectError(f"pip install '.[{extras}]' failed:\n{install.stderr[-2000:]}")
    listed = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=json"], capture_output=True, text=True,
                            check=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    return dict(size=size_mb(venv), packages=len(names), heavy=sorted(n for n in names if n in HEAVY),
                seconds=time.perf_counter() - started)


def run(args) -> int:
    chosen = args.only or list(TARGETS)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="dfdetect-image-sizes-") as tmp:
        for target in chosen:
            print(f"installing '.[{TARGETS[target]}]' for {target} ...", file=sys.stderr, flush=True)
            figures[target] = measure(target, TARGETS[target], Path(tmp))
    for target, f in figures.items():
        heavy = ", ".join(f["heavy"]) or "none"
        print(f"  {target:7s} .[{TARGETS[target]}]  {f['size']:7.0f} MB  {f['packages']:3d} packages  "
              f"TensorFlow and co: {heavy}  (installed in {f['seconds']:.0f} s)")
    if "client" in figures:
        size = figures["client"]["size"]
        print(f"target: client install <= {CLIENT_LIMIT_MB} MB with no TensorFlow: {size:.0f} MB, "
              f"{', '.join(figures['client']['heavy']) or 'no TensorFlow'}: "
              f"{'PASS' if size <= CLIENT_LIMIT_MB and not figures['client']['heavy'] else 'MISS'}")
    if "web" in figures:
        print(f"target: the web image without TensorFlow: {'PASS' if not figures['web']['heavy'] else 'MISS'}")
    return 0


def main(argv=None) -> int:
    from benchmarks.common import run_benchmark

    return run_benchmark(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
