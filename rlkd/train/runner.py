"""On-policy runner: rollouts -> PPO update -> logs -> checkpoints, resumable and data-parallel.

    cfg = TrainConfig(env="AGVWarehouse-v0", agent="ppo-rdd", num_envs=256, steps=5_000_000)
    OnPolicyRunner(cfg).learn()

A run directory holds ``config.yaml`` (everything needed to rebuild env and agent),
``checkpoints/model_<iteration>.pt`` every ``checkpoint_every`` iterations plus ``last.pt``
(all written atomically), tensorboard event files, ``metrics.jsonl`` and ``videos/final.mp4``.
``OnPolicyRunner.resume(run_dir)`` continues a run exactly where its last checkpoint left it:
weights, optimizer and learning rate, normalizers, random generators and (single process) the
envs' full state, so the next iteration's losses equal those of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from rlkd.core.atomic import atomic_write
from rlkd.train.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint, \
    save_checkpoint
from rlkd.train.distributed import allreduce_mean, broadcast_module_, init_distributed
from rlkd.train.logger import TrainLogger


@dataclass
class TrainConfig:
    """One training run (what ``rlkd train`` parses; saved as ``config.yaml``)."""

    env: str = "AGVWarehouse-v0"
    """Registered env id."""
    agent: str = "ppo-rdd"
    """ppo, ppo-rnd or ppo-rdd."""
    num_envs: int = 256
    """Envs per rank."""
    steps: int = 6_000_000
    """Total env steps (all envs, all ranks)."""
    seed: int = 0
    """Seed; rank r uses seed + r for its envs and sampling."""
    device: str = "cpu"
    """Torch device (``cuda`` becomes ``cuda:<local_rank>`` under torchrun)."""
    out: str = "runs/default"
    """Run directory."""
    checkpoint_every: int = 50
    """Iterations between checkpoints (one is always written at the end)."""
    video: bool = True
    """Render a rollout of the final policy to ``videos/final.mp4``."""
    video_steps: int = 300
    """Control steps of that rollout."""
    progress: bool = True
    """Show the progress bar."""
    env_overrides: dict[str, Any] = field(default_factory=dict)
    """Env config overrides (``--set key=value``)."""
    ppo: dict[str, Any] = field(default_factory=dict)
    """PPOConfig overrides (``--ppo key=value``)."""
    intrinsic: dict[str, Any] = field(default_factory=dict)
    """RND/RDD config overrides (``--intrinsic key=value``)."""
    init_from: str | None = None
    """Checkpoint or run directory whose actor-critic weights and observation normalizers start
    this run (fine-tuning, e.g. after a reward change). The optimizer, learning rate, env state
    and step counters start fresh; observation shapes must match."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise KeyError(f"unknown train config keys {unknown}; known: {sorted(names)}")
        return cls(**d)


def write_yaml_atomic(path: Path, data: dict[str, Any]) -> Path:
    text = yaml.safe_dump(data, sort_keys=False).encode()
    return atomic_write(path, lambda f: f.write(text))


def _to_plain(x):
    if isinstance(x, tuple):
        return [_to_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _to_plain(v) for k, v in x.items()}
    return x


def build_env_and_agent(cfg: TrainConfig, seed: int, device: str, num_envs: int | None = None):
    """``(env, algorithm, ppo_cfg, intrinsic_cfg)`` for a train config (network init from
    ``cfg.seed`` so every rank starts from the same weights)."""
    import rlkd
    from rlkd.agents import build_agent, intrinsic_config
    from rlkd.agents.ppo import PPOConfig
    from rlkd.core.config import apply_overrides

    env = rlkd.make(cfg.env, num_envs=num_envs or cfg.num_envs, device=device, seed=seed,
                    **cfg.env_overrides)
    ppo_cfg = apply_overrides(PPOConfig(), dict(cfg.ppo), owner="ppo config")
    intr_cfg = intrinsic_config(cfg.agent, dict(cfg.intrinsic))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        alg = build_agent(cfg.agent, env, ppo_cfg, intr_cfg, seed=seed)
    return env, alg, ppo_cfg, intr_cfg


