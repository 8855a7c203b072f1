"""The stage layout: no stage reaches into another stage's internals; what two stages share lives
in ``dfdetect/``. The one allowed use is of the client library, which the web page and the load
tests are built on (``USES``). So export reads runs and ``models.config`` through ``dfdetect/``,
never ``dfdetect.training`` or ``dfdetect.serving``, and the client, the web page and the load
tests never reach ``dfdetect.training``.

Imports are walked statically (every ``import x`` and ``from x import y``, at module level or
inside functions), following the ``dfdetect.*`` modules they reach, transitively, through the
package-dir mapping of pyproject.toml. Reaching a forbidden package fails, naming the chain.
"""

from __future__ import annotations

import ast
import tomllib
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("client", "web", "loadtests")  # folders whose modules must not reach FORBIDDEN
FORBIDDEN = "dfdetect.training"
# Every stage folder and its package (loadtests/ is not one: locust loads it from the folder).
STAGE_PACKAGES = {"training": "dfdetect.training", "export": "dfdetect.export", "serving": "dfdetect.serving",
                  "client": "dfdetect.client", "web": "dfdetect.web", "loadtests": None}
USES = {"web": {"client"}, "loadtests": {"client"}}  # the stages another stage may import


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """``[tool.setuptools] package-dir`` of a pyproject.toml: package name -> folder."""
    setuptools = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]
    return {name: (pyproject.parent / folder).resolve() for name, folder in setuptools["package-dir"].items()}


def module_file(name: str, dirs: dict[str, Path]) -> Path | None:
    """The source file of module ``name`` through the mapping (longest mapped prefix), or None."""
    for package in sorted(dirs, key=len, reverse=True):
        if name == package or name.startswith(package + "."):
            rest = name[len(package) + 1:].split(".") if name != package else []
            base = dirs[package].joinpath(*rest)
            if (base / "__init__.py").is_file():
                return base / "__init__.py"
            if base.with_name(base.name + ".py").is_file():
                return base.with_name(base.name + ".py")
            return None
    return None


def module_name(path: Path, dirs: dict[str, Path]) -> tuple[str | None, bool]:
    """The importable name of a source file through the mapping (None outside it), and whether
    it is a package's ``__init__``."""
    path = path.resolve()
    is_package = path.name == "__init__.py"
    for package, folder in sorted(dirs.items(), key=lambda item: len(str(item[1])), reverse=True):
        try:
            parts = list(path.relative_to(folder).with_suffix("").parts)
        except ValueError:
            continue
        if is_package:
            parts = parts[:-1]
        return ".".join([package, *parts]), is_package
    return None, is_package


