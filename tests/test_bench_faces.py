"""make bench-faces end to end, briefly: every speed row, footage and setting of the sweep measured.

Figures are not judged here (the benchmark prints them); this checks that each pipeline was
timed, that every generated video was scored for both pipelines, and that the targets are stated.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from benchmarks.faces import SWEEP_FACE_HEIGHTS, SWEEP_MIN_FACE
from dfdetect.faces.detection import ENHANCEMENTS
from dfdetect.samples import FOOTAGE

ROOT = Path(__file__).resolve().parents[1]


def test_bench_faces_measures_every_pipeline_and_footage():
    run = subprocess.run([sys.executable, "-m", "benchmarks.faces", "--frames", "4", "--rounds", "1",
                          "--settings"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    out = run.stdout
    assert run.returncode == 0, run.stdout + run.stderr
    speeds = dict(re.findall(r"^  (before: mtcnn package \(TensorFlow\)|mtcnn package, a frame per call|ONNX Runtime, "
                             r"same settings|ours: ONNX Runtime \+ enhancement)\s+([\d.]+) ms/frame", out, re.M))
    assert len(speeds) == 4 and all(float(v) > 0 for v in speeds.values()), out
    for case in FOOTAGE:
        line = next((x for x in out.splitlines() if x.startswith(f"  {case} ")), None)
        assert line is not None and line.count("false") == 2, (case, out)
    assert re.search(r"^target: ours >= 4x faster per frame .*: (PASS|MISS)$", out, re.M), out
    assert re.search(r"^target: hard footage recall .*: (PASS|MISS)$", out, re.M), out
    assert re.search(r"^target: no false face on the faceless footage: \d+ .*: (PASS|MISS)$", out, re.M), out
    sweep = re.findall(r"^  min face (\d+), enhance (\w+)\s+([\d.]+) ms/frame\s+([\d.]+)x\s+recall\s+[\d.]+% "
                       r"\((\d+)/(\d+)\), \d+ false, \d+ on faceless; by size((?: +\d+%/\d+%)+) *$", out, re.M)
    expected = {(size, method) for size in SWEEP_MIN_FACE for method in ENHANCEMENTS}
    assert {(int(size), method) for size, method, *_ in sweep} == expected, out
    assert all(float(ms) > 0 and float(x) > 0 and int(total) > 0 for *_, ms, x, _, total, _ in sweep), out
    assert all(len(sizes.split()) == len(SWEEP_FACE_HEIGHTS) for *_, sizes in sweep), out
