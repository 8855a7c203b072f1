import numpy as np
import pytest

from dfdetect.faces.crops import crop_face, square_crop_box
from dfdetect.faces.detection import FaceDetector, enhance, faces_in_frames
from dfdetect.faces.frames import Frame


def test_mtcnn_finds_the_face_in_a_real_photograph(detector, astronaut):
    (found,) = detector.detect([astronaut])
    assert len(found) == 1
    x, y, w, h = found[0].box
    # The astronaut's face sits around x 180-265, y 60-170 in the 512 x 512 photograph.
    assert 160 < x < 200 and 40 < y < 90 and 60 < w < 110 and 80 < h < 130
    assert found[0].confidence > 0.95


def test_no_face_in_a_blank_frame(detector):
    assert detector.detect([np.full((240, 320, 3), 127, np.uint8)]) == [[]]


def test_several_faces_and_largest_only(photos):
    left = photos["astronaut"]
    right = np.ascontiguousarray(photos["grace_hopper"][:512, :512])
    scene = np.hstack([left, right[:, :, :]])
    both = FaceDetector().detect([scene])[0]
    assert len(both) == 2
    largest = FaceDetector(largest_only=True).detect([scene])[0]
    assert len(largest) == 1 and largest[0].area == max(d.area for d in both)


def test_square_crop_box_adds_the_margin_per_side():
    # A 100 x 100 face in the middle of a big frame, 30% margin: a 160 px square around it.
    assert square_crop_box((200, 200, 100, 100), (1000, 1000), 0.3) == (170, 170, 330, 330)
    # A tall box: the square follows its longer side.
    x0, y0, x1, y1 = square_crop_box((200, 200, 50, 100), (1000, 1000), 0.0)
    assert (x1 - x0, y1 - y0) == (100, 100)


def test_crop_is_clipped_at_the_frame_edge():
    assert square_crop_box((0, 0, 100, 100), (480, 640), 0.3) == (0, 0, 130, 130)
    assert square_crop_box((560, 400, 80, 80), (480, 640), 0.3) == (536, 376, 640, 480)
    with pytest.raises(ValueError, match="outside"):
        square_crop_box((700, 500, 10, 10), (480, 640), 0.0)


def test_crop_face_size_and_content(astronaut, detector):
    (found,) = detector.detect([astronaut])
    crop = crop_face(astronaut, found[0].box, margin=0.3, size=128)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
    # The crop holds a face: the detector finds it again, filling most of the crop.
    (again,) = detector.detect([crop])
    assert again and again[0].box[2] > 128 * 0.4


def test_faces_in_frames_maps_boxes_back_and_reports_empty_frames(detector, astronaut):
    import cv2

    half = cv2.resize(astronaut, (256, 256))
    frames = [Frame(index=3, timestamp=0.3, image=half, scale=0.5),
              Frame(index=7, timestamp=0.7, image=np.zeros((256, 256, 3), np.uint8), scale=0.5)]
    faces, empty = faces_in_frames(detector, frames, margin=0.3, size=64)
    assert empty == [7]
    assert len(faces) == 1
    face = faces[0]
    assert (face.frame_index, face.timestamp, face.face_index) == (3, 0.3, 0)
    assert face.crop.shape == (64, 64, 3)
    # Box in original pixels: the detection on the half-size frame, doubled.
    x, y, w, h = face.box
    assert 160 < x < 200 and 60 < w < 110


def test_detector_rejects_bad_settings():
    with pytest.raises(ValueError, match="min_confidence"):
        FaceDetector(min_confidence=1.5)
    with pytest.raises(ValueError, match="min_face_size"):
        FaceDetector(min_face_size=4)
    with pytest.raises(ValueError, match="unknown detector backend 'haar'; expected one of onnx, mtcnn"):
        FaceDetector(backend="haar")
    with pytest.raises(ValueError, match="unknown enhancement 'hdr'"):
        FaceDetector(enhance="hdr")
    with pytest.raises(ValueError, match="candidate_confidence must be in"):
        FaceDetector(candidate_confidence=0.5)
    assert FaceDetector(candidate_confidence=None).candidate_confidence == 0.95


def test_enhancement_lifts_a_dim_flat_frame_and_leaves_the_original(astronaut):
    dim = (astronaut.astype(np.float32) * 0.3 + 10).astype(np.uint8)
    before = dim.copy()
    lifted = enhance(dim, "clahe")
    assert lifted.shape == dim.shape and lifted.dtype == np.uint8
    assert lifted.std() > 1.5 * dim.std() and lifted.mean() > dim.mean()
    assert np.array_equal(dim, before), "the frame itself is not touched: crops are cut from it"
    assert enhance(dim, "none") is dim
    with pytest.raises(ValueError, match="unknown enhancement"):
        enhance(dim, "hdr")


def test_candidates_go_below_the_face_threshold(astronaut):
    detector = FaceDetector(min_confidence=0.999, candidate_confidence=0.85)
    dim = (astronaut.astype(np.float32) * 0.25).astype(np.uint8)
    (candidates,) = detector.candidates([dim])
    assert candidates and all(c.confidence >= 0.85 for c in candidates)
    (faces,) = detector.detect([dim])
    assert all(f.confidence >= 0.999 for f in faces) and len(faces) <= len(candidates)


def test_the_mtcnn_package_backend_finds_the_same_face(detector, astronaut):
    """Kept for comparison: the mtcnn package itself (TensorFlow) behind the same settings."""
    package = FaceDetector(backend="mtcnn", enhance="none")
    ours = FaceDetector(enhance="none")
    (theirs,), (mine,) = package.detect([astronaut]), ours.detect([astronaut])
    assert len(theirs) == len(mine) == 1
    assert np.abs(np.subtract(theirs[0].box, mine[0].box)).max() <= 2  # pixels
    assert theirs[0].confidence == pytest.approx(mine[0].confidence, abs=0.01)
    assert package.settings()["detector"] == "mtcnn" and ours.settings()["detector"] == "onnx"


def test_faces_are_cut_from_the_full_resolution_frame(detector, astronaut):
    import cv2

    half = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    frame = Frame(index=0, timestamp=0.0, image=half, scale=0.5, original=astronaut)
    (face,), _ = faces_in_frames(detector, [frame], margin=0.3, size=128)
    np.testing.assert_array_equal(face.crop, crop_face(astronaut, face.box, 0.3, 128))
    # The source region is twice the detection region: at least 128 px, so nothing is upscaled.
    x0, y0, x1, y1 = square_crop_box(face.box, astronaut.shape, 0.3)
    assert x1 - x0 >= 128
