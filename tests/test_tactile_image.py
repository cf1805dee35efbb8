"""Tactile image (rlkd.envs.tactile.image) and the ``tactile_obs`` modes of TactilePegInsertion-v0:
shape and dtype, the background bit for bit without contact, changes confined to the blurred
footprint, monotone in the press, three lights that shade opposite sides differently, the
per-env noise param, the groups each mode gives, bad knobs, a CNN student on the image group.
Fast (~3 s; the torch.compile test is opt-in: RLKD_TEST_COMPILE=1, ~10-20 s)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import rlkd
from conftest import hold_still, make_tactile
from rlkd.core.config import ConfigError
from rlkd.envs.tactile.image import TactileImager, blur_matrix, shade, slopes, tactile_panels
from rlkd.envs.tactile.scene import SceneSpec
from rlkd.envs.tactile.sensor import TactileSensor

ID = "TactilePegInsertion-v0"
SPEC = SceneSpec()


def _imager(**kw) -> TactileImager:
    """Two pads whose frames are the world frame (surface z = 0, normal +z towards the peg)."""
    args = dict(width=SPEC.pad_width, height=SPEC.pad_height, peg_radius=SPEC.peg_radius,
                peg_half_length=SPEC.peg_length / 2, pad_offsets=torch.zeros(2, 3),
                pad_rotations=torch.eye(3).expand(2, 3, 3))
    args.update(kw)
    return TactileImager(**args)


def _peg(depths, along: str = "y", x: float = 0.0):
    """Poses ``(finger_pos, finger_quat, peg_pos, peg_quat)`` of a peg lying on the pads with its
    axis along the pad's ``along`` axis, pressed ``depths[i]`` m into them (negative: above)."""
    d = torch.as_tensor(depths, dtype=torch.float32).reshape(-1)
    n = d.numel()
    c = math.cos(math.pi / 4)
    q = [c, -c, 0.0, 0.0] if along == "y" else [c, 0.0, c, 0.0]   # cylinder z -> pad y / x
    peg_pos = torch.stack((torch.full_like(d, x), torch.zeros_like(d), SPEC.peg_radius - d), -1)
    return (torch.zeros(n, 2, 3), torch.tensor([1.0, 0, 0, 0]).expand(n, 2, 4), peg_pos,
            torch.tensor(q).expand(n, 4))


def _delta(img: torch.Tensor, im: TactileImager) -> torch.Tensor:
    return img.float() - im.background_f




def _pixel_state(env):
    st = env._state(None)
    fi = env.finger_ids
    return env.imager.depth(st["xpos"][:, fi], st["xquat"][:, fi], st["peg_pos"], st["peg_quat"])


# ----------------------------------------------------------------------- the image model
def test_shape_dtype_and_background_without_contact(one_thread):
    im = _imager()
    img = im.compute(*_peg([-0.001, -0.0001, -0.01]))             # above the pads
    assert img.shape == (3, 2, 3, 80, 60) and img.dtype == torch.uint8
    assert torch.equal(img, im.background.expand_as(img))          # bit for bit
    # The background: deterministic, smooth, slightly non-uniform, each channel its own.
    bg = im.background.float()
    assert torch.equal(im.background, _imager().background)
    assert 5 < float(bg.std((1, 2)).min()) and float(bg.std((1, 2)).max()) < 25
    assert float(bg.diff(dim=-1).abs().max()) <= 2 and float(bg.diff(dim=-2).abs().max()) <= 2
    assert not torch.equal(bg[0], bg[1]) and not torch.equal(bg[1], bg[2])
    small = _imager(rows=40, cols=30).compute(*_peg([0.0005]))
    assert small.shape == (1, 2, 3, 40, 30)


def test_pixel_grid_is_the_field_sensor_geometry():
    """The image's depth at an R x C grid is the force field's taxel depth (the same transform)."""
    pose = _peg([0.0004, 0.0007], along="x", x=0.001)
    im = _imager(rows=20, cols=25)
    field = TactileSensor(20, 25, SPEC.pad_width, SPEC.pad_height, SPEC.peg_radius,
                          SPEC.peg_length / 2, torch.zeros(2, 3), torch.eye(3).expand(2, 3, 3))
    torch.testing.assert_close(im.depth(*pose), field.compute_depth(*pose), rtol=0, atol=0)
    assert im.pitch == (SPEC.pad_height / 20, SPEC.pad_width / 25)


