"""Build step of the package: the wire protos (dfdetect/wire/*.proto) compiled to Python.

Everything else about the package is in pyproject.toml. The generated ``*_pb2.py`` modules are
not committed: every build (wheel, sdist install, editable install) runs grpcio-tools' protoc,
pinned in [build-system] requires, and writes them beside their .proto files, where both the
wheel and an editable install find them (tests/test_wire.py checks they match the .proto files).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTOS = sorted((ROOT / "dfdetect" / "wire").glob("*.proto"))


def compile_protos() -> None:
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = ["protoc", f"--proto_path={ROOT}", f"--proto_path={include}", f"--python_out={ROOT}"]
    args += [str(p.relative_to(ROOT)) for p in PROTOS]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {', '.join(p.name for p in PROTOS)}")


class BuildWithProtos(build_py):
    def run(self):
        compile_protos()
        # setuptools copies into build/lib/ without emptying it: a module moved or removed since
        # the last build would ship again. Every build starts from an empty folder.
        if not self.editable_mode and Path(self.build_lib).is_dir():
            shutil.rmtree(self.build_lib)
        super().run()


setup(cmdclass={"build_py": BuildWithProtos})
