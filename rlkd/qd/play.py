"""Watching a QD run: ``videos/elites.mp4`` (the best elite and 3 far-apart ones, tiled),
``videos/distilled.mp4`` (the distilled policy commanded with those elites' descriptors) and
``rlkd play DIR --descriptor x,y`` (:func:`qd_policy_source`, used by
:func:`rlkd.policies.policy_source`).

A QD evaluation starts every env from the task's fixed start (:meth:`QDTask.reset`), which an
ordinary ``env.reset`` does not do: :class:`FixedStartEnv` wraps the env so that ``reset`` and
every autoreset put the robot there, and it tracks the task's fitness and descriptor of each
env's first episode (:meth:`FixedStartEnv.summary`), the numbers the archive holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlkd.qd.population import PolicyShape, population_forward


def is_qd_run(target: str | Path) -> bool:
    """True for a directory written by ``rlkd qd`` (it holds ``archive.pt``)."""
    from rlkd.qd.run import CHECKPOINT

    p = Path(target)
    return p.is_dir() and (p / CHECKPOINT).is_file()


class FixedStartEnv:
    """``env`` (built with the task's env config) that always starts at the task's start.

    ``reset`` is the task's reset (its seed, common random numbers); envs that end are put back
    at the start. Everything else is the wrapped env's (``render``, ``num_envs``, ...).
    """

    def __init__(self, task, env):
        self.task, self.env = task, env
        env.rng.set_streams(torch.zeros(env.num_envs, dtype=torch.int64))
        self._stats: dict | None = None

    def __getattr__(self, name):
        return getattr(self.env, name)

    def _start(self, n: int) -> torch.Tensor:
        return torch.tensor([*self.task.start, 0.0, 0.0, *self.task.goal], dtype=torch.float32,
                            device=self.env.device).expand(n, -1)

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.task.reset(self.env)
        n, dev = self.env.num_envs, self.env.device
        self._stats = self.task.init_stats(self.env)
        self._alive = torch.ones(n, dtype=torch.bool, device=dev)
        self._length = torch.zeros(n, dtype=torch.int64, device=dev)
        return self.env.get_observations(), {}

    def step(self, actions: torch.Tensor):
        obs, rew, term, trunc, info = self.env.step(actions)
        after = obs
        if "final_obs" in info:
            after = {k: v.clone() for k, v in obs.items()}
            for k, v in info["final_obs"].items():
                after[k][info["final_mask"]] = v
        if self._stats is not None:
            _, self._stats = self.task.step_stats(self.env, self._stats, actions, after, term,
                                                  info, self._alive)
            self._length += self._alive.long()
            self._alive = self._alive & ~(term | trunc)
        done = term | trunc
        if bool(done.any()):
            ids = done.nonzero()[:, 0]
            self.env.set_state(ids, self._start(ids.numel()))
            obs = self.env.get_observations()
        return obs, rew, term, trunc, info

    def summary(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(fitness (N,), normalized descriptor (N, n))`` of each env's first episode (so far,
        if it has not ended)."""
        if self._stats is None:
            raise RuntimeError("summary() before reset()")
        fit, desc = self.task.finish_stats(self.env, self._stats, self._length)
        return fit, self.task.normalize(desc)

    @property
    def first_episode_done(self) -> bool:
        return self._stats is not None and not bool(self._alive.any())


def parse_descriptor(text: str | None, task) -> torch.Tensor | None:
    """``"x,y"`` -> ``(n_desc,)`` normalized descriptor; ``ValueError`` (one line) for text that
    is not numbers, has the wrong length or leaves [-1, 1]."""
    if text is None:
        return None
    parts = [p for p in str(text).replace(" ", ",").split(",") if p]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--descriptor {text!r} is not comma-separated numbers (e.g. "
                         f"--descriptor=0.5,-0.25)") from None
    names = ", ".join(task.descriptor_names)
    if len(vals) != task.descriptor_dim:
        raise ValueError(f"--descriptor has {len(vals)} value(s); {task.id} has "
                         f"{task.descriptor_dim} descriptors ({names}), normalized to [-1, 1]")
    bad = [v for v in vals if not (-1.0 <= v <= 1.0)]
    if bad:
        raise ValueError(f"--descriptor {text!r}: {bad[0]:g} is outside [-1, 1] (descriptors "
                         f"{names} are normalized: -1 = {list(task.descriptor_low)}, "
                         f"+1 = {list(task.descriptor_high)})")
    return torch.tensor(vals, dtype=torch.float32)


def _describe(task, desc: torch.Tensor) -> str:
    raw = task.denormalize(desc.float().cpu())
    return ", ".join(f"{n} {v:.2f}" for n, v in zip(task.descriptor_names, raw.tolist()))


class QDPolicyFactory:
    """``rlkd play``'s policy factory for a QD run: ``factory(env)`` -> obs -> actions of the
    distilled pi(., d) at the fixed ``descriptor``; :meth:`wrap_env` puts the env on the task's
    fixed start; :meth:`report` tells where the first episode went."""

    def __init__(self, task, policy, descriptor: torch.Tensor, cells: tuple[int, ...],
                 device="cpu"):
        self.task, self.policy, self.descriptor, self.cells = task, policy, descriptor, cells
        self.shape = policy.actor.policy
        self.genotype = policy.genotypes(descriptor[None]).to(device)

    def __call__(self, env):
        g = self.genotype.expand(env.num_envs, -1)
        return lambda obs: population_forward(self.shape, g, obs["policy"])

    def wrap_env(self, env) -> FixedStartEnv:
        return FixedStartEnv(self.task, env)

    def report(self, env: FixedStartEnv) -> str:
        fit, desc = env.summary()
        err = ((desc[0].cpu() - self.descriptor) / (2.0 / torch.tensor(self.cells))).norm()
        return (f"commanded {_describe(self.task, self.descriptor)}; reached "
                f"{_describe(self.task, desc[0])} ({float(err):.2f} cell widths), fitness "
                f"{float(fit[0]):+.4f}")


def qd_policy_source(target: str | Path, descriptor: str | None, device="cpu"):
    """:func:`rlkd.policies.policy_source` for a QD run directory: ``(env_id, overrides,
    factory, label)`` with ``factory`` a :class:`QDPolicyFactory`."""
    from rlkd.qd.distill import load_distilled
    from rlkd.qd.run import CHECKPOINT
    from rlkd.qd.tasks import get_task
    from rlkd.train.checkpoint import load_checkpoint

    ck = load_checkpoint(Path(target) / CHECKPOINT, required=("args", "state"))
    task = get_task(ck["args"]["task"])
    if descriptor is None:
        raise ValueError(f"{target} is a QD run: give --descriptor with {task.descriptor_dim} "
                         f"numbers in [-1, 1] ({', '.join(task.descriptor_names)}), e.g. "
                         f"`rlkd play {target} --descriptor=0.5,-0.5`")
    d = parse_descriptor(descriptor, task)
    policy = load_distilled(target, device=device)
    cells = tuple(int(c) for c in ck["state"]["archive"]["cells"])
    factory = QDPolicyFactory(task, policy, d, cells, device)
    overrides = {**task.env_overrides, "max_episode_steps": task.episode_steps,
                 **dict(ck["args"].get("env_overrides") or {})}
    label = f"distilled {policy.method} ({Path(target).name}), d = ({descriptor})"
    return task.env_id, overrides, factory, label


# ---------------------------------------------------------------------- videos
def far_apart(desc: torch.Tensor, fitness: torch.Tensor, k: int = 4) -> list[int]:
    """Indices of the best (highest fitness) row and ``k - 1`` more chosen greedily, each the
    farthest (in descriptor space) from those already chosen."""
    chosen = [int(torch.argmax(fitness))]
    d = desc.double()
    for _ in range(min(k, len(d)) - 1):
        dist = torch.cdist(d, d[chosen]).min(dim=1).values
        dist[chosen] = -1.0
        chosen.append(int(torch.argmax(dist)))
    return chosen


def rollout_video(task, env_overrides: dict, shape: PolicyShape, genotypes: torch.Tensor,
                  captions: list[str], path: Path, width: int = 240, device="cpu") -> dict:
    """Roll ``genotypes (n, D)`` from the fixed start, one env each, for the task's episode;
    render each env (its last frame held once its first episode ended), tile, caption, write.

    Returns ``{"fitness": (n,), "descriptor": (n, k)}`` (normalized) of the rollouts."""
    from rlkd.render import overlay_text, tile_frames, write_video

    n = genotypes.shape[0]
    env = FixedStartEnv(task, task.make_env(n, device=device, **env_overrides))
    obs, _ = env.reset()
    genotypes = genotypes.to(env.device)
    last: list[np.ndarray | None] = [None] * n
    frames = []
    with torch.no_grad():
        for t in range(task.episode_steps):
            alive = env._alive.clone()
            obs, *_ = env.step(population_forward(shape, genotypes, obs["policy"]))
            tiles = []
            for i in range(n):
                if bool(alive[i]) or last[i] is None:
                    f = env.render(env_ids=[i], width=width, show_lidar=False)
                    last[i] = overlay_text(f, f"{captions[i]}\nstep {t + 1}", xy=(4, 4))
                tiles.append(last[i])
            frames.append(tile_frames(tiles, cols=2 if n > 1 else 1))
            if env.first_episode_done:
                break
    fit, desc = env.summary()
    write_video(path, frames, fps=int(env.metadata.get("render_fps", 10)))
    return {"fitness": fit.cpu(), "descriptor": desc.cpu()}


def elite_videos(task, state: dict, env_overrides: dict, run_dir: Path,
                 policy=None, width: int = 240, device="cpu") -> list[Path]:
    """``videos/elites.mp4`` (best + 3 far-apart elites) and, given the distilled ``policy``,
    ``videos/distilled.mp4`` (it commanded with the same elites' descriptors)."""
    ps = state["policy_shape"]
    shape = PolicyShape(int(ps["obs_dim"]), tuple(ps["hidden"]), int(ps["act_dim"]),
                        ps.get("activation", "relu"))
    e = state["archive"]["elites"]
    if int(e["index"].numel()) == 0:
        return []
    pick = far_apart(e["descriptor"], e["fitness"])
    desc = e["descriptor"][pick].float()
    caps = [("best" if j == 0 else "elite") + f" f={float(e['fitness'][i]):+.3f}\n"
            + _describe(task, desc[j]) for j, i in enumerate(pick)]
    out = [Path(run_dir) / "videos" / "elites.mp4"]
    rollout_video(task, env_overrides, shape, e["solution"][pick], caps, out[0], width, device)
    if policy is not None:
        caps = [f"pi {policy.method}, target\n" + _describe(task, d) for d in desc]
        out.append(Path(run_dir) / "videos" / "distilled.mp4")
        rollout_video(task, env_overrides, policy.actor.policy, policy.genotypes(desc), caps,
                      out[1], width, device)
    return out
