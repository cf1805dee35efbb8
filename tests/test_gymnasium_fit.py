"""gymnasium fit (issue 17, item 10): registered time limits, gymnasium's own vector wrappers on
``gymnasium.make_vec("rlkd/...")`` with their defaults, the autoreset mode, RecordVideo."""

from __future__ import annotations

import numpy as np
import pytest

import rlkd
from conftest import AGV, FAST

T = 12  # the short task's default episode length


@pytest.fixture
def short_id():
    """An AGV preset whose *default* episode length is T (registered like any task)."""
    import gymnasium

    from rlkd.core.registry import _REGISTRY, spec

    base = spec(AGV)
    rlkd.register("TestAGVShort-v0", base.entry_point, base.config_factory,
                  overrides={**base.overrides, "max_episode_steps": T, **FAST},
                  description="short AGV (test)")
    yield "TestAGVShort-v0"
    _REGISTRY.pop("TestAGVShort-v0", None)
    gymnasium.registry.pop("rlkd/TestAGVShort-v0", None)


def _time_limits(env) -> list:
    import gymnasium

    found = []
    while isinstance(env, gymnasium.Wrapper):
        if isinstance(env, gymnasium.wrappers.TimeLimit):
            found.append(env)
        env = env.env
    return found


def test_registered_max_episode_steps_is_each_tasks_default():
    import gymnasium

    from rlkd.core.registry import spec

    for env_id in rlkd.list_envs():
        want = spec(env_id).default_config().max_episode_steps
        assert gymnasium.spec(f"rlkd/{env_id}").max_episode_steps == want, env_id
    env = gymnasium.make(f"rlkd/{AGV}", **FAST)
    assert env.spec.max_episode_steps == 400
    limits = _time_limits(env)
    assert len(limits) == 1 and limits[0]._max_episode_steps == env.unwrapped.env.max_episode_length
    env.close()


def test_single_env_time_limit_and_task_truncate_on_the_same_step(short_id):
    import gymnasium

    env = gymnasium.make(f"rlkd/{short_id}")
    assert env.spec.max_episode_steps == T and len(_time_limits(env)) == 1
    for episode in range(2):  # the second one starts from the adapter's autoreset state
        env.reset(seed=0) if episode == 0 else env.reset()
        for t in range(1, T + 1):
            _, _, term, trunc, info = env.step(np.zeros(2, np.float32))  # standing still
            assert not term
            if trunc:
                break
        # Our task ended the episode (its stats are there) on the TimeLimit's step, not later
        # (the TimeLimit alone) nor earlier (a second, shorter limit).
        assert t == T and trunc and info["episode"]["l"] == T and info["episode"]["timeout"]
    env.close()


def test_make_vec_passes_the_time_limit_to_the_task(short_id):
    import gymnasium

    envs = gymnasium.make_vec(f"rlkd/{short_id}", num_envs=2)
    assert envs.unwrapped.env.max_episode_length == T
    envs.close()
    envs = gymnasium.make_vec(f"rlkd/{short_id}", num_envs=2, max_episode_steps=5)
    assert envs.unwrapped.env.max_episode_length == 5
    envs.close()


def test_record_episode_statistics_with_defaults_matches_our_episode_stats(short_id):
    import gymnasium

    n = 6
    envs = gymnasium.wrappers.vector.RecordEpisodeStatistics(
        gymnasium.make_vec(f"rlkd/{short_id}", num_envs=n))
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(2 * T + 1):
        _, _, term, trunc, infos = envs.step(rng.uniform(-1, 1, (n, 2)).astype(np.float32))
        done = term | trunc
        if not done.any():
            assert "episode" not in infos
            continue
        mask = infos["_episode"]
        np.testing.assert_array_equal(mask, done)
        ours = infos["final_info"]["episode"]  # the BatchedEnv's info["episode"], per env
        np.testing.assert_array_equal(infos["_final_info"], done)
        np.testing.assert_allclose(infos["episode"]["r"][mask], ours["r"][mask], rtol=1e-5,
                                   atol=1e-5)
        np.testing.assert_array_equal(infos["episode"]["l"][mask], ours["l"][mask])
        checked += int(mask.sum())
    assert checked >= 2 * n  # every env finished at least two episodes (T-step time limit)
    assert len(envs.return_queue) == checked
    envs.close()


def test_autoreset_mode_is_same_step_and_other_modes_are_refused_clearly(short_id):
    import gymnasium
    from gymnasium.vector import AutoresetMode

    envs = gymnasium.make_vec(f"rlkd/{short_id}", num_envs=2, autoreset_mode="SameStep")
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    envs.close()
    with pytest.raises(ValueError, match="SAME_STEP.*vectorization_mode='sync'"):
        gymnasium.make_vec(f"rlkd/{short_id}", num_envs=2,
                           autoreset_mode=AutoresetMode.NEXT_STEP)
    with pytest.raises(ValueError, match="must be an AutoresetMode"):
        gymnasium.make_vec(f"rlkd/{short_id}", num_envs=2, autoreset_mode="sometimes")


def test_documented_wrapper_compatibility_with_same_step(short_id):
    """What GymnasiumVectorEnv's docstring promises: reward / action wrappers work,
    observation wrappers refuse SAME_STEP, and the sync NEXT_STEP route takes them."""
    import gymnasium
    from gymnasium.vector import AutoresetMode
    from gymnasium.wrappers import vector as vw

    make = lambda: gymnasium.make_vec(f"rlkd/{short_id}", num_envs=2)  # noqa: E731
    acts = np.zeros((2, 2), np.float32)
    for wrap in (vw.NormalizeReward, vw.ClipAction, vw.RecordEpisodeStatistics):
        envs = wrap(make())
        envs.reset(seed=0)
        envs.step(acts)
        envs.close()
    for wrap in (vw.NormalizeObservation,
                 lambda e: vw.TransformObservation(e, lambda o: o, e.observation_space)):
        with pytest.raises(ValueError, match="autoreset_mode"):
            wrap(make())
    sync = gymnasium.make_vec(f"rlkd/{short_id}", num_envs=2, vectorization_mode="sync",
                              vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP})
    envs = vw.NormalizeObservation(sync)
    envs.reset(seed=0)
    obs, *_ = envs.step(acts)
    assert np.isfinite(obs).all()
    envs.close()


def test_record_video_on_the_single_env(short_id, tmp_path):
    pytest.importorskip("moviepy", reason="RecordVideo needs moviepy: pip install 'rlkd[video]'")
    import gymnasium

    env = gymnasium.wrappers.RecordVideo(
        gymnasium.make(f"rlkd/{short_id}", render_mode="rgb_array"), str(tmp_path / "videos"),
        episode_trigger=lambda ep: ep == 0, disable_logger=True)
    env.reset(seed=0)
    for _ in range(T):
        *_, term, trunc, _ = env.step(np.zeros(2, np.float32))
        if term or trunc:
            break
    env.reset()  # ends episode 0's clip
    env.close()
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000, videos