class EpisodeStats:
    """Finished episodes' return / length / flags, per iteration and over a recent window."""

    def __init__(self, window: int):
        self.window = {k: deque(maxlen=window) for k in
                       ("return", "length", "success", "collision", "timeout")}
        self._iter: dict[str, list[torch.Tensor]] = {k: [] for k in self.window}

    def add(self, episode: dict[str, torch.Tensor]) -> None:
        for k in self._iter:
            if k in episode:
                self._iter[k].append(episode[k].float())

    def flush(self) -> dict[str, float]:
        """Iteration sums all-reduced over ranks; window means for display and logs."""
        sums = []  # (K, 2): sum and count of each statistic, one all-reduce for all of them
        for parts in self._iter.values():
            vals = torch.cat(parts).double().cpu() if parts else torch.zeros(0, dtype=torch.float64)
            sums.append(torch.stack([vals.sum(), torch.tensor(float(vals.numel()),
                                                              dtype=torch.float64)]))
        packed = allreduce_mean(torch.stack(sums))  # mean of sums and counts keeps the ratio
        out: dict[str, float] = {}
        for (k, win), (total, count) in zip(self.window.items(), packed.tolist()):
            if count > 0:
                win.append((total, count))
            n = sum(b for _, b in win)
            out[k] = sum(a for a, _ in win) / n if n else float("nan")
            self._iter[k] = []
        return out


