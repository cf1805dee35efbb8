"""Sim-to-real evaluation: suites, batched paired evaluation, statistics, log replay, reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import rlkd
from rlkd.policies import make_policy
from rlkd.sim2real import Condition, Suite, evaluate_suite, load_suite, parse_condition
from rlkd.sim2real.replay import LogError, load_log, record_log, replay_log, save_log
from rlkd.sim2real.report import summarize, write_report
from rlkd.sim2real.stats import bootstrap_gap, bootstrap_mean, dtw

AGV = "AGVWarehouse-v0"


def scripted(env):
    return make_policy("scripted", env)


# ----------------------------------------------------------------------------- suites
def test_builtin_suites_start_with_nominal_and_use_known_kinds():
    for name in ("default", "dynamics", "sensing", "latency"):
        s = load_suite(name)
        assert s.conditions[0].name == "nominal" and len(s.conditions) > 3


def test_condition_ops_write_params():
    env = rlkd.make(AGV, num_envs=4, seed=0, slip=0.1)
    ids = torch.tensor([1, 3])
    Condition("c", {"mass": 2.0, "friction": 0.5, "action_latency": 2.0,
                    "motor_strength": 0.5}).apply(env, ids)
    p = env.params
    assert torch.allclose(p["lin_acc"], torch.tensor([2.0, 0.5, 2.0, 0.5]))  # /2 then *0.5
    assert p["action_latency"].tolist() == [0, 2, 0, 2]
    assert torch.allclose(p["slip"], torch.tensor([0.1, 0.55, 0.1, 0.55]))  # 1 - 0.9 * 0.5
    assert torch.allclose(p["max_lin_vel"], torch.tensor([1.0, 0.5, 1.0, 0.5]))
    Condition("raw", params={"slip": 0.3}).apply(env, torch.tensor([0]))
    assert p["slip"][0].item() == pytest.approx(0.3)


def test_condition_errors_and_applicability():
    with pytest.raises(ValueError, match="unknown perturbation kind"):
        Condition("x", {"gravity": 2.0})
    env = rlkd.make(AGV, num_envs=1)
    assert "pd_gains" in Condition("pd", {"pd_gains": 2.0}).applicable(env)
    assert "no param" in Condition("p", params={"nope": 1.0}).applicable(env)
    with pytest.raises(ValueError, match="does not apply"):
        Condition("pd", {"pd_gains": 2.0}).apply(env, torch.tensor([0]))


def test_parse_condition_and_yaml_suite(tmp_path):
    c = parse_condition("heavy:mass=1.5,action_latency=2,param.slip=0.2")
    assert c.perturb == {"mass": 1.5, "action_latency": 2.0} and c.params == {"slip": 0.2}
    for bad in ("nocolon", "x:mass", "x:mass=abc"):
        with pytest.raises(ValueError):
            parse_condition(bad)
    f = tmp_path / "s.yaml"
    f.write_text("name: mine\nconditions:\n  - {name: heavy, perturb: {mass: 2}}\n")
    s = load_suite(f)
    assert [c.name for c in s.conditions] == ["nominal", "heavy"]  # nominal is added
    f.write_text("conditions:\n  - {perturb: {mass: 2}}\n")
    with pytest.raises(ValueError, match=r"conditions\[0\] needs a 'name'"):
        load_suite(f)
    f.write_text("conditions:\n  - {name: a, perturbs: {mass: 2}}\n")
    with pytest.raises(ValueError, match="unknown field"):
        load_suite(f)
    f.write_text("conditions: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_suite(f)
    with pytest.raises(ValueError, match="unknown suite"):
        load_suite("no_such_suite")


# ----------------------------------------------------------------------------- statistics
def test_bootstrap_mean_and_gap():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, 400)
    s = bootstrap_mean(x)
    assert s["lo"] < s["mean"] < s["hi"] and s["lo"] < 1.0 < s["hi"] and s["n"] == 400
    assert math.isnan(bootstrap_mean(np.array([1.0]))["lo"])
    g = bootstrap_gap(x, x, paired=True)
    assert g["gap"] == 0 and g["lo"] == 0 and g["hi"] == 0 and not g["significant"]
    # A constant shift under large between-episode variance: the paired CI is far tighter.
    base = rng.normal(0.0, 5.0, 200)
    paired = bootstrap_gap(base + 0.5, base, paired=True)
    unpaired = bootstrap_gap(base + 0.5, base, paired=False)
    assert paired["significant"] and not unpaired["significant"]
    assert (paired["hi"] - paired["lo"]) < 0.1 * (unpaired["hi"] - unpaired["lo"])


def test_dtw():
    t = np.linspace(0, 2 * np.pi, 60)
    a = np.stack([t, np.sin(t)], -1)
    assert dtw(a, a)["mean"] == 0.0
    # The same path, delayed by 5 samples: DTW aligns it, lockstep distance does not.
    b = np.concatenate([np.repeat(a[:1], 5, 0), a[:-5]])
    lockstep = np.linalg.norm(a - b, axis=-1).mean()
    assert dtw(a, b)["mean"] < 0.2 * lockstep
    # Hand-checked: cost matrix |a_i - b_j| for a = [0, 1, 2], b = [0, 2].
    r = dtw(np.array([[0.0], [1.0], [2.0]]), np.array([[0.0], [2.0]]))
    assert r["total"] == pytest.approx(1.0) and r["path_length"] == 3
    with pytest.raises(ValueError):
        dtw(np.zeros((0, 2)), a)


# ----------------------------------------------------------------------------- evaluation
@pytest.fixture(scope="module")
def scripted_result():
    suite = Suite("t", "test", [Condition("nominal"), Condition("same", params={"slip": 0.0}),
                                Condition("latency_5", {"action_latency": 5}),
                                Condition("motor_x0.5", {"motor_strength": 0.5}),
                                Condition("pd", {"pd_gains": 2.0})])
    return evaluate_suite(scripted, AGV, suite, episodes=16, seed=3)


def test_suite_is_paired_and_skips_inapplicable(scripted_result):
    r = scripted_result
    assert r.paired and list(r.skipped) == ["pd"]
    assert [c.name for c in r.conditions] == ["nominal", "same", "latency_5", "motor_x0.5"]
    # Common random numbers: a condition equal to nominal reproduces every episode exactly.
    for k, v in r.per_condition["nominal"].items():
        np.testing.assert_array_equal(v, r.per_condition["same"][k], err_msg=k)
    assert r.timings["suite_envs"] == 4 * 16


def test_larger_perturbation_changes_results(scripted_result):
    """The metrics are sensitive: a strong perturbation differs measurably from nominal."""
    summary = summarize(scripted_result, resamples=500)
    by = {c["name"]: c for c in summary["conditions"]}
    assert by["motor_x0.5"]["gap"]["length"]["significant"]
    assert by["motor_x0.5"]["gap"]["length"]["gap"] > 0  # half the speed: longer episodes
    assert by["motor_x0.5"]["gap"]["speed_mean"]["gap"] < -0.1
    assert by["latency_5"]["gap"]["clearance_min"]["gap"] < 0  # late commands: closer calls
    assert not by["same"]["gap"]["length"]["significant"]


def test_evaluation_is_deterministic(scripted_result):
    again = evaluate_suite(scripted, AGV, scripted_result.suite, episodes=16, seed=3)
    for name in scripted_result.per_condition:
        for k, v in scripted_result.per_condition[name].items():
            np.testing.assert_array_equal(v, again.per_condition[name][k])


def test_report_files(tmp_path, scripted_result):
    paths = write_report(tmp_path / "rep", scripted_result, {"policy": "scripted", "seed": 3},
                         resamples=200)
    assert {"report.json", "report.md", "conditions.png"} <= set(paths)
    data = json.loads((tmp_path / "rep" / "report.json").read_text())  # strict JSON
    assert [c["name"] for c in data["conditions"]][:2] == ["nominal", "same"]
    assert data["skipped"] == {"pd": data["skipped"]["pd"]}
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| latency_5 |" in md and "Not applicable" in md
    assert (tmp_path / "rep" / "conditions.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in (tmp_path / "rep").iterdir() if p.name.startswith(".")]  # no temp files


# ----------------------------------------------------------------------------- logs
@pytest.fixture(scope="module")
def sim_log(tmp_path_factory):
    env = rlkd.make(AGV, num_envs=8, seed=1)
    log = record_log(env, scripted(env), seed=1, env_index=3)
    path = save_log(tmp_path_factory.mktemp("log") / "log.npz", log)
    return path


def test_log_round_trip_and_exact_replay(sim_log):
    log = load_log(sim_log)
    assert log.steps > 10 and log.states.shape == (log.steps + 1, 7)
    assert log.env_overrides["num_layouts"] == 1
    conds = [Condition("nominal"), Condition("motor_x0.6", {"motor_strength": 0.6})]
    r = replay_log(log, AGV, conds, policy_factory=scripted)
    # A log recorded in the fast sim replays in it exactly; a weaker motor drifts away.
    assert r["open_loop"]["nominal"]["final_pos_err"] < 1e-4
    assert r["open_loop"]["motor_x0.6"]["mean_pos_err"] > 0.05
    assert r["best_condition"] == "nominal"
    # The log's seed/stream rebuild its moving obstacles: nominal runs the whole log, and the
    # state-forced sim observes exactly what was logged.
    assert log.seed == 1 and log.stream == 3
    assert r["open_loop"]["nominal"]["ended_at"] is None
    cl = r["closed_loop"]
    assert cl["action_diff_mean"] < 1e-5 and cl["obs_diff_mean"] < 1e-5 and not cl["ended_early"]


def _corrupt(src, dst, **changes):
    with np.load(src) as z:
        data = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    np.savez(dst, **data)
    return dst


def test_malformed_logs_name_the_field(sim_log, tmp_path):
    log = load_log(sim_log)
    T = log.steps
    bad_ts = log.timestamps.copy()
    bad_ts[5] = bad_ts[4]
    nan_states = log.states.copy()
    nan_states[7, 2] = np.nan
    cases = [
        (dict(actions=None), "missing field 'actions'"),
        (dict(states=log.states[:T]), "field 'states' has"),
        (dict(observations=log.observations[:-3]), "field 'observations' has"),
        (dict(timestamps=bad_ts), "not strictly increasing"),
        (dict(states=nan_states), "'states' has NaN/Inf at row 7"),
        (dict(state_names=np.array(["x", "y"])), "'state_names' names 2"),
        (dict(actions=log.actions[:, 0]), "field 'actions' has shape"),
        (dict(stream=np.array([1.5])), "field 'stream' must be one integer"),
    ]
    for i, (change, msg) in enumerate(cases):
        path = _corrupt(sim_log, tmp_path / f"bad{i}.npz", **change)
        with pytest.raises(LogError, match=msg) as e:
            load_log(path)
        assert f"bad{i}.npz" in str(e.value)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(LogError, match="not a readable"):
        load_log(tmp_path / "junk.npz")
    with pytest.raises(LogError, match="not found"):
        load_log(tmp_path / "missing.npz")
    fast = _corrupt(sim_log, tmp_path / "fast.npz", timestamps=log.timestamps / 2)
    with pytest.raises(LogError, match="control period"):
        replay_log(load_log(fast), AGV, [Condition("nominal")])
    renamed = _corrupt(sim_log, tmp_path / "renamed.npz",
                       state_names=np.array(["x", "y", "yaw", "v", "w", "gx", "gy"]))
    with pytest.raises(LogError, match="state_names"):
        replay_log(load_log(renamed), AGV, [Condition("nominal")])


def test_set_state_round_trip():
    env = rlkd.make(AGV, num_envs=4, seed=0)
    env.reset(seed=0)
    st = env.get_state()
    other = rlkd.make(AGV, num_envs=4, seed=5)
    other.reset(seed=5)
    other.set_state(torch.arange(4), st)
    torch.testing.assert_close(other.get_state(), st)
    with pytest.raises(ValueError, match="expected"):
        other.set_state(torch.arange(4), st[:, :3])


# ----------------------------------------------------------------------------- command line
def test_cli_eval_trained_run_with_twin_and_recorded_log(tmp_path, capsys):
    """`rlkd eval sim2real RUN`: suite + PyBullet twin + a log recorded on the twin, replayed."""
    pytest.importorskip("pybullet")
    from rlkd.cli import main

    run = tmp_path / "run"
    main(["train", AGV, "--agent", "ppo", "--num-envs", "8", "--steps", "256", "--out", str(run),
          "--ppo", "num_steps=16", "num_epochs=1", "--set", "num_obstacles=1",
          "max_episode_steps=60", "--no-video"])
    rep, log = tmp_path / "report", tmp_path / "twin_log.npz"
    main(["eval", "sim2real", str(run), "--suite", "latency", "--episodes", "8",
          "--twin-episodes", "8", "--record-log", str(log), "--out", str(rep),
          "--resamples", "200"])
    data = json.loads((rep / "report.json").read_text())
    assert data["env_id"] == AGV and data["meta"]["policy"].startswith("ppo")
    assert [c["name"] for c in data["conditions"]] == ["nominal"] + [f"latency_{k}" for k in range(1, 6)]
    assert data["meta"]["env_overrides"]["num_obstacles"] == 1  # the run's own config
    tw = data["twin"]
    assert tw["env_id"] == "AGVWarehouseBullet-v0" and tw["episodes"] == 8 and tw["paired"]
    assert len(tw["dtw_m"]["per_episode"]) == 8 and tw["dtw_m"]["mean"] >= 0
    rp = data["replay"]
    assert rp["log"] == str(log) and rp["steps"] == load_log(log).steps
    assert set(rp["open_loop"]) == {c["name"] for c in data["conditions"]}
    assert rp["closed_loop"]["action_diff_mean"] < 1e-4  # the log was recorded by this policy
    for name in ("report.md", "conditions.png", "twin.png", "divergence.png"):
        assert (rep / name).stat().st_size > 0, name
    assert "Twin engine" in (rep / "report.md").read_text()


def test_cli_eval_env_id_with_stand_in_policy_and_extra_condition(tmp_path):
    from rlkd.cli import main

    rep = tmp_path / "rep"
    main(["eval", "sim2real", AGV, "--policy", "random", "--suite", "latency", "--episodes", "8",
          "--no-twin", "--condition", "heavy:mass=3,param.slip=0.2", "--out", str(rep),
          "--resamples", "100", "--set", "max_episode_steps=40"])
    data = json.loads((rep / "report.json").read_text())
    heavy = [c for c in data["conditions"] if c["name"] == "heavy"][0]
    assert heavy["perturb"] == {"mass": 3.0} and heavy["params"] == {"slip": 0.2}
    assert "twin" not in data and "replay" not in data


def test_cli_eval_errors_are_one_line(tmp_path, sim_log):
    from rlkd.cli import main

    with pytest.raises(SystemExit, match="unknown suite 'nope'"):
        main(["eval", "sim2real", AGV, "--suite", "nope", "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="unknown perturbation kind"):
        main(["eval", "sim2real", AGV, "--condition", "x:gravity=2", "--out", str(tmp_path / "r")])
    bad = _corrupt(sim_log, tmp_path / "bad.npz", observations=None)
    with pytest.raises(SystemExit, match="missing field 'observations'"):
        main(["eval", "sim2real", AGV, "--episodes", "8", "--no-twin", "--real-log", str(bad),
              "--set", "max_episode_steps=20", "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_one_at_a_time_reference_matches_the_batch():
    """The unbatched reference (the benchmark's peer) runs the same episodes as the batch: with
    one shared layout, episode e under each condition is identical either way."""
    from rlkd.sim2real import evaluate_one_at_a_time

    suite = Suite("t", "", [Condition("nominal"), Condition("slow", {"motor_strength": 0.6})])
    over = {"num_layouts": 1, "max_episode_steps": 80}
    batched = evaluate_suite(scripted, AGV, suite, episodes=3, seed=2, env_overrides=over)
    seq = evaluate_one_at_a_time(scripted, AGV, batched.conditions, 3, seed=2, env_overrides=over)
    for name in ("nominal", "slow"):
        for k in ("return", "length", "success", "action_jerk", "clearance_min"):
            np.testing.assert_allclose(seq[name][k], batched.per_condition[name][k], rtol=1e-5,
                                       err_msg=f"{name}/{k}")


def test_twin_episodes_start_where_their_sim_slots_start():
    pytest.importorskip("pybullet")
    suite = Suite("t", "", [Condition("nominal"), Condition("late", {"action_latency": 2})])
    r = evaluate_suite(scripted, AGV, suite, episodes=16, seed=4, twin=True, twin_episodes=8,
                       env_overrides={"max_episode_steps": 30})
    assert r.twin_paired and r.twin_slots.tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    np.testing.assert_allclose(r.twin.traces[0], r.nominal_traces.traces[0], atol=1e-5)
    summary = summarize(r, resamples=100)
    assert summary["twin"]["paired"] and len(summary["twin"]["dtw_m"]["per_episode"]) == 8


def test_each_env_reports_its_first_episode_only():
    from rlkd.sim2real import run_first_episodes

    kw = dict(num_envs=32, seed=0, max_episode_steps=60)
    env = rlkd.make(AGV, **kw)
    eps = run_first_episodes(env, make_policy("random", env, 0), seed=0)
    # Independent bookkeeping on a twin run: the step each env's first and second episodes end.
    ref = rlkd.make(AGV, **kw)
    pol = make_policy("random", ref, 0)
    ref.reset(seed=0)
    ends = [[] for _ in range(32)]
    for t in range(eps.steps):
        _, _, term, trunc, _ = ref.step(pol(None))
        for i in (term | trunc).nonzero().squeeze(-1).tolist():
            ends[i].append(t + 1)
    assert any(len(e) >= 2 for e in ends)  # later episodes did end inside the window
    first = np.array([e[0] for e in ends])
    np.testing.assert_array_equal(eps.values["length"], first)


def test_humanoid_report_splits_nominal_episodes_per_clip(tmp_path):
    """The task's episode groups (the humanoid's clips) give a per-clip table whose rows are
    the nominal episodes of that clip."""
    from rlkd.policies import load_policy

    suite = Suite("t", "test", [Condition("nominal"), Condition("obs", {"obs_noise": 0.1})])
    expert = load_policy("expert:humanoid-general")
    factory = lambda env: expert  # noqa: E731
    r = evaluate_suite(factory, "HumanoidMotion-v0", suite, episodes=6, seed=1,
                       env_overrides={"motion": "walk@1.0,squat", "action_mode": "residual",
                                      "max_episode_steps": 30})
    assert r.group_names == ("walk@1.0", "squat")
    assert r.nominal_groups.shape == (6,) and set(r.nominal_groups) <= {0, 1}
    summary = summarize(r, resamples=100)
    rows = {g["name"]: g for g in summary["per_group"]}
    assert sum(g["episodes"] for g in rows.values()) == 6
    nominal = r.per_condition["nominal"]
    for gi, name in enumerate(r.group_names):
        if name in rows:
            want = nominal["mpjpe_mean"][r.nominal_groups == gi].mean()
            assert rows[name]["metrics"]["mpjpe_mean"]["mean"] == pytest.approx(want)
    write_report(tmp_path / "rep", r, {"policy": "general"}, resamples=100)
    assert "| walk@1.0 |" in (tmp_path / "rep" / "report.md").read_text()


def test_cli_prints_the_per_clip_table(tmp_path, capsys):
    from rlkd.cli import main

    main(["eval", "sim2real", "expert:humanoid-general", "--suite", "nominal", "--episodes", "4",
          "--no-twin", "--set", "motion=walk@1.0,squat", "max_episode_steps=20",
          "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    groups = json.loads((tmp_path / "r" / "report.json").read_text())["per_group"]
    rows = [line for line in out.splitlines() if "walk@1.0" in line or "squat" in line]
    # One row per clip drawn, with its success and fall rates.
    assert len(rows) == len(groups) >= 1 and all(r.count("%") == 2 for r in rows)
    assert sum(g["episodes"] for g in groups) == 4
