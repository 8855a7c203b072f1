"""The model repository: ``ROOT/NAME/<version>/`` folders, as TensorFlow Serving reads them.

Versions are positive integers that only increase. A version is built in a hidden temporary
folder beside the others and renamed into place when complete, so a server polling the folder
never sees half of one. Paths go through ``tf.io.gfile``, so an object-store URL (``gs://...``)
works like a local folder.
"""

from __future__ import annotations

import logging
import os
import uuid

import tensorflow as tf

from dfdetect.errors import BadInputError

log = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"


def join(*parts: str) -> str:
    return os.path.join(*parts) if "://" not in parts[0] else "/".join(p.strip("/") if i else p.rstrip("/")
                                                                      for i, p in enumerate(parts))


class ModelRepository:
    """One model's folder in a repository (``root/name``)."""

    def __init__(self, root: str, name: str):
        if not name or "/" in name or name.startswith("."):
            raise BadInputError(f"model name must be a plain folder name, got {name!r}")
        self.root = str(root)
        self.name = name
        self.path = join(self.root, name)

    def ensure_writable(self) -> bool:
        """Create the model folder (and root) or fail with a clear message; True if it was created."""
        created = not tf.io.gfile.isdir(self.path)
        try:
            tf.io.gfile.makedirs(self.path)
            probe = join(self.path, f"{TMP_PREFIX}probe-{uuid.uuid4().hex}")
            with tf.io.gfile.GFile(probe, "w") as f:
                f.write("ok")
            tf.io.gfile.remove(probe)
        except (tf.errors.OpError, OSError) as e:
            raise BadInputError(f"model repository {self.path} is not writable: {e}") from None
        return created

    def versions(self) -> list[int]:
        """Published versions, ascending (temporary folders and other names ignored)."""
        if not tf.io.gfile.isdir(self.path):
            return []
        found = []
        for entry in tf.io.gfile.listdir(self.path):
            entry = entry.rstrip("/")
            if entry.isdigit() and int(entry) > 0 and tf.io.gfile.isdir(join(self.path, entry)):
                found.append(int(entry))
        return sorted(found)

    def next_version(self) -> int:
        existing = self.versions()
        return (existing[-1] + 1) if existing else 1

    def version_path(self, version: int) -> str:
        return join(self.path, str(version))

    def check_new_version(self, version: int) -> None:
        if version < 1:
            raise BadInputError(f"versions are positive integers, got {version}")
        if tf.io.gfile.exists(self.version_path(version)):
            raise BadInputError(f"version {version} of {self.name} already exists in {self.root}; "
                                f"versions are never overwritten (next free: {self.next_version()})")

    def temporary(self, version: int) -> str:
        """A hidden folder to build a version in (beside the versions, on the same file system)."""
        return join(self.path, f"{TMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}")

    def publish(self, tmp: str, version: int) -> str:
        """Rename a finished temporary folder into place as ``version``."""
        target = self.version_path(version)
        self.check_new_version(version)
        tf.io.gfile.rename(tmp, target, overwrite=False)
        log.info("published %s", target)
        return target

    def discard(self, tmp: str, created: bool = False) -> None:
        """Remove a temporary folder, and the model folder too if this export created it."""
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.rmtree(tmp)
        if created and tf.io.gfile.isdir(self.path) and not tf.io.gfile.listdir(self.path):
            tf.io.gfile.rmtree(self.path)

    def retain(self, keep: int, protected: set[int]) -> list[int]:
        """Delete all but the newest ``keep`` versions, never one in ``protected`` (labelled)."""
        if keep < 1:
            raise BadInputError(f"--keep must be at least 1, got {keep}")
        versions = self.versions()
        doomed = [v for v in versions[:-keep] if v not in protected]
        for v in doomed:
            tf.io.gfile.rmtree(self.version_path(v))
            log.info("retention: removed %s version %d", self.name, v)
        return doomed
