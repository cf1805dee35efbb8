"""Rendering: env frames, tiling, text overlays and atomic mp4/gif writing (rlkd.render)."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

from rlkd.render import overlay_text, tile_frames, write_video
from conftest import AGV, FAST

_SHELF = (120, 92, 60)
_ROBOT = (30, 110, 220)


def _has_colour(frame, rgb) -> bool:
    return bool((frame == np.array(rgb, dtype=np.uint8)).all(axis=-1).any())


def test_env_render_single_and_tiled(agv_env):
    env = agv_env
    frame = env.render()
    W, H = env.world
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert frame.shape[:2] == (round(480 * H / W), 480)  # default width, map aspect ratio
    assert _has_colour(frame, _SHELF) and _has_colour(frame, _ROBOT)
    small = env.render(env_ids=[2], width=100)
    assert small.shape == (round(100 * H / W), 100, 3)
    tiled = env.render(env_ids=[0, 1, 2, 3], width=100)
    h = small.shape[0]
    assert tiled.shape == (2 * h + 2, 2 * 100 + 2, 3)  # 2 x 2 grid, 2-pixel gutters
    np.testing.assert_array_equal(tiled[:h, 100 + 2:], env.render(env_ids=[1], width=100))
    row = env.render(env_ids=[0, 1, 2], width=100, cols=3)
    assert row.shape == (h, 3 * 100 + 2 * 2, 3)
    with pytest.raises(ValueError, match="out of range"):
        env.render(env_ids=[8])


def test_render_follows_the_state(agv_env):
    import torch

    before = agv_env.render(env_ids=[0], width=120, show_lidar=False)
    agv_env.step(torch.tensor([[1.0, 0.5]]).expand(8, 2).contiguous())
    after = agv_env.render(env_ids=[0], width=120, show_lidar=False)
    assert before.shape == after.shape and not np.array_equal(before, after)


def test_gymnasium_render_modes():
    env = gymnasium.make(f"rlkd/{AGV}", render_mode="rgb_array", **FAST)
    env.reset(seed=0)
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.shape[2] == 3
    env.close()
    env = gymnasium.make(f"rlkd/{AGV}", **FAST)
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.unwrapped.render() is None
    from rlkd.adapters import GymnasiumEnv

    with pytest.raises(ValueError, match="render_mode"):
        GymnasiumEnv(env.unwrapped.env, render_mode="human")
    vec = gymnasium.make_vec(f"rlkd/{AGV}", num_envs=4, render_mode="rgb_array", **FAST)
    vec.reset(seed=0)
    tiled = vec.render()
    single = tiled.shape
    assert tiled.dtype == np.uint8 and single[0] > 0 and single[2] == 3
    vec.close()


# ---------------------------------------------------------------------------------- frames
def _frames(n=6, h=33, w=47):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_tile_frames_layout():
    fs = _frames(5, 10, 20)
    out = tile_frames(fs, pad=2, background=7)
    assert out.shape == (2 * 10 + 2, 3 * 20 + 2 * 2, 3) and out.dtype == np.uint8
    for i, f in enumerate(fs):
        r, c = divmod(i, 3)
        np.testing.assert_array_equal(out[r * 12: r * 12 + 10, c * 22: c * 22 + 20], f)
    assert (out[12:, 44:] == 7).all()  # the empty sixth cell
    assert (out[10:12] == 7).all()  # gutter
    assert tile_frames(fs[:1]).shape == (10, 20, 3)
    assert tile_frames(fs, cols=5, pad=0).shape == (10, 100, 3)
    with pytest.raises(ValueError):
        tile_frames([])
    with pytest.raises(ValueError, match="shape"):
        tile_frames([fs[0], np.zeros((11, 20, 3), np.uint8)])


def test_overlay_text():
    f = np.zeros((40, 120, 3), dtype=np.uint8)
    out = overlay_text(f, "step 12", xy=(4, 4))
    assert out.shape == f.shape and out.dtype == np.uint8
    assert (f == 0).all()  # the input is untouched
    assert out[:20, :60].max() > 200  # white text near xy
    assert (out[30:, 80:] == 0).all()  # nothing far away
    assert overlay_text(f, "line 1\nline 2").shape == f.shape


# ---------------------------------------------------------------------------------- video
@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_write_video(tmp_path, suffix):
    import imageio.v2 as imageio
    import imageio_ffmpeg

    path = tmp_path / "sub" / f"clip{suffix}"
    out = write_video(path, _frames(6), fps=5)  # odd 33 x 47 frames: padded for H.264
    assert out == path and path.stat().st_size > 0
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left
    if suffix == ".gif":
        frames = imageio.mimread(path)
        assert len(frames) == 6 and frames[0].shape[:2] == (33, 47)
    else:
        # (Iterating imageio's ffmpeg reader to the end fails with this ffmpeg build; count.)
        assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == 6
        first = imageio.get_reader(path, format="FFMPEG").get_data(0)
        assert first.shape == (34, 48, 3)  # padded to even sizes


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"\.mp4 or \.gif"):
        write_video(tmp_path / "x.avi", _frames(2))
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "x.gif", [])
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "x.gif", [np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "x.gif", [np.zeros((4, 4), np.uint8)])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exc", [OSError, KeyboardInterrupt])
def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, exc):
    import imageio.v2

    path = tmp_path / "clip.gif"
    path.write_bytes(b"previous video")

    def broken(uri, frames, **kwargs):  # writes half a file, then dies
        with open(uri, "wb") as f:
            f.write(b"GIF89a partial")
        raise exc("disk full")

    monkeypatch.setattr(imageio.v2, "mimsave", broken)
    with pytest.raises(exc):
        write_video(path, _frames(3))
    assert path.read_bytes() == b"previous video"  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["clip.gif"]  # and no temp file is left
