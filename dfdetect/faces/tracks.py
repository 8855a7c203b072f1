"""Faces linked across the sampled frames of a video into tracks: one track per person.

A video's sampled frames are a fraction of a second apart, so the same face shows up in
neighbouring frames at a nearby place and a similar size. Faces are linked frame by frame to the
track whose last face they overlap most (the overlap of their crop squares, which tolerates the
motion between two samples) when the sizes agree; a face that links to no track starts one.

Tracks also decide on faces the detector was less sure of. The detector reports candidates down
to a lower confidence; a candidate under the face threshold is kept only when it links to a
track that has a confident face before it and one after it (a face that dims for a few frames
in the middle of a shot, or sits just under the threshold for most of it), and it is marked
``rescued``. Candidates carry a track along (it follows them) but never start one, and those
after its last confident face or before its first are dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

DEFAULT_LINK_IOU = 0.3  # overlap of the crop squares of two faces on one track, at least
DEFAULT_MAX_SIZE_RATIO = 1.5  # larger side over smaller side of two faces on one track, at most
DEFAULT_MAX_GAP = 4  # sampled frames a track may miss and still continue
LINK_MARGIN = 0.5  # the squares compared are the face boxes grown by this share of their side


@dataclasses.dataclass(frozen=True)
class Link:
    """A face kept: its index among the candidates, its track, and whether the track rescued it."""

    index: int
    track: int
    rescued: bool = False


def box_iou(a, b) -> float:
    """Intersection over union of two boxes given as x, y, width, height."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - w * h
    return float(w * h / union) if union > 0 else 0.0


def _square(box, margin: float = LINK_MARGIN) -> tuple[float, float, float, float]:
    """The face box grown into a square of ``1 + 2 * margin`` times its longer side (x, y, w, h)."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    return (x + w / 2 - side / 2, y + h / 2 - side / 2, side, side)


def link_overlap(a, b) -> float:
    """Intersection over union of the grown squares of two face boxes (x, y, w, h)."""
    return box_iou(_square(a), _square(b))


def size_ratio(a, b) -> float:
    sa, sb = max(a[2], a[3]), max(b[2], b[3])
    return float(max(sa, sb) / max(1, min(sa, sb)))


@dataclasses.dataclass
class _Track:
    id: int
    last_box: tuple
    last_position: int
    members: list = dataclasses.field(default_factory=list)  # (position, face index)


def link_faces(faces: Sequence, min_confidence: float, sampled: Sequence[int] | None = None, *,
               link_iou: float = DEFAULT_LINK_IOU, max_size_ratio: float = DEFAULT_MAX_SIZE_RATIO,
               max_gap: int = DEFAULT_MAX_GAP) -> list[Link]:
    """Link faces into tracks; returns the faces kept, in their order.

    ``faces``: every candidate of a video's sampled frames, in frame order (anything with
    ``frame_index``, ``box`` as x, y, w, h and ``confidence``). ``sampled``: the indices of every
    sampled frame, those without a face included (a track continues over at most ``max_gap``
    of them); default: the frames the faces are in. Faces at or above ``min_confidence`` are
    kept; those under it only when rescued (see the module docstring). Tracks are numbered
    0, 1, ... in the order they start.
    """
    frames = sorted(set(sampled or ()) | {f.frame_index for f in faces})
    positions = {index: p for p, index in enumerate(frames)}
    tracks: list[_Track] = []
    assigned: dict[int, int] = {}  # face index -> track id
    by_frame: dict[int, list[int]] = {}
    for i, face in enumerate(faces):
        by_frame.setdefault(positions[face.frame_index], []).append(i)
    for position in sorted(by_frame):
        # Confident faces claim tracks first; each track takes at most one face of a frame.
        order = sorted(by_frame[position], key=lambda i: -faces[i].confidence)
        open_tracks = [t for t in tracks if position - t.last_position <= max_gap + 1]
        pairs = []
        for i in order:
            for t in open_tracks:
                if size_ratio(faces[i].box, t.last_box) > max_size_ratio:
                    continue
                overlap = link_overlap(faces[i].box, t.last_box)
                if overlap >= link_iou:
                    pairs.append((overlap, faces[i].confidence >= min_confidence, i, t))
        pairs.sort(key=lambda p: (-p[0], -p[1]))
        taken_faces, taken_tracks = set(), set()
        for _, _, i, t in pairs:
            if i in taken_faces or t.id in taken_tracks:
                continue
            taken_faces.add(i)
            taken_tracks.add(t.id)
            assigned[i] = t.id
            t.members.append((position, i))
            t.last_box, t.last_position = faces[i].box, position
        for i in order:
            if i not in taken_faces and faces[i].confidence >= min_confidence:
                t = _Track(id=len(tracks), last_box=faces[i].box, last_position=position, members=[(position, i)])
                tracks.append(t)
                assigned[i] = t.id
    kept: list[Link] = []
    for i, face in enumerate(faces):
        if i not in assigned:
            continue
        track = tracks[assigned[i]]
        if face.confidence >= min_confidence:
            kept.append(Link(i, track.id))
            continue
        position = positions[face.frame_index]
        confident = [p for p, j in track.members if faces[j].confidence >= min_confidence]
        if any(p < position for p in confident) and any(p > position for p in confident):
            kept.append(Link(i, track.id, rescued=True))
    # Number the tracks that kept a face 0, 1, ... in the order they start.
    renumber = {old: new for new, old in enumerate(dict.fromkeys(link.track for link in kept))}
    return [dataclasses.replace(link, track=renumber[link.track]) for link in kept]
