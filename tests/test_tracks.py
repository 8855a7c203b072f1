"""Faces linked across the sampled frames of a video: tracks, and the candidates they vouch for."""

from __future__ import annotations

from dataclasses import dataclass

from dfdetect.faces.tracks import Link, link_faces, link_overlap, size_ratio

THRESHOLD = 0.95


@dataclass(frozen=True)
class F:
    frame_index: int
    box: tuple
    confidence: float = 0.99


def kept(faces, **options):
    return [(faces[link.index].frame_index, link.track, link.rescued)
            for link in link_faces(faces, THRESHOLD, **options)]


def test_two_people_side_by_side_are_two_tracks():
    faces = []
    for i in range(6):
        faces += [F(i, (300 + 2 * i, 100, 80, 100)), F(i, (40 - i, 110, 70, 90), 0.97)]
    links = link_faces(faces, THRESHOLD)
    assert len(links) == 12 and not any(link.rescued for link in links)
    by_track = {}
    for link in links:
        by_track.setdefault(link.track, set()).add(faces[link.index].box[0] > 200)
    assert by_track == {0: {True}, 1: {False}}  # numbered in the order they start, each one person


def test_a_dim_face_between_confident_ones_is_rescued():
    boxes = [(100 + 5 * i, 80, 60, 70) for i in range(5)]
    confidences = [0.99, 0.9, 0.98, 0.88, 0.97]
    faces = [F(i, b, c) for i, (b, c) in enumerate(zip(boxes, confidences))]
    assert kept(faces) == [(0, 0, False), (1, 0, True), (2, 0, False), (3, 0, True), (4, 0, False)]


def test_candidates_at_the_ends_or_alone_are_dropped():
    box = (100, 80, 60, 70)
    # A track's first and last faces must be confident: doubtful ones at either end go.
    faces = [F(0, box, 0.9), F(1, box), F(2, box), F(3, box, 0.86)]
    assert kept(faces) == [(1, 0, False), (2, 0, False)]
    # A candidate that links to no track never starts one.
    faces = [F(0, box), F(1, box), F(2, box), F(1, (400, 200, 60, 70), 0.9)]
    assert [k for k in kept(faces) if k[1] != 0] == []
    assert kept([F(0, box, 0.9), F(1, box, 0.9), F(2, box, 0.9)]) == []


def test_a_moving_face_stays_one_track_and_a_jump_starts_another():
    moving = [F(i, (50 + 30 * i, 100 + 5 * i, 60, 70)) for i in range(8)]  # half its width per frame
    assert {t for _, t, _ in kept(moving)} == {0}
    jump = [F(0, (50, 100, 60, 70)), F(1, (55, 100, 60, 70)), F(2, (500, 100, 60, 70)), F(3, (505, 100, 60, 70))]
    assert [t for _, t, _ in kept(jump)] == [0, 0, 1, 1]


def test_a_face_of_another_size_is_another_person():
    faces = [F(0, (100, 100, 60, 70)), F(1, (100, 100, 60, 70)), F(2, (80, 80, 140, 160)), F(3, (100, 100, 60, 70))]
    assert [t for _, t, _ in kept(faces)] == [0, 0, 1, 0]
    assert size_ratio((0, 0, 60, 70), (0, 0, 140, 160)) > 2


def test_a_track_waits_a_few_frames_then_ends():
    box = (100, 100, 60, 70)
    # Missed in sampled frames 1 and 2 (frame 1 has no face at all): the track goes on.
    faces = [F(0, box), F(2, (500, 0, 20, 20)), F(3, box), F(4, box)]
    assert [t for _, t, _ in kept(faces)] == [0, 1, 0, 0]
    # Missed in 6 sampled frames: gone; the face that comes back is a new track.
    faces = [F(0, box), F(7, box)]
    assert [link.track for link in link_faces(faces, THRESHOLD, range(8), max_gap=4)] == [0, 1]
    assert [link.track for link in link_faces(faces, THRESHOLD, range(8), max_gap=6)] == [0, 0]
    assert [link.track for link in link_faces(faces, THRESHOLD, max_gap=0)] == [0, 0]  # only faces' frames known


def test_one_face_per_track_and_frame():
    box = (100, 100, 60, 70)
    faces = [F(0, box), F(1, box), F(1, (104, 102, 60, 70), 0.96), F(2, box)]
    links = link_faces(faces, THRESHOLD)
    assert len({(faces[k.index].frame_index, k.track) for k in links}) == len(links)
    assert [k.track for k in links] == [0, 0, 1, 0]


def test_overlap_measures_the_grown_squares():
    assert link_overlap((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    # Beside each other, not touching: their squares, grown by half a side each way, still overlap.
    assert 0.2 < link_overlap((0, 0, 10, 10), (12, 0, 10, 10)) < 0.5
    assert link_overlap((0, 0, 10, 10), (100, 100, 10, 10)) == 0.0
    assert Link(0, 1).rescued is False