class OnPolicyRunner:
    """Trains ``cfg.agent`` on ``cfg.env``; see the module docstring.

    Args:
        cfg: the run's :class:`TrainConfig`.
        resume_state: a loaded checkpoint to continue from (see :meth:`resume`).
    """

    def __init__(self, cfg: TrainConfig, resume_state: dict[str, Any] | None = None):
        self.dist, device = init_distributed(cfg.device)
        self.cfg = cfg
        self.run_dir = Path(cfg.out)
        self.device = device
        rank_seed = cfg.seed + self.dist.rank
        self.env, self.alg, self.ppo_cfg, self.intr_cfg = build_env_and_agent(cfg, rank_seed,
                                                                            device)
        broadcast_module_(self.alg.policy)
        if self.alg.intrinsic is not None:
            broadcast_module_(self.alg.intrinsic)
        self.iteration, self.env_steps = 0, 0
        per_iter = self.env.num_envs * self.ppo_cfg.num_steps * self.dist.world_size
        self.steps_per_iteration = per_iter
        self.stats = EpisodeStats(window=10)
        self.obs, _ = self.env.reset(seed=rank_seed)
        if resume_state is not None:
            self._load(resume_state)
        elif cfg.init_from:
            self._init_weights(cfg.init_from)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            full = {"train": self.cfg.to_dict(),
                    "ppo": _to_plain(dataclasses.asdict(self.ppo_cfg)),
                    "intrinsic": None if self.intr_cfg is None
                    else _to_plain(dataclasses.asdict(self.intr_cfg)),
                    "world_size": self.dist.world_size}
            write_yaml_atomic(self.run_dir / "config.yaml", _to_plain(full))

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_payload(self) -> dict[str, Any]:
        return {"kind": "train", "iteration": self.iteration, "env_steps": self.env_steps,
                "config": self.cfg.to_dict(), "agent": self.alg.state_dict(),
                "env": self.env.state_dict() if not self.dist.enabled else None,
                "world_size": self.dist.world_size,
                "obs_spaces": {g: list(s.shape) for g, s in self.env.observation_spaces.items()},
                "stats_window": {k: list(v) for k, v in self.stats.window.items()}}

    def save(self, path: Path | None = None) -> Path | None:
        """Write ``checkpoints/model_<it>.pt`` and ``last.pt`` atomically (rank 0 only)."""
        if not self.dist.is_main:
            return None
        payload = self.checkpoint_payload()
        ckpt_dir = self.run_dir / "checkpoints"
        path = path or ckpt_dir / f"model_{self.iteration:06d}.pt"
        return save_checkpoint(path, payload, copies=(ckpt_dir / "last.pt",))

    def _load(self, ck: dict[str, Any]) -> None:
        self.alg.load_state_dict(ck["agent"])
        self.iteration, self.env_steps = int(ck["iteration"]), int(ck["env_steps"])
        if ck.get("env") is not None and not self.dist.enabled:
            self.env.load_state_dict(ck["env"])
            self.obs = self.env.get_observations()
        for k, v in ck.get("stats_window", {}).items():
            self.stats.window[k].extend(tuple(x) for x in v)

    def _init_weights(self, source: str) -> None:
        """Start from the actor-critic (weights + normalizers) of another run's checkpoint."""
        path = resolve_checkpoint(source)
        ck = load_checkpoint(path, required=("agent", "obs_spaces"))
        if ck.get("kind") == "policy":
            raise CheckpointError(f"{path} is an exported policy (actor only); init_from needs "
                                  f"a training checkpoint, which has the critic too")
        ours = {g: list(s.shape) for g, s in self.env.observation_spaces.items()}
        theirs = {g: list(v) for g, v in ck["obs_spaces"].items()}
        for g in dict.fromkeys((self.alg.actor_group, self.alg.critic_group)):  # ordered
            if theirs.get(g) != ours[g]:
                raise CheckpointError(f"{path}: init_from observation group {g!r} has shape "
                                      f"{theirs.get(g)}, this env gives {ours[g]}")
        try:
            self.alg.policy.load_state_dict(ck["agent"]["policy"])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: init_from weights do not fit this agent's "
                                  f"networks: {exc}") from exc
        broadcast_module_(self.alg.policy)

    @classmethod
    def resume(cls, run_dir: str | Path, steps: int | None = None,
               checkpoint: str | Path | None = None) -> "OnPolicyRunner":
        """Continue the run in ``run_dir`` from ``checkpoints/last.pt`` (or ``checkpoint``).

        ``steps`` raises the total env-step budget. Raises :class:`CheckpointError` when the
        checkpoint is missing/corrupt; nothing in the run directory is written before it loads.
        """
        run_dir = Path(run_dir)
        path = Path(checkpoint) if checkpoint else run_dir / "checkpoints" / "last.pt"
        ck = load_checkpoint(path, required=("config", "agent", "iteration", "env_steps"))
        cfg = TrainConfig.from_dict(ck["config"])
        cfg.out = str(run_dir)
        if steps is not None:
            cfg.steps = steps
        return cls(cfg, resume_state=ck)

    # ------------------------------------------------------------------ training
    @property
    def total_iterations(self) -> int:
        return max(1, math.ceil(self.cfg.steps / self.steps_per_iteration))

    def learn(self, callback=None) -> dict[str, float]:
        """Run until ``cfg.steps`` env steps; returns the last iteration's logged scalars.

        ``callback(runner, scalars) -> bool``, called after every iteration's log, stops the
        run early (with a final checkpoint) when it returns True.
        """
        cfg, alg, env = self.cfg, self.alg, self.env
        log = TrainLogger(self.run_dir, self.total_iterations, enabled=self.dist.is_main,
                          progress=cfg.progress, start_iteration=self.iteration)
        scalars: dict[str, float] = {}
        try:
            while self.iteration < self.total_iterations:
                t0 = time.perf_counter()
                alg.policy.train()
                metric_sums: dict[str, torch.Tensor] = {}
                with torch.no_grad():
                    for _ in range(self.ppo_cfg.num_steps):
                        actions = alg.act(self.obs)
                        self.obs, reward, term, trunc, info = env.step(actions)
                        alg.process_env_step(self.obs, reward, term, trunc, info)
                        if "episode" in info:
                            self.stats.add(info["episode"])
                        for k, v in info.get("metrics", {}).items():  # the task's diagnostics
                            metric_sums[k] = metric_sums.get(k, 0.0) + v.float().mean()
                    alg.compute_returns(self.obs)
                t1 = time.perf_counter()
                losses = alg.update()
                t2 = time.perf_counter()
                self.iteration += 1
                self.env_steps += self.steps_per_iteration
                ep = self.stats.flush()
                scalars = {"charts/SPS": self.steps_per_iteration / (t2 - t0),
                           "charts/episodic_return": ep["return"],
                           "charts/episode_length": ep["length"],
                           "charts/success_rate": ep["success"],
                           "charts/collision_rate": ep["collision"],
                           "charts/timeout_rate": ep["timeout"],
                           "perf/collection_s": t1 - t0, "perf/learn_s": t2 - t1, **losses}
                if metric_sums:  # means over the rollout's steps and envs (this rank's)
                    packed = torch.stack(list(metric_sums.values())) / self.ppo_cfg.num_steps
                    scalars.update({f"metrics/{k}": float(v)
                                    for k, v in zip(metric_sums, packed.tolist())})
                log.log(self.iteration - 1, self.env_steps, scalars)
                stop = bool(callback(self, scalars)) if callback is not None else False
                if self.iteration % cfg.checkpoint_every == 0 \
                        or self.iteration == self.total_iterations or stop:
                    self.save()
                if stop:
                    break
        finally:
            log.close()
        if cfg.video and self.dist.is_main:
            self.record_video(self.run_dir / "videos" / "final.mp4", cfg.video_steps)
        return scalars

    def record_video(self, path: Path, steps: int, num_envs: int = 4) -> Path | None:
        """Deterministic rollout of the current policy on fresh envs, tiled into ``path``."""
        try:
            return rollout_video(self.cfg, self.alg.policy, path, steps, num_envs, self.device,
                                 seed=self.cfg.seed + 10_000)
        except NotImplementedError:  # a task without render(): no video, training still counts
            return None


