"""On-policy runner: rollouts -> algorithm update -> logs -> checkpoints, resumable and
data-parallel.

    cfg = TrainConfig(env="AGVWarehouse-v0", agent="ppo-rdd", num_envs=256, steps=5_000_000,
                      agent_cfg={"ppo": {"learning_rate": 3e-4}})
    OnPolicyRunner(cfg).learn()

The runner is handed the algorithm by name (:data:`rlkd.agents.AGENTS`) and only drives its
``act -> process_env_step -> compute_returns -> update`` loop (rsl_rl's shape); it imports no
algorithm.

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
from pathlib import Path
from typing import Any

import torch
import yaml

from rlkd.core.atomic import atomic_write
from rlkd.core.config import config_to_dict
from rlkd.core.device import normalize_device
from rlkd.core.provenance import git_commit
from rlkd.train.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint, \
    save_checkpoint
from rlkd.core.distributed import allreduce_mean, broadcast_module_, init_distributed, \
    is_distributed
from rlkd.nn.encoders import group_specs
from rlkd.train.config import TrainConfig
from rlkd.train.logger import TrainLogger, require_wandb
from rlkd.train.rundir import RunDirError, check_fresh_run_dir, package_versions, \
    tidy_for_resume


def write_yaml_atomic(path: Path, data: dict[str, Any]) -> Path:
    text = yaml.safe_dump(data, sort_keys=False).encode()
    return atomic_write(path, lambda f: f.write(text))


def _to_plain(x):
    """``x`` with tuples as lists and anything YAML cannot write (numpy scalars, paths, ...)
    as a plain value or its ``str``, so ``yaml.safe_dump`` takes it."""
    if isinstance(x, (tuple, list)):
        return [_to_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _to_plain(v) for k, v in x.items()}
    if x is None or isinstance(x, (str, bool, int, float)):
        return x
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:  # numpy / torch scalars
        return x.item()
    return str(x)


def build_env_and_agent(cfg: TrainConfig, seed: int, device: str, num_envs: int | None = None):
    """``(env, algorithm, configs)`` for a train config; ``configs`` maps each of the agent's
    config sections to its instance (network init from ``cfg.seed`` so every rank starts from the
    same weights)."""
    import rlkd
    from rlkd.agents import get_agent

    agent = get_agent(cfg.agent)
    agent.configs(cfg.agent_cfg)  # bad sections / keys fail before an env is built
    env = rlkd.make(cfg.env, num_envs=num_envs or cfg.num_envs, device=device, seed=seed,
                    **cfg.env_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        alg, cfgs = agent.build(env, cfg.agent_cfg, seed=seed)
    return env, alg, cfgs


class EpisodeStats:
    """Finished episodes' return / length and every flag the env reports in
    ``info["episode"]`` (success, collision, fall, timeout, ...), per iteration and over a
    recent window. Keys appear as the env first reports them (the same on every rank)."""

    SKIP = ("env_ids",)

    def __init__(self, window: int):
        self.size = window
        self.window: dict[str, deque] = {k: deque(maxlen=window) for k in ("return", "length")}
        self._iter: dict[str, list[torch.Tensor]] = {k: [] for k in self.window}

    def add(self, episode: dict[str, torch.Tensor]) -> None:
        for k, v in episode.items():
            if k in self.SKIP:
                continue
            if k not in self._iter:
                self._iter[k] = []
                self.window.setdefault(k, deque(maxlen=self.size))
            self._iter[k].append(v.float())

    def _sync_keys(self) -> None:
        if not is_distributed():
            return
        import torch.distributed as dist

        keys: list[list[str]] = [[] for _ in range(dist.get_world_size())]
        dist.all_gather_object(keys, sorted(self._iter))
        for k in sorted(set().union(*keys)):
            self._iter.setdefault(k, [])
            self.window.setdefault(k, deque(maxlen=self.size))

    def flush(self) -> dict[str, float]:
        """Iteration sums all-reduced over ranks; window means for display and logs."""
        self._sync_keys()
        names = sorted(self._iter)
        sums = []  # (K, 2): sum and count of each statistic, one all-reduce for all of them
        for k in names:
            parts = self._iter[k]
            vals = torch.cat(parts).double().cpu() if parts else torch.zeros(0, dtype=torch.float64)
            sums.append(torch.stack([vals.sum(), torch.tensor(float(vals.numel()),
                                                              dtype=torch.float64)]))
        packed = allreduce_mean(torch.stack(sums))  # mean of sums and counts keeps the ratio
        out: dict[str, float] = {}
        for k, (total, count) in zip(names, packed.tolist()):
            win = self.window[k]
            if count > 0:
                win.append((total, count))
            n = sum(b for _, b in win)
            out[k] = sum(a for a, _ in win) / n if n else float("nan")
            self._iter[k] = []
        return out

    @staticmethod
    def scalars(ep: dict[str, float]) -> dict[str, float]:
        """Logged names: ``charts/episodic_return``, ``charts/episode_length`` and
        ``charts/<flag>_rate`` for every flag (success_rate, collision_rate, fall_rate, ...)."""
        out = {"charts/episodic_return": ep.get("return", float("nan")),
               "charts/episode_length": ep.get("length", float("nan"))}
        out.update({f"charts/{k}_rate": v for k, v in ep.items() if k not in ("return", "length")})
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
        if resume_state is None:  # before anything is built or written: a refusal costs nothing
            # Every rank checks (the ranks' first collective, below, comes before rank 0 writes
            # config.yaml, so none sees this run's own files); only rank 0 deletes.
            if self.dist.is_main or not cfg.overwrite:
                check_fresh_run_dir(self.run_dir, cfg.overwrite)
        if cfg.wandb and self.dist.is_main:
            require_wandb()
        # One canonical device for env, agent and video ("cpu:0" -> cpu, "cuda" -> cuda:<i>),
        # so device equality checks between their tensors hold.
        self.device = normalize_device(device)
        device = self.device
        rank_seed = cfg.seed + self.dist.rank
        self.env, self.alg, self.agent_cfgs = build_env_and_agent(cfg, rank_seed, device)
        self.randomizer = None  # domain randomisation at every reset (rlkd.sim2real.randomize)
        if cfg.randomize:
            from rlkd.sim2real.randomize import attach_randomizer
            self.randomizer = attach_randomizer(self.env, cfg.randomize, cfg.randomize_mode)
        for module in self.alg.synced_modules():
            broadcast_module_(module)
        self.iteration, self.env_steps = 0, 0
        self.num_steps_per_env = int(self.alg.num_steps_per_env)
        per_iter = self.env.num_envs * self.num_steps_per_env * self.dist.world_size
        self.steps_per_iteration = per_iter
        self.stats = EpisodeStats(window=10)
        self.obs, _ = self.env.reset(seed=rank_seed)
        if resume_state is not None:
            self._load(resume_state)
        elif cfg.init_from:
            self._init_weights(cfg.init_from)
        self.full_config: dict[str, Any] = {}  # config.yaml's content (rank 0)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            full = {"train": self.cfg.to_dict(),
                    "agent": {k: _to_plain(dataclasses.asdict(c))
                              for k, c in self.agent_cfgs.items()},
                    "world_size": self.dist.world_size,
                    "randomize": self.randomizer and self.randomizer.describe()}
            # What the run needs to be understood and re-run later: the env config after
            # overrides (defaults may change between versions), package versions, the commit.
            full.update({"env_config": config_to_dict(self.env.cfg),
                         "versions": package_versions(), "git_commit": git_commit()})
            self.full_config = _to_plain(full)
            write_yaml_atomic(self.run_dir / "config.yaml", self.full_config)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_payload(self) -> dict[str, Any]:
        return {"kind": "train", "iteration": self.iteration, "env_steps": self.env_steps,
                "config": self.cfg.to_dict(), "agent": self.alg.state_dict(),
                "env": self.env.state_dict() if not self.dist.enabled else None,
                "world_size": self.dist.world_size,
                "obs_spaces": {g: list(s.shape) for g, s in self.env.observation_spaces.items()},
                "obs_specs": group_specs(self.env.observation_spaces),
                "model": _model_spec(self.alg.policy),
                "stats_window": {k: list(v) for k, v in self.stats.window.items()},
                "randomizer": self.randomizer and self.randomizer.state_dict()}

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
        if self.randomizer is not None:
            self.randomizer.load_state_dict(ck.get("randomizer"))
        for k, v in ck.get("stats_window", {}).items():
            self.stats.window.setdefault(k, deque(maxlen=self.stats.size))
            self.stats._iter.setdefault(k, [])
            self.stats.window[k].extend(tuple(x) for x in v)

    def _init_weights(self, source: str) -> None:
        """Start from another run's actor-critic (a training checkpoint or run directory:
        weights + normalizers), or from the actor alone of an exported policy or a shipped
        expert (``expert:<name>``), the critic then starting fresh (see the PPO config's
        ``critic_warmup_updates``)."""
        from rlkd.nn.policy import ACTOR_PREFIXES, upgrade_state_dict

        if str(source).startswith("expert:"):
            from rlkd.policies import expert_path

            try:
                path = Path(expert_path(str(source)[len("expert:"):]))
            except ValueError as exc:
                raise CheckpointError(f"init_from {source}: {exc}") from None
        else:
            path = resolve_checkpoint(source)
        ck = load_checkpoint(path, required=("agent", "obs_spaces"))
        actor_only = ck.get("kind") == "policy"
        ours = {g: list(s.shape) for g, s in self.env.observation_spaces.items()}
        theirs = {g: list(v) for g, v in ck["obs_spaces"].items()}
        pol = self.alg.policy
        groups = list(pol.actor_groups) if actor_only else \
            list(dict.fromkeys(list(pol.actor_groups) + list(pol.critic_groups)))
        for g in groups:  # ordered
            if theirs.get(g) != ours[g]:
                raise CheckpointError(f"{path}: init_from observation group {g!r} has shape "
                                      f"{theirs.get(g)}, this env gives {ours[g]}")
        sd = ck["agent"]["policy"]
        try:
            if not actor_only:
                pol.load_state_dict(sd)
            else:
                sd = upgrade_state_dict(sd, list(pol.actor_groups), None)
                missing, unexpected = pol.load_state_dict(sd, strict=False)
                missing = [k for k in missing if k.startswith(ACTOR_PREFIXES)]
                if missing or unexpected:
                    raise RuntimeError(f"missing actor keys {missing[:4]}, unexpected keys "
                                       f"{list(unexpected)[:4]}")
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: init_from weights do not fit this agent's "
                                  f"networks: {exc}") from exc
        if actor_only:
            warm = getattr(getattr(self.alg, "cfg", None), "critic_warmup_updates", None)
            print(f"init_from {source}: an exported policy, actor only; the critic starts fresh"
                  + ("" if warm else " (set --ppo critic_warmup_updates=N to fit it before the "
                     "actor moves)"), flush=True)
        broadcast_module_(self.alg.policy)

    @classmethod
    def resume(cls, run_dir: str | Path, steps: int | None = None,
               checkpoint: str | Path | None = None,
               require_progress: bool = False,
               settings: dict[str, Any] | None = None) -> "OnPolicyRunner":
        """Continue the run in ``run_dir`` from ``checkpoints/last.pt`` (or ``checkpoint``).

        ``steps`` raises the total env-step budget. Raises :class:`CheckpointError` when the
        checkpoint is missing/corrupt, :class:`RunDirError` when ``steps`` is below the env
        steps already done or (``require_progress``, as ``rlkd train --resume`` asks) when the
        budget leaves no iteration to run; nothing in the run directory is written before.
        ``settings`` replaces config fields that do not change what is computed (progress bar,
        log interval, video, checkpoint interval: ``rlkd.train.cli.RESUME_SETTABLE``).
        """
        run_dir = Path(run_dir)
        path = Path(checkpoint) if checkpoint else run_dir / "checkpoints" / "last.pt"
        ck = load_checkpoint(path, required=("config", "agent", "iteration", "env_steps"))
        cfg = TrainConfig.from_dict(ck["config"])
        cfg.out = str(run_dir)
        for name, value in (settings or {}).items():
            setattr(cfg, name, value)
        done = int(ck["env_steps"])
        if steps is not None and steps < done:
            raise RunDirError(f"--steps {steps:,} is below the {done:,} env steps {run_dir} has "
                              f"already done (iteration {ck['iteration']}); give a larger "
                              f"budget to continue it")
        if steps is not None:
            cfg.steps = steps
        # iteration k's checkpoint holds k * steps_per_iteration env steps, so "no iteration
        # left" (ceil(steps / per_iteration) <= k) is exactly steps <= done.
        if require_progress and cfg.steps <= done:
            raise RunDirError(f"{run_dir} is complete: {done:,} of its {cfg.steps:,} env steps "
                              f"are done; pass --steps above {done:,} to train it further")
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
        if self.dist.is_main:
            # A resumed run's directory still holds what a killed process wrote after the
            # checkpoint (metrics rows that will be logged again, orphan temp files): drop them.
            tidy_for_resume(self.run_dir, self.iteration)
        # purge_step: tensorboard hides the old event files' points at or after the checkpoint,
        # so the resumed process's new event file (same directory) continues one logical run.
        log = TrainLogger(self.run_dir, self.total_iterations, enabled=self.dist.is_main,
                          progress=cfg.progress, start_iteration=self.iteration,
                          start_env_steps=self.env_steps, total_env_steps=cfg.steps,
                          purge_step=self.env_steps or None, log_interval_s=cfg.log_interval_s,
                          wandb_config=self.full_config if cfg.wandb else None)
        log.message(self._header())
        log.add_text("config", _yaml_markdown(self.full_config), self.env_steps)
        scalars: dict[str, float] = {}
        try:
            while self.iteration < self.total_iterations:
                t0 = time.perf_counter()
                alg.policy.train()
                metric_sums: dict[str, torch.Tensor] = {}
                unstable = 0
                with torch.no_grad():
                    for _ in range(self.num_steps_per_env):
                        actions = alg.act(self.obs)
                        self.obs, reward, term, trunc, info = env.step(actions)
                        alg.process_env_step(self.obs, reward, term, trunc, info)
                        if "episode" in info:
                            self.stats.add(info["episode"])
                        unstable += info.get("sim_unstable", 0)
                        for group, d in (("metrics", info.get("metrics", {})),  # diagnostics
                                         ("rewards", info.get("reward_terms", {}))):
                            for k, v in d.items():
                                name = f"{group}/{k}"
                                metric_sums[name] = metric_sums.get(name, 0.0) + v.float().mean()
                    alg.compute_returns(self.obs)
                t1 = time.perf_counter()
                losses = alg.update()
                t2 = time.perf_counter()
                self.iteration += 1
                self.env_steps += self.steps_per_iteration
                ep = self.stats.flush()
                n_unstable = float(allreduce_mean(torch.tensor(float(unstable)))) \
                    * self.dist.world_size
                scalars = {"charts/SPS": self.steps_per_iteration / (t2 - t0),
                           **EpisodeStats.scalars(ep), "charts/sim_unstable": n_unstable,
                           "perf/collection_s": t1 - t0, "perf/learn_s": t2 - t1, **losses}
                if metric_sums:  # means over the rollout's steps and envs (this rank's)
                    packed = torch.stack(list(metric_sums.values())) / self.num_steps_per_env
                    scalars.update(dict(zip(metric_sums, packed.tolist())))
                log.log(self.iteration - 1, self.env_steps, scalars)
                stop = bool(callback(self, scalars)) if callback is not None else False
                if self.iteration % cfg.checkpoint_every == 0 \
                        or self.iteration == self.total_iterations or stop:
                    self.save()
                    log.flush()
                if stop:
                    break
        finally:
            log.close()
        if cfg.video and self.dist.is_main:
            say = print if cfg.progress else (lambda *a, **k: None)
            say(f"rendering the final video ({cfg.video_steps} steps x 4 envs) ...", flush=True)
            t = time.perf_counter()
            path = self.record_video(self.run_dir / "videos" / "final.mp4", cfg.video_steps)
            say(f"video: {path} ({time.perf_counter() - t:.1f} s)" if path is not None
                else f"no video: {cfg.env} does not render", flush=True)
        return scalars

    def _header(self) -> str:
        """The start line of a run: what trains, how much, where."""
        ranks = f" x {self.dist.world_size} ranks" if self.dist.enabled else ""
        where = (f"resuming at {self.env_steps:,} env steps (iteration {self.iteration})"
                 if self.iteration else "fresh run")
        return (f"rlkd train: env {self.cfg.env}, agent {self.cfg.agent}, {self.env.num_envs} "
                f"envs{ranks}, {self.cfg.steps:,} env steps ({self.total_iterations} iterations "
                f"of {self.steps_per_iteration:,}), device {self.device}, run dir {self.run_dir}"
                f"; {where}")

    def record_video(self, path: Path, steps: int, num_envs: int = 4) -> Path | None:
        """Deterministic rollout of the current policy on fresh envs, tiled into ``path``."""
        try:
            return rollout_video(self.cfg, self.alg.policy, path, steps, num_envs, self.device,
                                 seed=self.cfg.seed + 10_000)
        except NotImplementedError:  # a task without render(): no video, training still counts
            return None


def _yaml_markdown(data: dict[str, Any]) -> str:
    """``data`` as YAML in a markdown code block (tensorboard's text plugin renders markdown:
    indenting by four spaces keeps the YAML's layout)."""
    text = yaml.safe_dump(data, sort_keys=False)
    return "\n".join("    " + line for line in text.splitlines())


def _model_spec(policy) -> dict[str, Any] | None:
    """The policy model's constructor arguments (``ActorCritic.spec()``), if it has them: what
    :func:`rlkd.policies.load_policy` rebuilds the actor from without the agent or the env."""
    spec = getattr(policy, "spec", None)
    return spec() if callable(spec) else None


def rollout_video(cfg: TrainConfig, policy, path: Path, steps: int, num_envs: int, device: str,
                  seed: int, width: int = 320) -> Path:
    """Roll out ``policy`` (mean actions) on ``num_envs`` fresh envs and write a tiled video."""
    import rlkd
    from rlkd.render import rollout_frames, write_video

    env = rlkd.make(cfg.env, num_envs=num_envs, device=device, seed=seed, **cfg.env_overrides)
    was_training = policy.training
    policy.eval()
    with torch.no_grad():
        frames = rollout_frames(env, lambda obs: policy.act_deterministic(obs).clamp(-1, 1),
                                steps, seed, caption=f"{cfg.env} {cfg.agent}", width=width)
    policy.train(was_training)
    env.close()
    return write_video(path, frames, fps=env.metadata.get("render_fps", 10))
