"""MAP-Elites family (rlkd.agents.dcg_map_elites, rlkd.qd.archive, rlkd.qd.run): archive
semantics, similarity, actor folding, PG variation, resume, checkpoint and CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from rlkd.agents.dcg_map_elites import FlatActor, QDAlgorithm, preset, similarity
from rlkd.qd import PolicyShape, get_task
from rlkd.qd.archive import Archive
from rlkd.qd.run import CHECKPOINT, run_qd
from rlkd.train.checkpoint import CheckpointError

#: A tiny, fast configuration (step counts and widths far below the presets').
TINY = dict(num_critic_training_steps=4, num_pg_training_steps=3, critic_hidden=(32, 32),
            policy_hidden=(8, 8), replay_size=20_000, transitions_batch_size=16)


# One torch thread: exact comparisons (batched vs alone, resume) and timings in these tests.
pytestmark = pytest.mark.usefixtures("one_thread")


def test_archive_insert_replace_and_nonfinite():
    ar = Archive(3, (4, 4), fitness_low=-2.0)
    sol = torch.arange(12.0).view(4, 3)
    st = ar.add(sol[:2], torch.tensor([-1.0, -0.5]), torch.tensor([[0.1, 0.1], [0.9, -0.9]]))
    assert st.tolist() == [2, 2] and len(ar) == 2
    # Same cell: a worse one is not added, a better one replaces the elite.
    st = ar.add(sol[2:4], torch.tensor([-1.5, -0.2]), torch.tensor([[0.15, 0.12], [0.12, 0.15]]))
    assert st.tolist() == [0, 1] and len(ar) == 2
    e = ar.elites()
    assert sorted(e["fitness"].tolist()) == pytest.approx([-0.5, -0.2])
    assert any(torch.equal(s, sol[3]) for s in e["solution"])
    # NaN/Inf fitness or descriptor: dropped and counted, never inserted; out of bounds counted.
    st = ar.add(sol[:3], torch.tensor([float("nan"), 0.0, 0.0]),
                torch.tensor([[0.0, 0.0], [float("inf"), 0.0], [1.5, 0.99]]))  # clipped into cell (3, 3)
    assert st.tolist()[:2] == [-1, -1] and st[2] == 2
    assert ar.dropped_nonfinite == 2 and ar.out_of_bounds == 1 and len(ar) == 3
    s = ar.stats()
    assert s["qd_score"] == pytest.approx((-0.5 + 2) + (-0.2 + 2) + (0.0 + 2))
    assert s["coverage"] == pytest.approx(3 / 16)
    # State round trip into a fresh archive: same cells, solutions, fitness, counters.
    other = Archive(3, (4, 4), fitness_low=-2.0)
    other.load_state_dict(ar.state_dict())
    for k, v in ar.elites().items():
        assert other.elites()[k].equal(v), k
    assert other.dropped_nonfinite == 2 and other.out_of_bounds == 1
    with pytest.raises(ValueError, match="cells"):
        Archive(3, (8, 8), fitness_low=-2.0).load_state_dict(ar.state_dict())


def test_similarity_is_one_at_equal_descriptors_and_decays_with_lengthscale():
    d = torch.tensor([[0.2, -0.3], [0.0, 0.0]])
    assert torch.allclose(similarity(d, d, 0.1), torch.ones(2))
    far = torch.tensor([[0.3, -0.3], [0.0, 0.0]])
    s_short, s_long = similarity(d[:1], far[:1], 0.05), similarity(d[:1], far[:1], 0.5)
    assert float(s_short) == pytest.approx(torch.exp(torch.tensor(-0.1 / 0.05)).item(), rel=1e-5)
    assert s_short < s_long < 1


def test_folded_bias_policy_equals_conditioned_actor():
    shape = PolicyShape(6, (5, 4), 2)
    actor = FlatActor(shape, 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        actor.flat.add_(0.1 * torch.randn_like(actor.flat))  # non-zero biases
    from rlkd.qd import population_forward

    obs, desc = torch.randn(7, 6), torch.rand(7, 2) * 2 - 1
    folded = actor.fold(desc)
    assert folded.shape == (7, shape.num_params)
    torch.testing.assert_close(population_forward(shape, folded, obs), actor(obs, desc),
                               rtol=0, atol=1e-6)


def test_one_pg_variation_raises_q_on_a_toy_critic():
    alg = QDAlgorithm(get_task("AGVOmni-v0"), preset("dcg-me", batch_size=8, **TINY), seed=0)
    # Fill the replay with observations; the critic is whatever its random init is.
    obs = torch.rand(500, alg.shape.obs_dim)
    zeros = torch.zeros(500)
    alg.replay.insert({"obs": obs, "next_obs": obs, "actions": torch.zeros(500, 2),
                       "rewards": zeros, "dones": zeros, "desc": torch.zeros(500, 2),
                       "desc_prime": torch.zeros(500, 2)})
    alg.cfg.num_pg_training_steps = 30
    gen = torch.Generator().manual_seed(1)
    parents = alg.shape.init(4, gen)
    desc = torch.rand(4, 2) * 2 - 1
    from rlkd.qd import population_forward

    def q(theta):
        s = obs[None].expand(4, -1, -1)
        a = population_forward(alg.shape, theta, s)
        x = torch.cat([s, a, desc[:, None].expand(4, 500, 2)], dim=-1)
        return alg.critic.q1(x).mean(dim=(1, 2))

    with torch.no_grad():
        before = q(parents)
    after_params = alg._pg_variation(parents, desc)
    with torch.no_grad():
        after = q(after_params)
    assert (after > before).all(), (before, after)
    assert not after_params.equal(parents)


def _tiny_run(tmp_path, name, evaluations, algo="dcg-me", resume=False, **extra):
    # Distillation and videos are tested in test_qd_distill.py.
    kw = dict(overrides={**TINY, **extra}, progress=False, checkpoint_every=1, distill="none",
              videos=False)
    if resume:
        return run_qd(resume=tmp_path / name, evaluations=evaluations, progress=False,
                      checkpoint_every=1, distill="none", videos=False)
    return run_qd("AGVOmni-v0", algo, evaluations, 16, 3, tmp_path / name, **kw)


def test_resume_2_plus_2_iterations_equals_4(tmp_path):
    full = _tiny_run(tmp_path, "full", 64)
    _tiny_run(tmp_path, "part", 32)
    part = _tiny_run(tmp_path, "part", 64, resume=True)
    assert full["iterations"] == part["iterations"] == 4
    assert part["qd_score"] == full["qd_score"] and part["coverage"] == full["coverage"]
    from rlkd.train.checkpoint import load_checkpoint

    a = load_checkpoint(tmp_path / "full" / CHECKPOINT)["state"]
    b = load_checkpoint(tmp_path / "part" / CHECKPOINT)["state"]
    for k, v in a["archive"]["elites"].items():
        assert b["archive"]["elites"][k].equal(v), k
    for k, v in a["critic"].items():
        assert b["critic"][k].equal(v), k
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["iteration"] for ln in lines] == [0, 1, 2, 3]
    assert (tmp_path / "part" / "heatmap.png").stat().st_size > 1000
    m = json.loads(lines[-1])
    for key in ("qd/qd_score", "qd/coverage", "qd/max_fitness", "qd/evals_per_s",
                "qd/added_ga", "qd/added_pg", "qd/added_ai"):
        assert key in m, key


def test_robust_fitness_is_the_worst_of_clean_and_noisy_rollouts():
    """robust_noise > 0: every stored elite's fitness is at most its clean re-evaluation
    (the minimum over the clean and the noisy rollouts), some strictly below it, and the
    noisy evaluations are counted apart from the offspring."""
    from rlkd.qd import evaluate_population

    task = get_task("AGVOmni-v0")
    cfg = preset("me", robust_noise=0.5, robust_samples=2, batch_size=32, **TINY)
    alg = QDAlgorithm(task, cfg, seed=1)
    for _ in range(2):
        m = alg.step()
    assert m["qd/evaluations"] == 64 and m["qd/robust_evaluations"] == 128
    e = alg.archive.state_dict()["elites"]
    clean = evaluate_population(task, task.make_env(len(e["fitness"])), alg.shape,
                                e["solution"], keep_transitions=False).fitness.double()
    stored = e["fitness"].double()
    assert (stored <= clean + 1e-9).all()
    assert (stored < clean - 1e-6).any()
    with pytest.raises(ValueError, match="robust_samples"):
        preset("me", robust_noise=0.1, robust_samples=0)


def test_robust_resume_2_plus_2_equals_4(tmp_path):
    full = _tiny_run(tmp_path, "full", 64, algo="me", robust_noise=0.3)
    _tiny_run(tmp_path, "part", 32, algo="me", robust_noise=0.3)
    part = _tiny_run(tmp_path, "part", 64, algo="me", resume=True)
    assert part["qd_score"] == full["qd_score"] and part["coverage"] == full["coverage"]


def test_truncated_archive_is_an_error_naming_the_file(tmp_path):
    _tiny_run(tmp_path, "run", 16, algo="me")
    path = tmp_path / "run" / CHECKPOINT
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match=str(path)):
        run_qd(resume=tmp_path / "run", progress=False)


def test_resume_refuses_another_task_or_algo(tmp_path):
    _tiny_run(tmp_path, "run", 16, algo="me")
    with pytest.raises(ValueError, match="AGVOmni-v0 / me"):
        run_qd("AGVStyle-v0", resume=tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="not dcg-me"):
        run_qd(algo="dcg-me", resume=tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="already holds"):
        _tiny_run(tmp_path, "run", 16, algo="me")


def test_unknown_config_field_is_named():
    with pytest.raises(KeyError, match="lenghtscale"):
        preset("dcg-me", lenghtscale=0.1)
    with pytest.raises(KeyError, match="me, pga-me, dcg-me"):
        preset("map-elites")


@pytest.mark.parametrize("argv, expected", [
    (["AGVFoo-v0", "--out", "X"], "error: unknown QD task 'AGVFoo-v0'"),
    (["AGVOmni-v0", "--out", "X", "--qd", "bogus=1"], "error: unknown QD config fields"),
    (["AGVOmni-v0", "--algo", "xx", "--out", "X"], "error: unknown QD algorithm 'xx'"),
])
def test_cli_user_mistakes_are_one_line(tmp_path, argv, expected):
    argv = [a.replace("X", str(tmp_path / "r")) for a in argv]
    p = subprocess.run([sys.executable, "-m", "rlkd", "qd", *argv], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and expected in p.stderr
    assert "Traceback" not in p.stderr