def rollout_video(cfg: TrainConfig, policy, path: Path, steps: int, num_envs: int, device: str,
                  seed: int, width: int = 320) -> Path:
    """Roll out ``policy`` (mean actions) on ``num_envs`` fresh envs and write a tiled video."""
    import rlkd
    from rlkd.render import rollout_frames, write_video

    env = rlkd.make(cfg.env, num_envs=num_envs, device=device, seed=seed, **cfg.env_overrides)
    group = policy_group(cfg)
    was_training = policy.training
    policy.eval()
    frames = rollout_frames(env, lambda obs: policy.act_deterministic(obs[group]).clamp(-1, 1),
                            steps, seed, caption=f"{cfg.env} {cfg.agent}", width=width)
    policy.train(was_training)
    return write_video(path, frames, fps=env.metadata.get("render_fps", 10))


def policy_group(cfg: TrainConfig) -> str:
    return cfg.ppo.get("actor_group", "policy")


def load_policy(run_or_ckpt: str | Path, device: str = "cpu"):
    """``(train_cfg, ActorCritic in eval mode)`` from a run directory or a checkpoint file.

    Raises :class:`CheckpointError` for a missing or corrupt checkpoint.
    """
    path = resolve_checkpoint(run_or_ckpt)
    ck = load_checkpoint(path, map_location=device, required=("config", "agent"))
    cfg = TrainConfig.from_dict(ck["config"])
    env, alg, _, _ = build_env_and_agent(cfg, cfg.seed, device, num_envs=1)
    exported = ck.get("kind") == "policy"  # rlkd.train.export: the actor only
    try:
        result = alg.policy.load_state_dict(ck["agent"]["policy"], strict=not exported)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path} does not fit {cfg.env} / {cfg.agent}: {e}") from e
    if exported:
        lost = [k for k in result.missing_keys if not k.startswith(("critic.", "critic_norm."))]
        if lost or result.unexpected_keys:
            raise CheckpointError(f"policy file {path} does not fit {cfg.env} / {cfg.agent}: "
                                  f"missing {lost}, unexpected {result.unexpected_keys}")
    alg.policy.eval()
    return cfg, alg.policy