@pytest.mark.parametrize("blur", [0.0, 1.0, 2.5])
def test_contact_changes_pixels_only_within_the_blurred_footprint(blur, one_thread):
    im = _imager(blur=blur)
    pose = _peg([0.0005], along="y", x=0.002)
    depth = im.depth(*pose)
    changed = (_delta(im.compute(*pose), im) != 0).any(2)             # (1, 2, H, W)
    r = int(math.ceil(3 * blur)) if blur > 0 else 0
    reach = F.max_pool2d((depth > 0).float()[0], 2 * r + 1, stride=1, padding=r)[None] > 0
    assert changed.any() and not (changed & ~reach).any()
    assert not (changed & ~(im.height(depth) > 0)).any()
    if blur > 0:   # the elastomer spreads the indentation beyond the geometric contact
        assert (changed & (depth == 0)).any()
    d = _delta(im.compute(*pose), im)
    assert (d > 0).any() and (d < 0).any()                           # brighter and darker


def test_image_responds_monotonically_to_a_deeper_press(one_thread):
    im = _imager()
    depths = [0.0001, 0.0002, 0.0004, 0.0008, 0.0012]                  # below max_depth 1.5 mm
    mad = _delta(im.compute(*_peg(depths)), im).abs().mean((1, 2, 3, 4))
    assert (mad.diff() > 0).all(), mad
    # Beyond the gel's depth the height map is clipped: no deeper than max_depth reads.
    clipped = _imager(max_depth=0.0004)
    a, b = clipped.compute(*_peg([0.0004, 0.0008]))
    assert float(_delta(b[None], clipped).abs().mean()) < 1.5 * float(
        _delta(a[None], clipped).abs().mean())


