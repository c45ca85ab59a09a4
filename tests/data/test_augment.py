"""Device-side frame augmentation: torchvision's crop distribution, bilinear resize, flip and seeding."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import stats

from jaxmm.data import augment
from jaxmm.data.readers import frames

RATIO = (3 / 4, 4 / 3)


@pytest.fixture(scope="module")
def boxes():
    """20,000 boxes for a 300x400 frame (one compile), as numpy."""
    draw = jax.jit(augment.crop_boxes, static_argnums=(1, 2, 3))
    return {k: np.asarray(v) for k, v in draw(jax.random.PRNGKey(0), (20000,), 300, 400)._asdict().items()}


def test_boxes_follow_torchvisions_rule(boxes):
    h, w = boxes["height"], boxes["width"]
    assert np.all((h >= 1) & (h <= 300) & (w >= 1) & (w <= 400))
    assert np.all((boxes["top"] >= 0) & (boxes["top"] <= 300 - h) & (boxes["left"] >= 0) & (boxes["left"] <= 400 - w))
    area = h * w / (300 * 400)
    assert area.min() >= 0.08 * 0.97 and area.max() <= 1.0  # rounding h and w moves the area by < 3% here
    # the sequential numpy rule (torchvision's loop: 10 attempts, then the centred fallback) gives the same law
    rng = np.random.default_rng(1)
    ref = np.asarray([frames.random_resized_crop_box(300, 400, rng) for _ in range(20000)])
    for name, ours, theirs in (("area", area, ref[:, 2] * ref[:, 3] / (300 * 400)),
                               ("log ratio", np.log(w / h), np.log(ref[:, 3] / ref[:, 2])),
                               ("top", boxes["top"] / (301 - h), ref[:, 0] / (301 - ref[:, 2]))):
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3, name


def test_log_ratio_and_area_are_uniform_when_every_attempt_fits():
    # on a square frame an area fraction <= 0.5 fits at any ratio in (3/4, 4/3): the first attempt is kept
    b = augment.crop_boxes(jax.random.PRNGKey(1), (20000,), 2000, 2000, scale=(0.08, 0.5))
    h, w = np.asarray(b.height, float), np.asarray(b.width, float)
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    assert stats.kstest(np.log(w / h), stats.uniform(log_lo, log_hi - log_lo).cdf).statistic < 0.015
    assert stats.kstest(h * w / 2000 ** 2, stats.uniform(0.08, 0.42).cdf).statistic < 0.015
    # binned: each tenth of the log-ratio range holds a tenth of the draws (binomial sd ~ 0.002)
    counts = np.histogram(np.log(w / h), bins=10, range=(log_lo, log_hi))[0] / len(h)
    np.testing.assert_allclose(counts, 0.1, atol=0.01)


@pytest.mark.parametrize("height, width, scale, ratio, box", [
    (4, 100, (0.08, 1.0), RATIO, (0, 47, 4, 5)),  # every attempt is taller than 4: h = 4, w = round(4 * 4/3)
    (10, 10, (0.6, 1.0), (2.0, 3.0), (2, 0, 5, 10)),  # every attempt is wider than 10: w = 10, h = round(10 / 2)
])
def test_fallback_is_the_centred_crop_when_no_attempt_fits(height, width, scale, ratio, box):
    assert augment.center_crop_box(height, width, ratio) == box
    b = augment.crop_boxes(jax.random.PRNGKey(2), (50,), height, width, scale, ratio)
    assert {tuple(int(v[i]) for v in b) for i in range(50)} == {box}


def _box(top, left, h, w):
    return augment.CropBoxes(*(jnp.int32(v) for v in (top, left, h, w)))


def _bilinear_reference(frame, top, left, h, w, flip):
    """float64 bilinear resize of ``frame[top:top + h, left:left + w]`` to the frame's size, edges clamped."""
    height, width = frame.shape[:2]
    ys = np.clip(top + (np.arange(height) + 0.5) * h / height - 0.5, 0, height - 1)
    xs = np.clip(left + (np.arange(width) + 0.5) * w / width - 0.5, 0, width - 1)
    out = np.zeros(frame.shape, np.float64)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
            fy, fx = y - y0, x - x0
            out[i, j] = ((1 - fy) * (1 - fx) * frame[y0, x0] + (1 - fy) * fx * frame[y0, x1]
                         + fy * (1 - fx) * frame[y1, x0] + fy * fx * frame[y1, x1])
    return out[:, ::-1] if flip else out


