"""Dataset adapters: a folder of media on disk -> labelled items with their source groups.

Three layouts are understood:

- ``dfdc``: folders of mp4 files, each folder with a ``metadata.json`` mapping file name to
  ``{"label": "REAL"|"FAKE", "split": ..., "original": <real file a fake was made from>}``
  (the DeepFake Detection Challenge layout).
- ``celebdf``: Celeb-DF v2: ``Celeb-real/``, ``YouTube-real/``, ``Celeb-synthesis/`` and
  ``List_of_testing_videos.txt`` (the official test list, whose label 1 means *real*).
- ``folder``: ``real/`` and ``fake/`` holding videos or images, optionally one sub-folder per
  source (the sub-folder names the group).

Every item carries a *source group*: the videos that share a source (a fake and the real video
it was made from, or one Celeb-DF identity) must land in one split, or the test score leaks.
Labels follow the product convention: 1 = fake.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from dfdetect.contract import FAKE, REAL
from dfdetect.errors import BadInputError
from dfdetect.faces.frames import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

LAYOUTS = ("dfdc", "celebdf", "folder")
LAYOUT_HELP = (
    "expected one of: dfdc (folders of .mp4 with metadata.json), "
    "celebdf (Celeb-real/, Celeb-synthesis/, YouTube-real/, List_of_testing_videos.txt), "
    "folder (real/ and fake/ holding videos or images)"
)
CELEBDF_TEST_LIST = "List_of_testing_videos.txt"


@dataclass(frozen=True)
class MediaItem:
    """One video or image of a dataset."""

    path: str  # absolute path of the file
    video_id: str  # stable id: the path relative to the dataset root, with "/" separators
    label: int  # 1 = fake, 0 = real
    group: str  # source group: items of one group always share a split
    kind: str  # "video" or "image"
    fixed_split: str | None = None  # a split the dataset itself imposes (Celeb-DF test list)


@dataclass
class Dataset:
    name: str
    layout: str
    root: str
    items: list[MediaItem]
    problems: list[dict] = field(default_factory=list)  # {"path": ..., "problem": ...}


def _kind(path: Path) -> str | None:
    ext = path.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    return None


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def detect_layout(root: str | os.PathLike) -> str:
    """Guess the layout of a dataset folder; BadInputError naming the expected layouts."""
    root = Path(root)
    if (root / "Celeb-real").is_dir() or (root / "Celeb-synthesis").is_dir():
        return "celebdf"
    if (root / "real").is_dir() or (root / "fake").is_dir():
        return "folder"
    if (root / "metadata.json").is_file() or any(root.glob("*/metadata.json")):
        return "dfdc"
    raise BadInputError(f"cannot tell the layout of dataset folder {root}: {LAYOUT_HELP}")


def load_dataset(root: str | os.PathLike, layout: str = "auto") -> Dataset:
    """Read a dataset folder with the named (or detected) layout."""
    root = Path(root).resolve()
    if not root.exists():
        raise BadInputError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise BadInputError(f"dataset path {root} is not a folder")
    if layout == "auto":
        layout = detect_layout(root)
    loaders = {"dfdc": load_dfdc, "celebdf": load_celebdf, "folder": load_folder}
    if layout not in loaders:
        raise BadInputError(f"unknown dataset layout {layout!r}; {LAYOUT_HELP}")
    dataset = loaders[layout](root)
    if not dataset.items:
        detail = "; ".join(f"{p['path']}: {p['problem']}" for p in dataset.problems[:5])
        raise BadInputError(f"dataset folder {root} ({layout} layout) holds no usable media"
                            + (f" ({detail})" if detail else ""))
    log.info("dataset %s (%s): %d items, %d problems", dataset.name, layout,
             len(dataset.items), len(dataset.problems))
    return dataset


# --- DFDC ---------------------------------------------------------------------------------

def load_dfdc(root: Path) -> Dataset:
    """Folders of mp4 with metadata.json (the root itself or its sub-folders)."""
    folders = sorted({p.parent for p in root.rglob("*.mp4")} | {p.parent for p in root.rglob("metadata.json")})
    if not any((folder / "metadata.json").is_file() for folder in folders):
        raise BadInputError(f"no metadata.json found in {root} or its sub-folders; DFDC layout "
                            "expects each folder of .mp4 videos to carry a metadata.json")
    items: list[MediaItem] = []
    problems: list[dict] = []
    for folder in folders:
        meta_path = folder / "metadata.json"
        videos = sorted(folder.glob("*.mp4"))
        if not meta_path.is_file():
            problems.append({"path": _rel(root, folder) or ".",
                             "problem": f"no metadata.json: {len(videos)} videos skipped"})
            continue
        try:
            with open(meta_path) as f:
                metadata = json.load(f)
            if not isinstance(metadata, dict):
                raise ValueError("top level is not an object of file name -> entry")
        except (OSError, ValueError) as e:
            problems.append({"path": _rel(root, meta_path), "problem": f"unreadable metadata.json ({e}): "
                             f"{len(videos)} videos skipped"})
            continue
        on_disk = {v.name for v in videos}
        for name, entry in sorted(metadata.items()):
            where = _rel(root, folder / name)
            label_text = str(entry.get("label", "")).upper() if isinstance(entry, dict) else ""
            if label_text not in ("REAL", "FAKE"):
                problems.append({"path": where, "problem": f"metadata label {label_text or '(missing)'!r}, "
                                 "expected REAL or FAKE"})
                continue
            if name not in on_disk:
                problems.append({"path": where, "problem": "listed in metadata.json but missing on disk"})
                continue
            label = FAKE if label_text == "FAKE" else REAL
            original = entry.get("original") if label == FAKE else None
            if label == FAKE and not original:
                problems.append({"path": where, "problem": "fake without an 'original'; grouped alone"})
            # DFDC file names are unique across parts, so the original's name is the group.
            group = f"dfdc:{original or name}"
            items.append(MediaItem(path=str(folder / name), video_id=where, label=label,
                                   group=group, kind="video"))
        for name in sorted(on_disk - set(metadata)):
            problems.append({"path": _rel(root, folder / name), "problem": "not listed in metadata.json; skipped"})
    return Dataset(name=root.name, layout="dfdc", root=str(root), items=items, problems=problems)


# --- Celeb-DF v2 --------------------------------------------------------------------------

_CELEB_REAL = re.compile(r"^id(\d+)_(\d+)$")
_CELEB_FAKE = re.compile(r"^id(\d+)_id(\d+)_(\d+)$")


def load_celebdf(root: Path) -> Dataset:
    required = ("Celeb-real", "Celeb-synthesis")
    missing = [name for name in required if not (root / name).is_dir()]
    if missing:
        raise BadInputError(f"{root} lacks {', '.join(missing)}/; Celeb-DF layout expects Celeb-real/, "
                            f"Celeb-synthesis/, optionally YouTube-real/, and {CELEBDF_TEST_LIST}")
    problems: list[dict] = []
    test_list: set[str] = set()
    list_path = root / CELEBDF_TEST_LIST
    if list_path.is_file():
        for lineno, line in enumerate(list_path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[0] not in ("0", "1"):
                problems.append({"path": f"{CELEBDF_TEST_LIST}:{lineno}",
                                 "problem": f"expected '<0|1> <folder/video.mp4>', got {line.strip()!r}"})
                continue
            test_list.add(parts[1])
    else:
        problems.append({"path": CELEBDF_TEST_LIST, "problem": "missing: no official test split; "
                         "the test split is drawn like the others"})

    items: list[MediaItem] = []
    for folder, label in (("Celeb-real", REAL), ("YouTube-real", REAL), ("Celeb-synthesis", FAKE)):
        for path in sorted((root / folder).glob("*.mp4")) if (root / folder).is_dir() else []:
            rel = _rel(root, path)
            stem = path.stem
            if folder == "Celeb-real" and (m := _CELEB_REAL.match(stem)):
                group = f"celebdf:id{int(m.group(1))}"
            elif folder == "Celeb-synthesis" and (m := _CELEB_FAKE.match(stem)):
                # id<target>_id<source>_<n>: made from the target's real video id<target>_<n>.
                group = f"celebdf:id{int(m.group(1))}"
            elif folder == "YouTube-real":
                group = f"youtube:{stem}"
            else:
                problems.append({"path": rel, "problem": "name does not follow Celeb-DF's id<N>_... "
                                 "pattern; grouped alone"})
                group = f"celebdf:{rel}"
            items.append(MediaItem(path=str(path), video_id=rel, label=label, group=group, kind="video",
                                   fixed_split="test" if rel in test_list else None))
    known = {item.video_id for item in items}
    for rel in sorted(test_list - known):
        problems.append({"path": rel, "problem": f"listed in {CELEBDF_TEST_LIST} but missing on disk"})
    return Dataset(name=root.name, layout="celebdf", root=str(root), items=items, problems=problems)


# --- real/ and fake/ folders ----------------------------------------------------------------

def load_folder(root: Path) -> Dataset:
    missing = [name for name in ("real", "fake") if not (root / name).is_dir()]
    if missing:
        raise BadInputError(f"{root} lacks {' and '.join(m + '/' for m in missing)}; folder layout expects "
                            "real/ and fake/ holding videos or images")
    items: list[MediaItem] = []
    problems: list[dict] = []
    for folder, label in (("real", REAL), ("fake", FAKE)):
        base = root / folder
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            rel = _rel(root, path)
            kind = _kind(path)
            if kind is None:
                problems.append({"path": rel, "problem": "not a video or image file; skipped"})
                continue
            inner = path.relative_to(base).parts
            # real/<source>/... and fake/<source>/...: the sub-folder names the group.
            group = f"folder:{inner[0]}" if len(inner) > 1 else f"folder:{rel}"
            items.append(MediaItem(path=str(path), video_id=rel, label=label, group=group, kind=kind))
    return Dataset(name=root.name, layout="folder", root=str(root), items=items, problems=problems)
