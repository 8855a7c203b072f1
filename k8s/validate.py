"""Render the product's Kubernetes manifests and validate every object offline (`make k8s-validate`).

Every kustomization under k8s/overlays/ (serving) and k8s/jobs/ (batch jobs) is rendered with
`kubectl kustomize`, and each object it produces is validated strictly (an unknown field is an
error) against the Kubernetes JSON schemas that kubernetes-validate bundles, for every Kubernetes
version in KUBERNETES_VERSIONS. An object whose kind has no schema is an error as well: nothing
passes unchecked. No cluster is needed.

    python k8s/validate.py                      # everything
    python k8s/validate.py k8s/overlays/gpu     # some kustomizations

Exit status: 0 all valid, 1 an object is invalid, 2 a kustomization does not render (or kubectl
is missing).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

K8S_DIR = Path(__file__).resolve().parent
REPO_ROOT = K8S_DIR.parent

# The oldest Kubernetes the manifests support (they use the preStop `sleep` action and per-index
# Job backoff, on by default from 1.30 and 1.29) and the newest whose schemas kubernetes-validate
# 1.37.0 bundles. Every object must be valid for both.
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")

# The serving configs the base's ConfigMap is made from: copies of serving/'s files inside k8s/
# (kustomize's default restrictions read nothing outside a kustomization).
CONFIG_COPIES = ("models.config", "batching.config", "monitoring.config")
CONFIG_DIR = K8S_DIR / "base" / "config"

# Where kustomizations are looked for, relative to k8s/.
KUSTOMIZATION_ROOTS = ("overlays", "jobs")


class K8sError(Exception):
    """kubectl is missing, or a kustomization does not render."""


def kubectl() -> str:
    path = shutil.which("kubectl")
    if not path:
        raise K8sError("kubectl not found on PATH: it renders the manifests (`kubectl kustomize`, built in "
                       "since kubectl 1.14). Install kubectl; no cluster is needed to validate.")
    return path


def kustomizations(root: Path = K8S_DIR) -> list[Path]:
    """Every folder with a kustomization.yaml under k8s/overlays/ and k8s/jobs/, sorted."""
    found = []
    for sub in KUSTOMIZATION_ROOTS:
        base = root / sub
        if base.is_dir():
            found += sorted(p.parent for p in base.glob("*/kustomization.yaml"))
    return found


def display(path: Path) -> str:
    """A kustomization's path as people type it (relative to the repository when inside it)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def render(path: Path) -> list[dict]:
    """The objects `kubectl kustomize` renders from a kustomization folder."""
    cmd = [kubectl(), "kustomize", str(path)]  # default restrictions, as `kubectl apply -k` and GitOps tools
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise K8sError(f"`kubectl kustomize {display(path)}` failed: {result.stderr.strip() or result.stdout.strip()}")
    try:
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    except yaml.YAMLError as e:
        raise K8sError(f"`kubectl kustomize {display(path)}` printed YAML that does not parse: {e}") from None


def object_name(obj: dict) -> str:
    """Kind/namespace/name, or Kind/name for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    parts = [str(obj.get("kind", "?"))]
    if meta.get("namespace"):
        parts.append(meta["namespace"])
    parts.append(str(meta.get("name", "?")))
    return "/".join(parts)


def validate_object(obj: dict, versions=KUBERNETES_VERSIONS) -> list[str]:
    """Schema errors of one object, one string per Kubernetes version it fails for ([] = valid)."""
    from kubernetes_validate import utils

    errors = []
    for version in versions:
        short = utils.major_minor(version)
        try:
            utils.validate(obj, version, strict=True)
        except utils.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(top level)"
            errors.append(f"Kubernetes {short}: {where}: {e.message}")
        except (utils.SchemaNotFoundError, utils.InvalidSchemaError, utils.VersionNotSupportedError) as e:
            errors.append(f"Kubernetes {short}: {e.message} (every object must be checked against a schema)")
        except (KeyError, TypeError) as e:
            errors.append(f"Kubernetes {short}: not a Kubernetes object (missing or bad {e})")
    return errors


@dataclass
class Report:
    objects: int = 0
    failures: list[str] = field(default_factory=list)  # one per invalid object
    render_errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 2 if self.render_errors else 1 if self.failures else 0


def validate_all(paths: list[Path], out=sys.stdout) -> Report:
    """Render and validate each kustomization, printing one line per object."""
    report = Report()
    for path in paths:
        where = display(path)
        try:
            objects = render(path)
        except K8sError as e:
            report.render_errors.append(str(e))
            print(f"FAIL  {where}: {e}", file=out)
            continue
        if not objects:
            report.render_errors.append(f"{where} renders no objects")
            print(f"FAIL  {where}: renders no objects", file=out)
            continue
        for obj in objects:
            report.objects += 1
            name = object_name(obj)
            errors = validate_object(obj)
            if errors:
                report.failures.append(f"{where} {name}: " + "; ".join(errors))
                for error in errors:
                    print(f"FAIL  {where}  {name}: {error}", file=out)
            else:
                print(f"ok    {where}  {name}", file=out)
    return report


def config_drift(serving_dir: Path = REPO_ROOT / "serving", copies: Path = CONFIG_DIR) -> list[str]:
    """The config files whose copy under k8s/base/config/ differs from serving/'s (or is missing)."""
    drift = []
    for name in CONFIG_COPIES:
        source, copy = serving_dir / name, copies / name
        if not copy.is_file() or copy.read_bytes() != source.read_bytes():
            drift.append(f"{display(copy)} differs from {display(source)} (copy it, or let `dfdetect export label` "
                         "write both)")
    return drift


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="k8s/validate.py",
        description="Render k8s/ kustomizations with `kubectl kustomize` and validate every object strictly "
                    "against the Kubernetes schemas (offline).")
    parser.add_argument("kustomizations", nargs="*", type=Path,
                        help="kustomization folders (default: every one under k8s/overlays/ and k8s/jobs/)")
    args = parser.parse_args(argv)
    paths = args.kustomizations or kustomizations()
    versions = " and ".join(v.rsplit(".", 1)[0] for v in KUBERNETES_VERSIONS)
    try:
        kubectl()
    except K8sError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not paths:
        print(f"error: no kustomization found under {', '.join(f'k8s/{r}/' for r in KUSTOMIZATION_ROOTS)}",
              file=sys.stderr)
        return 2
    report = validate_all(paths)
    report.render_errors += config_drift()
    if report.exit_code == 0:
        print(f"k8s-validate: {report.objects} objects from {len(paths)} kustomizations valid against "
              f"Kubernetes {versions} (strict)")
    else:
        print(f"k8s-validate: FAILED: {len(report.failures)} invalid of {report.objects} objects, "
              f"{len(report.render_errors)} kustomizations not rendered (Kubernetes {versions}, strict)",
              file=sys.stderr)
        for line in report.render_errors + report.failures:
            print(f"  {line}", file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
