"""The distribution: one import root, stage folders mapped onto it, one console script."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STALE_MODULE = "moved_since_the_last_build.py"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # What an earlier build left behind (a module since moved) must not ship again.
    stale = ROOT / "build" / "lib" / "dfdetect" / STALE_MODULE
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("# left by an earlier build\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(ROOT)], check=True)
    (path,) = out.glob("dfdetect-*.whl")
    return path


def test_wheel_holds_only_the_dfdetect_import_root(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    roots = {n.split("/")[0] for n in names if not n.startswith("dfdetect-")}
    assert roots == {"dfdetect"}, roots
    assert f"dfdetect/{STALE_MODULE}" not in names, "the build shipped a module left in build/ by an earlier build"  # no top-level client/ or serving/ in site-packages
    for stage in ("training", "export", "serving", "client"):
        assert f"dfdetect/{stage}/__init__.py" in names
    assert "dfdetect/training/prepare.py" in names
    assert "dfdetect/faces/frames.py" in names  # the shared face pipeline, inside the dfdetect folder
    # The wire protos, compiled by the build (setup.py) and shipped with their sources.
    assert {"dfdetect/wire/apis_pb2.py", "dfdetect/wire/tensor_pb2.py", "dfdetect/wire/apis.proto"} <= set(names)
    assert "dfdetect/py.typed" in names  # type checkers read the package's annotations
    benchmarks = [n for n in names if "bench" in n.rsplit("/", 1)[-1]]
    assert not benchmarks, f"benchmarks are tools (benchmarks/), not part of the product: {benchmarks}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "dfdetect = dfdetect.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_console_script_lists_the_stages():
    bin_dir = Path(sys.executable).parent
    result = subprocess.run([str(bin_dir / "dfdetect"), "--help"], capture_output=True, text=True, check=True)
    assert "prepare" in result.stdout
    result = subprocess.run([str(bin_dir / "dfdetect"), "prepare", "--help"], capture_output=True, text=True,
                            check=True)
    assert "--num-shards" in result.stdout and "default: 32" in result.stdout