FRAME = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
_crop = jax.jit(augment.resized_crop)  # one compile for every box and flip of FRAME


def test_full_box_is_the_identity_and_flip_is_np_flip():
    np.testing.assert_array_equal(_crop(FRAME, _box(0, 0, 7, 9), False), FRAME)
    np.testing.assert_array_equal(_crop(FRAME, _box(0, 0, 7, 9), True), np.flip(FRAME, 1))
    # through the sampler: scale = ratio = 1 on a square frame makes every box the whole frame
    clip = np.random.default_rng(1).integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    full = jax.jit(lambda key, x: augment.random_resized_crop_flip(key, x, scale=(1, 1), ratio=(1, 1)))
    out = np.asarray(full(jax.random.PRNGKey(0), clip))
    flipped = np.asarray([np.array_equal(o, np.flip(x, 1)) for o, x in zip(out, clip)])
    kept = np.asarray([np.array_equal(o, x) for o, x in zip(out, clip)])
    assert np.all(flipped | kept) and 8 <= flipped.sum() <= 32  # p = 0.5: 20 +- 3.2 expected


@pytest.mark.parametrize("flip", [False, True])
def test_crop_resize_equals_a_float64_bilinear_reference_and_pil(flip):
    for top, left, h, w in ((1, 2, 4, 5), (0, 0, 1, 1), (3, 6, 4, 3), (2, 1, 5, 8)):
        ours = np.asarray(_crop(FRAME, _box(top, left, h, w), flip))
        np.testing.assert_allclose(ours, _bilinear_reference(FRAME.astype(np.float64), top, left, h, w, flip),
                                   atol=1e-4)
        # the host pipeline's PIL resize of the same box (uint8, fixed point): within one grey level
        pil = np.asarray(Image.fromarray(FRAME).resize((9, 7), Image.BILINEAR, box=(left, top, left + w, top + h)))
        pil = pil[:, ::-1] if flip else pil
        assert np.abs(np.floor(ours + 0.5) - pil).max() <= 1


def test_seeded_by_run_key_and_step_and_applied_to_the_named_frames_only():
    rng = np.random.default_rng(2)
    inputs = {"v": rng.integers(0, 256, (4, 2, 8, 8, 3), dtype=np.uint8),
              "a": rng.normal(size=(4, 3)).astype(np.float32)}
    key = jax.random.PRNGKey(5)
    run = jax.jit(augment.augment_inputs, static_argnums=(3,))
    first = run(key, jnp.int32(3), inputs, ("v",))
    np.testing.assert_array_equal(first["v"], run(key, jnp.int32(3), inputs, ("v",))["v"])  # a resume redraws it
    np.testing.assert_array_equal(first["a"], inputs["a"])
    assert not np.array_equal(first["v"], inputs["v"])
    assert not np.array_equal(first["v"], run(key, jnp.int32(4), inputs, ("v",))["v"])  # next step
    assert not np.array_equal(first["v"], run(jax.random.PRNGKey(6), jnp.int32(3), inputs, ("v",))["v"])  # other run
    out = np.asarray(first["v"]).reshape(-1, 8, 8, 3)
    assert len({o.tobytes() for o in out}) == len(out)  # every frame draws its own box


def test_bad_input_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match=r"needs uint8 RGB frames \[..., H, W, 3\].*got float32 \(2, 4, 4, 3\)"):
        augment.random_resized_crop_flip(jax.random.PRNGKey(0), np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"scale must be \(low, high\) with 0 < low <= high, got \(0.5, 0.1\)"):
        augment.random_resized_crop_flip(jax.random.PRNGKey(0), FRAME, scale=(0.5, 0.1))
    with pytest.raises(ValueError, match=r"flip_prob must be a probability in \[0, 1\], got 2"):
        augment.random_resized_crop_flip(jax.random.PRNGKey(0), FRAME, flip_prob=2)
    with pytest.raises(ValueError, match=r"names \['video'\], which the batch lacks \(inputs: \['v'\]\)"):
        augment.augment_inputs(jax.random.PRNGKey(0), 0, {"v": FRAME}, ("video",))
