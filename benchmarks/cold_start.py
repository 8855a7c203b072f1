"""Benchmark of the client's cold start: `dfdetect predict image.jpg` in a new process, to the result.

    python -m benchmarks.cold_start [--server localhost:8500] [--runs 5]      (make bench-cold-start)

Against the local deployment (``make deploy``; the make target starts it). Rows, each a new
process running ``dfdetect predict IMAGE --json`` on a photograph of a face, timed from start to
exit (detection, the request and the answer included):

- before: the full install with TensorFlow imported first, as the client was until it had its
  own wire protos (``tensorflow_serving.apis`` and ``tf.make_tensor_proto`` loaded TensorFlow);
- the full install (``make install``) as it is now;
- the client install (``make install-client``: no TensorFlow in it).

Runs are interleaved over ``--runs`` rounds after one untimed run of each (the face detector's
graphs are cached on disk by then, as on any machine that ran the client once), and the median
counts. Target (from the issue): the client install at least 3x faster than before. It prints
figures and never fails on them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SPEEDUP = 3.0
ROOT = Path(__file__).resolve().parents[1]
TENSORFLOW_FIRST = ("import sys, tensorflow, tensorflow_serving.apis.predict_pb2; from dfdetect.cli import main; "
                    "sys.exit(main())")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_start", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--server", default="localhost:8500", help="gRPC address of the local deployment")
    parser.add_argument("--model-name", default="deepfake", help="served model name")
    parser.add_argument("--client-venv", default=str(ROOT / ".venv-client"),
                        help="the client install (make install-client)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each row; the median counts")
    return parser.parse_args(argv)


def rows(args, image: Path) -> dict[str, list[str]]:
    full = Path(sys.executable)
    thin = Path(args.client_venv) / "bin" / "dfdetect"
    if not thin.is_file():
        from dfdetect.errors import BadInputError

        raise BadInputError(f"no client install at {args.client_venv}: run `make install-client` first")
    predict = ["predict", str(image), "--server", args.server, "--model-name", args.model_name, "--json",
               "--no-progress"]
    return {
        "before: TensorFlow loaded (full install)": [str(full), "-c", TENSORFLOW_FIRST, *predict],
        "full install, now": [str(full.parent / "dfdetect"), *predict],
        "client install (no TensorFlow)": [str(thin), *predict],
    }


def timed(command: list[str]) -> float:
    env = {**os.environ, "DFDETECT_LOG_LEVEL": "WARNING"}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        from dfdetect.errors import DfdetectError

        raise DfdetectError(f"{' '.join(command[:3])} ... failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return seconds


def run(args) -> int:
    import cv2

    from dfdetect.samples import face_photographs

    with tempfile.TemporaryDirectory(prefix="dfdetect-bench-cold-") as tmp:
        image = Path(tmp) / "face.jpg"
        _, photo = face_photographs()[0]
        cv2.imwrite(str(image), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
        commands = rows(args, image)
        print(f"machine: {os.cpu_count()} core(s), load average {os.getloadavg()[0]:.2f}; server {args.server}; "
              f"{args.runs} interleaved runs per row after one untimed run, median")
        for command in commands.values():
            timed(command)
        seconds = {name: [] for name in commands}
        for r in range(args.runs):
            for name, command in commands.items():
                seconds[name].append(timed(command))
            print(f"  round {r + 1}/{args.runs}: " + ", ".join(f"{s[-1]:.2f} s" for s in seconds.values()),
                  file=sys.stderr, flush=True)
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    before = medians["before: TensorFlow loaded (full install)"]
    for name, median in medians.items():
        print(f"  {name:42s} {median:6.2f} s  (best {min(seconds[name]):.2f} s)  {before / median:5.2f}x")
    thin = medians["client install (no TensorFlow)"]
    ratio = before / thin
    print(f"\ntarget: the client install's cold `dfdetect predict image.jpg` >= {TARGET_SPEEDUP:g}x faster than "
          f"before: {before:.2f} / {thin:.2f} s = {ratio:.2f}x: {'PASS' if ratio >= TARGET_SPEEDUP else 'MISS'}")
    return 0


def main(argv=None) -> int:
    from benchmarks.common import run_benchmark

    return run_benchmark(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
