import numpy as np
import pytest

from dfdetect.training.blending import DEMO, TRAINING, self_blend, soft_face_mask


def test_blend_changes_the_face_and_leaves_the_rest(astronaut):
    box = (182, 64, 83, 107)
    fake = self_blend(astronaut, box, np.random.default_rng(0), DEMO)
    assert fake.shape == astronaut.shape and fake.dtype == np.uint8
    diff = np.abs(fake.astype(int) - astronaut.astype(int)).sum(axis=2)
    x, y, w, h = box
    inside = diff[y + h // 4: y + 3 * h // 4, x + w // 4: x + 3 * w // 4].mean()
    outside = np.concatenate([diff[:40].ravel(), diff[-40:].ravel()]).mean()
    assert inside > 20 and outside < 1


def test_blend_is_seeded(astronaut):
    box = (182, 64, 83, 107)
    a = self_blend(astronaut, box, np.random.default_rng(5), TRAINING)
    b = self_blend(astronaut, box, np.random.default_rng(5), TRAINING)
    c = self_blend(astronaut, box, np.random.default_rng(6), TRAINING)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).sum() > 0


def test_mask_is_soft():
    mask = soft_face_mask((200, 200), (50, 50, 100, 100), np.random.default_rng(0))
    assert mask.max() == pytest.approx(1.0, abs=1e-3) and mask.min() == 0.0
    assert ((mask > 0.05) & (mask < 0.95)).sum() > 500  # a gradual boundary, not a hard edge


def test_blend_rejects_bad_input(astronaut):
    with pytest.raises(ValueError, match="uint8 RGB"):
        self_blend(astronaut.astype(np.float32), (0, 0, 10, 10), np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive size"):
        self_blend(astronaut, (0, 0, 0, 10), np.random.default_rng(0))