def imports(source: str, name: str | None = None, is_package: bool = False) -> list[tuple[str, bool]]:
    """Every module name a module's source may import, anywhere in it (also inside functions), each
    with whether it surely names a module.

    ``from x import y`` gives ``x`` (sure) and ``x.y`` (not sure: y may be a submodule or a name in
    x); relative imports are resolved against ``name``, the module's own name.
    """
    names: list[tuple[str, bool]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [(alias.name, True) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if name is None:
                    continue
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            names.append((base, True))
            names += [(f"{base}.{alias.name}", False) for alias in node.names if alias.name != "*"]
    return names


def imported_names(source: str, name: str | None = None, is_package: bool = False) -> list[str]:
    return [n for n, _ in imports(source, name, is_package)]


def _parents(name: str) -> list[str]:
    """Importing a.b.c runs a/__init__ and a/b/__init__ first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def forbidden_chains(roots: list[Path], dirs: dict[str, Path], forbidden: str = FORBIDDEN,
                     base: Path = ROOT) -> list[str]:
    """For each root file, the shortest import chain to each ``forbidden`` module it reaches,
    as "root/file.py -> pkg.a -> pkg.b -> forbidden.x"."""
    def is_forbidden(n: str) -> bool:
        return n == forbidden or n.startswith(forbidden + ".")

    chains = []
    for root in roots:
        try:
            label = root.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            label = root.as_posix()
        start_name, start_package = module_name(root, dirs)
        previous: dict[str, str | None] = {}  # module reached -> the one that imported it
        files = {label: (root, start_name, start_package)}
        queue = deque([label])
        found: list[str] = []
        while queue:
            current = queue.popleft()
            path, name, is_package = files[current]
            for imported, sure in imports(path.read_text(), name, is_package):
                if not sure and module_file(imported, dirs) is None:
                    continue  # `from x import y`, y a name in x
                for target in [*_parents(imported), imported]:
                    if target in previous or target == label or target == name:
                        continue
                    if is_forbidden(target):
                        # Reported by the name imported (not its packages), and followed no further.
                        if target == imported:
                            previous[target] = current
                            found.append(target)
                        continue
                    target_file = module_file(target, dirs)
                    if target_file is None:
                        continue  # not a module of the mapping (a third-party module, or a name)
                    previous[target] = current
                    target_name, target_package = module_name(target_file, dirs)
                    files[target] = (target_file, target_name, target_package)
                    queue.append(target)
        for target in found:
            chain, node = [], target
            while node is not None:
                chain.append(node)
                node = previous.get(node)
            chains.append(" -> ".join(reversed(chain)))
    return chains


def stage_files(root: Path = ROOT, stages: tuple[str, ...] = STAGES) -> list[Path]:
    return sorted(p for stage in stages for p in (root / stage).rglob("*.py") if "__pycache__" not in p.parts)


# --- the repository -------------------------------------------------------------------------------

def test_client_web_and_loadtests_never_reach_training():
    dirs = package_dirs(ROOT / "pyproject.toml")
    files = stage_files()
    assert {f.parent.name for f in files} >= set(STAGES)
    chains = forbidden_chains(files, dirs)
    assert not chains, f"these import {FORBIDDEN} (no stage imports another stage's internals):\n  " + "\n  ".join(chains)


def test_no_stage_reaches_another_stages_internals():
    dirs = package_dirs(ROOT / "pyproject.toml")
    assert set(STAGE_PACKAGES) == {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()
                                   and p.name not in ("dfdetect", "benchmarks", "tests")} | {"loadtests"}
    found = []
    for stage in STAGE_PACKAGES:
        files = stage_files(stages=(stage,))
        assert files, f"{stage}/ has no modules"
        for other, package in STAGE_PACKAGES.items():
            if other != stage and package is not None and other not in USES.get(stage, ()):
                found += forbidden_chains(files, dirs, package)
    assert not found, ("these reach another stage's modules (what two stages share moves to dfdetect/):\n  "
                       + "\n  ".join(found))


def test_the_mapping_resolves_the_shared_modules():
    dirs = package_dirs(ROOT / "pyproject.toml")
    assert module_file("dfdetect.client.client", dirs) == ROOT / "client" / "client.py"
    assert module_file("dfdetect.web", dirs) == ROOT / "web" / "__init__.py"
    assert module_file("dfdetect.faces.frames", dirs) == ROOT / "dfdetect" / "faces" / "frames.py"
    assert module_file("dfdetect.serving.errors", dirs) == ROOT / "serving" / "errors.py"
    assert module_file("dfdetect.contract", dirs) == ROOT / "dfdetect" / "contract.py"
    assert module_file("dfdetect.contract.FAKE", dirs) is None
    assert module_file("numpy", dirs) is None
    assert module_name(ROOT / "client" / "cli.py", dirs) == ("dfdetect.client.cli", False)


def _direct_imports(path: Path) -> set[str]:
    return {name for name, sure in imports(path.read_text()) if sure}


def test_the_product_never_imports_the_benchmarks_and_benchmarks_share_only_common():
    product = [p for folder in ("dfdetect", "training", "export", "serving", "client", "web", "loadtests")
               for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts]
    reaching = [f"{p.relative_to(ROOT)} imports {n}" for p in product for n in sorted(_direct_imports(p))
                if n == "benchmarks" or n.startswith("benchmarks.")]
    assert not reaching, "the benchmarks are tools, not part of the product:\n  " + "\n  ".join(reaching)
    benchmarks = sorted((ROOT / "benchmarks").glob("*.py"))
    assert {p.stem for p in benchmarks} >= {"common", "prepare", "train", "export", "serve", "client"}
    crossing = [f"{p.relative_to(ROOT)} imports {n}" for p in benchmarks for n in sorted(_direct_imports(p))
                if n.startswith("benchmarks.") and n != "benchmarks.common"]
    assert not crossing, "a benchmark imports another one (what they share goes in benchmarks/common.py):\n  " + \
        "\n  ".join(crossing)


# --- the walker itself ----------------------------------------------------------------------------

def test_imported_names_sees_every_kind_of_import():
    source = (
        "import os, pkg.a as a\n"
        "from pkg.b import thing, sub\n"
        "def f():\n"
        "    from pkg.c import x\n"
        "    class K:\n"
        "        import pkg.d\n"
        "from . import sibling\n"
        "from ..up import y\n"
    )
    names = imported_names(source, "pkg.stage.mod")
    for expected in ("os", "pkg.a", "pkg.b", "pkg.b.thing", "pkg.b.sub", "pkg.c", "pkg.c.x", "pkg.d",
                     "pkg.stage", "pkg.stage.sibling", "pkg.up", "pkg.up.y"):
        assert expected in names, (expected, names)


def _fake_tree(tmp_path: Path, shared_source: str) -> tuple[dict[str, Path], list[Path]]:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\n'
        'package-dir = { "fake" = "fake", "fake.training" = "train", "fake.client" = "cl" }\n'
        'packages = ["fake", "fake.training", "fake.client"]\n')
    files = {
        "fake/__init__.py": "",
        "fake/shared.py": shared_source,
        "train/__init__.py": "",
        "train/config.py": "X = 1\n",
        "cl/__init__.py": "",
        "cl/cli.py": "import argparse\n\ndef main():\n    from fake.client import client\n",
        "cl/client.py": "import numpy as np\nfrom . import errors\nimport fake.shared as shared\n",
        "cl/errors.py": "class E(Exception):\n    pass\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    dirs = package_dirs(tmp_path / "pyproject.toml")
    return dirs, sorted((tmp_path / "cl").glob("*.py"))


def test_the_walker_names_the_chain_to_a_forbidden_module(tmp_path):
    dirs, roots = _fake_tree(tmp_path, "def later():\n    from fake.training.config import X\n")
    chains = forbidden_chains(roots, dirs, forbidden="fake.training", base=tmp_path)
    assert "cl/cli.py -> fake.client.client -> fake.shared -> fake.training.config" in chains, chains
    assert "cl/client.py -> fake.shared -> fake.training.config" in chains, chains
    assert not any(c.startswith(("cl/errors.py", "cl/__init__.py")) for c in chains), chains


def test_the_walker_passes_a_clean_tree(tmp_path):
    dirs, roots = _fake_tree(tmp_path, "import json\nfrom fake import other_name\n")
    assert forbidden_chains(roots, dirs, forbidden="fake.training", base=tmp_path) == []


def test_the_walker_sees_a_package_init_on_the_way(tmp_path):
    dirs, roots = _fake_tree(tmp_path, "X = 1\n")
    (tmp_path / "fake" / "__init__.py").write_text("from .training import config\n")
    chains = forbidden_chains(roots, dirs, forbidden="fake.training", base=tmp_path)
    assert "cl/cli.py -> fake -> fake.training" in chains, chains