def test_three_lights_shade_opposite_sides_of_a_contact_differently(one_thread):
    """Peg along the pad's y: slopes along x. Green (from -x, -y) and blue (from +x, -y) see the
    two flanks with opposite signs; red (from +y) sees both alike. Peg along x: red flips."""
    im = _imager(blur=1.0)
    d = _delta(im.compute(*_peg([0.0006], along="y")), im)[0, 0]       # (3, H, W)
    w = im.cols
    left, right = d[:, :, : w // 2].mean((1, 2)), d[:, :, w // 2:].mean((1, 2))
    assert left[1] > 1 and right[1] < -1, (left, right)                 # green
    assert left[2] < -1 and right[2] > 1, (left, right)                 # blue
    assert abs(float(left[0] - right[0])) < 0.1 * float(left[1] - right[1])  # red: symmetric
    assert not torch.equal(d[1], d[2]) and not torch.equal(d[0], d[1])  # shading, not a mask
    d = _delta(im.compute(*_peg([0.0006], along="x")), im)[0, 0]
    hh = im.rows
    low, high = d[0, : hh // 2].mean(), d[0, hh // 2:].mean()            # rows: -y, +y
    assert low < -1 and high > 1, (low, high)                            # red faces +y


def test_shading_is_phong_of_the_slope_normal_with_three_lights():
    """``shading_delta`` against the Phong formula written with explicit vectors (numpy)."""
    from rlkd.envs.tactile import image as I

    g = np.random.default_rng(0).uniform(-1.5, 1.5, (50, 2))
    el = math.radians(30.0)
    lights = np.array([[math.cos(el) * math.cos(a), math.cos(el) * math.sin(a), math.sin(el)]
                       for a in np.radians([90.0, 210.0, 330.0])])
    v = np.array([0.0, 0.0, 1.0])

    def phong(n):
        out = []
        for l_ in lights:
            r = 2 * (n @ l_) * n - l_
            out.append(I.KD * max(n @ l_, 0.0) + I.KS * max(r @ v, 0.0) ** I.SHININESS)
        return np.array(out)

    want = np.stack([I.GAIN * (phong(np.array([-gx, -gy, 1.0]) / math.hypot(gx, gy, 1.0))
                               - phong(v)) for gx, gy in g])
    lt = I.light_directions()
    got = I.shading_delta(torch.tensor(g[:, :1], dtype=torch.float32),
                          torch.tensor(g[:, 1:], dtype=torch.float32), lt[:, 0], lt[:, 1], lt[:, 2])
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-3)
    assert np.abs(want).max() > 50                                      # a visible response


def test_eager_sparse_path_matches_the_dense_reference(one_thread):
    im = _imager()
    pose = _peg([0.0002, 0.0009], along="x", x=0.003)
    depth = im.depth(*pose)
    dense = shade(depth, im.background_f, im.ops, im.max_depth, im.lights)
    dense = dense.round().clamp(0, 255).to(torch.uint8)
    eager = im.render(depth)
    assert (dense.int() - eager.int()).abs().max() <= 1
    assert (dense != eager).float().mean() < 1e-3


def test_blur_and_slope_operators():
    b = blur_matrix(10, 1.0)
    torch.testing.assert_close(b.sum(1), torch.ones(10))
    assert torch.equal(blur_matrix(5, 0.0), torch.eye(5))
    assert b[5, 5] > b[5, 6] > b[5, 7] > 0 and b[5, 9] == 0           # radius ceil(3 sigma) = 3
    # Slopes in m per m: a gel pressed 0.1 mm + 0.005 x + 0.002 y (no blur, no clip).
    im = _imager(rows=8, cols=6, blur=0.0, max_depth=0.01)
    py, px = im.pitch
    y = (torch.arange(8) - 3.5)[:, None] * py
    x = (torch.arange(6) - 2.5)[None] * px
    depth = (1e-4 + 0.005 * x + 0.002 * y).expand(1, 2, 8, 6)
    h, gx, gy = slopes(depth, im.ops, im.max_depth)
    torch.testing.assert_close(h, depth)
    torch.testing.assert_close(gx, torch.full_like(gx, 0.005), rtol=1e-4, atol=0)
    torch.testing.assert_close(gy, torch.full_like(gy, 0.002), rtol=1e-4, atol=0)


def test_image_noise_is_per_env_from_its_param(one_thread):
    from rlkd.core.rng import BatchRNG

    im = _imager()
    pose = _peg([-0.001, -0.001])
    rng = BatchRNG(2, seed=0)
    img = im.compute(*pose, noise_std=torch.tensor([0.0, 4.0]), rng=rng)
    d = _delta(img, im)
    assert torch.equal(img[0], im.background.expand_as(img[0]))
    assert 3.5 < float(d[1].std()) < 4.5


@pytest.mark.parametrize("kw, match", [
    (dict(rows=0), "rows=0: the image must not be empty"),
    (dict(cols=0), "cols=0: the image must not be empty"),
    (dict(blur=-1.0), "blur=-1.0 must be a finite number >= 0"),
    (dict(max_depth=0.0), "max_depth=0.0 must be a finite number > 0"),
])
def test_bad_imager_arguments_raise_value_error_naming_them(kw, match):
    with pytest.raises(ValueError, match=match):
        _imager(**kw)


# ----------------------------------------------------------------------- in the env
@pytest.mark.parametrize("mode, groups", [
    ("field", {"tactile"}), ("image", {"tactile_image"}), ("both", {"tactile", "tactile_image"}),
    ("none", set())])
def test_tactile_obs_modes_give_exactly_their_groups(mode, groups):
    env = make_tactile(2, tactile_obs=mode, tactile_image_height=40, tactile_image_width=30)
    obs = hold_still(env, 2)
    assert set(obs) == {"policy", "critic"} | groups == set(env.observation_spaces)
    assert set(env.observation_layout) == set(obs)
    assert (env.sensor is not None) == ("tactile" in groups)
    assert (env.imager is not None) == ("tactile_image" in groups)
    if "tactile_image" in groups:
        space = env.observation_spaces["tactile_image"]
        assert space.shape == (2, 3, 40, 30) and space.dtype == np.uint8
        assert space.low.min() == 0 and space.high.max() == 255
        assert obs["tactile_image"].shape == (2, 2, 3, 40, 30)
        assert obs["tactile_image"].dtype == torch.uint8
        lay = env.observation_layout["tactile_image"]
        assert lay["pad_l"] == slice(3 * 40 * 30, 2 * 3 * 40 * 30)
    env.close()


def test_env_image_is_the_background_without_contact_and_changes_only_at_the_press():
    env = make_tactile(2, tactile_obs="image", grip_force=0.0)
    q = env.sim.qpos.clone()
    q[:, 6:8] = -0.01                                                   # fingers open
    q[:, 8:11] = torch.tensor([0.1, 0.1, 0.03], dtype=q.dtype)          # peg on the floor
    q[:, 11:15] = torch.tensor([1.0, 0, 0, 0], dtype=q.dtype)
    env.sim.reset(None, q)
    img = hold_still(env, 3)["tactile_image"]
    assert torch.equal(img, env.imager.background.expand_as(img))
    assert _pixel_state(env).max() == 0
    env.close()

    env = make_tactile(2, tactile_obs="both")
    img = hold_still(env, 10)["tactile_image"]
    changed = (img != env.imager.background).any(2)
    pressed = env.imager.height(_pixel_state(env)) > 0
    assert changed.any(-1).any(-1).all()                                # every pad sees the peg
    assert not (changed & ~pressed).any()
    env.close()


def test_env_image_deepens_with_grip_force_and_noise_param_is_per_env():
    grips = torch.tensor([5.0, 10.0, 20.0, 30.0])
    env = rlkd.make(ID, num_envs=4, seed=0, num_threads=1, tactile_obs="image")
    twin = rlkd.make(ID, num_envs=4, seed=0, num_threads=1, tactile_obs="image")
    for e in (env, twin):
        e.params["grip_force"][:] = grips
        e.reset(seed=0)
    env.params["tactile_image_noise"][2] = 3.0
    a, b = hold_still(env, 15)["tactile_image"], hold_still(twin, 15)["tactile_image"]
    mad = _delta(b, twin.imager).abs().mean((1, 2, 3, 4))
    assert (mad.diff() > 0).all(), mad                                  # deeper press, more
    same = torch.tensor([True, True, False, True])
    assert torch.equal(a[same], b[same])
    assert 2.5 < float((a[2].float() - b[2].float()).std()) < 3.5
    env.close()
    twin.close()


@pytest.mark.parametrize("key, value, allowed", [
    ("tactile_obs", "depth", "one of 'field', 'image', 'both', 'none'"),
    ("tactile_image_blur", -0.5, "finite number in [0, 20]"),
    ("tactile_image_height", 0, "integer in [1, 512]"),
    ("tactile_image_width", 0, "integer in [1, 512]"),
    ("tactile_image_max_depth", 0.0, "finite number in (0, 0.01]"),
    ("tactile_image_noise", -1.0, "finite number >= 0"),
])
def test_bad_image_knobs_raise_naming_the_field(key, value, allowed):
    with pytest.raises(ConfigError) as err:
        rlkd.make(ID, num_envs=1, **{key: value})
    assert err.value.field == key and f"allowed: {allowed}" in str(err.value), str(err.value)


def test_cnn_student_reads_the_image_group(one_thread):
    """An AACD / PPO student: ActorCritic on [policy, tactile_image] picks the CNN for the uint8
    group; storage keeps it uint8."""
    from rlkd.nn.encoders import group_specs
    from rlkd.nn.policy import ActorCritic
    from rlkd.storage.rollout import obs_specs

    env = make_tactile(3, tactile_obs="both", tactile_image_height=40, tactile_image_width=30)
    obs = hold_still(env, 2)
    specs = group_specs(env.observation_spaces)
    model = ActorCritic(specs, ["policy", "tactile_image"], ["critic"], act_dim=env.act_dim)
    assert "tactile_image" in model.actor_encoder.cnn and "tactile" not in model.actor_encoder.cnn
    model.update_normalizers(obs)
    mu, sigma = model.dist_params(obs)
    assert mu.shape == (3, env.act_dim) and torch.isfinite(mu).all()
    assert model.value(obs).shape == (3, 1)
    assert obs_specs(env.observation_spaces, ["tactile_image"])["tactile_image"][1] == torch.uint8
    env.close()


def test_tactile_panels_and_render_are_pure():
    scene = np.zeros((240, 320, 3), np.uint8)
    images = np.full((2, 3, 80, 60), 100, np.uint8)
    normal = np.zeros((2, 20, 25))
    normal[1, 5, 5] = 2.0
    frame = tactile_panels(scene, images, normal)
    # pads at 3x (80 rows -> 240); the field: two 20-row pads in 119 rows each, 5x -> 125 wide
    assert frame.shape == (240, 320 + 2 + 180 + 2 + 180 + 2 + 125, 3) and frame.dtype == np.uint8
    assert tactile_panels(scene).shape == scene.shape

    env = make_tactile(2, tactile_obs="both", tactile_image_noise=5.0, tactile_noise_std=0.1)
    obs = hold_still(env, 3)
    depth, field = env.sensor.depth.clone(), env.sensor.field.clone()
    try:
        a = env.render([0, 1], width=160)
    except RuntimeError as e:
        pytest.skip(f"no OpenGL backend: {e}")
    b = env.render([0, 1], width=160)
    assert np.array_equal(a, b)                        # no noise, no hidden state
    assert a.shape[1] > 2 * 160 and a.shape[0] == 120
    assert torch.equal(env.sensor.depth, depth) and torch.equal(env.sensor.field, field)
    assert torch.equal(env.get_observations()["tactile_image"], obs["tactile_image"])
    plain = env.render([0], width=160, tactile=False)
    assert plain.shape == (120, 160, 3)
    env.close()


@pytest.mark.skipif(os.environ.get("RLKD_TEST_COMPILE") != "1",
                    reason="torch.compile takes ~20 s on 2 cores (RLKD_TEST_COMPILE=1)")
def test_compiled_image_equals_eager():
    im, comp = _imager(), _imager(compile=True)
    pose = _peg([0.0003, 0.0008, -0.001], along="y", x=0.001)
    a, b = im.compute(*pose), comp.compute(*pose)
    assert (a.int() - b.int()).abs().max() <= 1 and (a != b).float().mean() < 1e-3
    # Blocks of CHUNK envs (the compiled path's cache-sized blocks) change nothing.
    comp.CHUNK = 2
    assert torch.equal(comp.compute(*pose), b)


def test_sim2real_kind_sets_the_image_noise_of_the_chosen_episodes():
    from rlkd.sim2real import Condition

    env = make_tactile(4, tactile_obs="image")
    Condition("img_noise_4", {"tactile_image_noise": 4.0}).apply(env, torch.tensor([0, 2]))
    assert env.params["tactile_image_noise"].tolist() == [4.0, 0.0, 4.0, 0.0]
    env.close()
