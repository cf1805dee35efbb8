"""Vision distillation: experts -> a camera student by DAgger, then PPO fine-tuning (PhysHMR).

DESIGN.md 9.5 (PhysHMR, Feng et al. 2025, arXiv 2510.02566; DAgger: Ross, Gordon & Bagnell 2011).
The expert trackers read privileged future reference frames; the student reads what a robot
could have: proprioception and what a camera sees of the performer (``distill.student_groups``,
default ``[student]`` = proprio + keypoint rays)::

    rlkd distill HumanoidMotion-v0 --teacher expert:humanoid-walk --student rays --out runs/v

**Stage 1, DAgger** (the first ``dagger_steps`` env steps). At iteration ``k``:

* every env executes the teacher's action with probability ``beta_k`` and the student's mean
  action otherwise; the draw is per env, once per iteration (``beta_resample="iteration"``) or
  at every episode start (``"episode"``); ``beta_k = beta0 * beta_decay**k`` (``exponential``)
  or ``beta0 * max(0, 1 - k / beta_iters)`` (``linear``);
* every visited state is labelled with the teacher's **mean action made absolute**: a residual
  expert's ``a_T`` (offsets from the next reference frame) becomes
  ``env.to_absolute(a_T, teacher.action_mode)``, the absolute action in [-1, 1] with the same PD
  targets. One teacher per clip (``teacher="walk=expert:humanoid-walk,turn=runs/t"``): the env's
  ``clip_ids`` pick each env's teacher, each teacher runs once on its rows (index masks). A
  residual expert reads the env's ``teacher`` group in place of ``policy`` (the previous action
  in its own residual form; with the absolute one its error doubles, DESIGN.md 9.5);
* the student's observations and labels join the **aggregated dataset** (FIFO, ``capacity``
  samples, saved with every checkpoint); the actor regresses it for ``dagger_epochs`` epochs::

      L_DAgger = mean_{b in D, j} (mu_s(o_b)_j - a*_{b,j})^2       (Adam, dagger_lr)

* the **privileged critic** (``critic`` group) learns meanwhile: PPO's (clipped) value loss on
  the GAE returns of the env reward collected by the mixture, ``ppo.num_epochs x
  ppo.num_minibatches`` passes over the rollout, so fine-tuning starts with a warm critic.

**Stage 2, PPO fine-tuning** (the rest of ``--steps``), from the DAgger student: the std starts
at ``ppo.init_noise_std`` (0.02 here: DAgger never trains it; mjlab also lowers it); for the
first ``actor_freeze_updates`` updates the actor (weights, std and normalizer) is frozen and
only the critic trains; then PPO (:mod:`rlkd.agents.ppo`) plus an optional decaying DAgger term
on the rollout's states, ``L = L_PPO + bc_coef * bc_decay**m * L_BC`` (``m`` = updates since
the actor thawed). The dataset is freed at the switch (the term uses fresh rollout labels).

One agent, two stages (``--steps`` above ``dagger_steps`` fine-tunes; ``dagger_steps >= steps``
is DAgger alone; ``beta_decay=1`` with ``beta0=1`` is behaviour cloning). The run is an ordinary
run: its :class:`~rlkd.nn.policy.ActorCritic` reads the student groups, so ``rlkd play / eval /
export`` and ``load_policy`` take it without the teachers; resuming rebuilds the agent, so the
teachers must still be where ``teacher`` says. Refused at build time, before any step or file:
a residual-action student env (the env would add the reference to the student's actions: a
leak), privileged student groups, unknown experts, teachers whose groups or shapes differ from
the env's, unknown clips in the mapping and clips without a teacher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rlkd.agents.ppo import PPO, PPO_ALIASES, PPOConfig, clipped_surrogate, gaussian_entropy, \
    gaussian_kl, gaussian_log_prob, value_loss
from rlkd.agents.registry import register_agent
from rlkd.agents.vision_teachers import PRIVILEGED_GROUPS, TeacherSet
from rlkd.core.distributed import allreduce_grads_, allreduce_mean
from rlkd.storage import AggregatedDataset, RolloutStorage, obs_specs

#: Extra group of the rollout storage: the teacher's absolute label of each step, ``(A,)``.
LABEL = "dagger_label"


@dataclass
class DistillPPOConfig(PPOConfig):
    """PPO settings of the student (fine-tuning stage; the critic's during DAgger too).
    ``actor_groups`` is replaced by ``distill.student_groups``."""

    actor_groups: tuple[str, ...] = ("student",)
    """Set from ``distill.student_groups`` (recorded here for config.yaml)."""
    init_noise_std: float = 0.02
    """Action std when fine-tuning starts (ours; absolute units: 0.01-0.04 rad over the
    humanoid's joint half-ranges of 0.52-2.1 rad). DAgger executes means and never trains it.
    Measured on a 75 mm (world MPJPE) DAgger student: sampling at 0.02 tracked within 5% of its
    mean actions, at 0.05 25-35% worse, at 0.1 twice as bad: errors compound on a student."""
    learning_rate: float = 1e-4
    """Adam learning rate of the critic during DAgger (fixed) and the initial one of
    fine-tuning (then KL-adaptive); lower than PPO's 1e-3 so fine-tuning keeps the student."""


@dataclass
class VisionDistillConfig:
    """What vision distillation adds to PPO (DESIGN.md 9.5)."""

    teacher: str = ""
    """Teachers: one source for every clip (``expert:humanoid-walk``, a run directory, a
    checkpoint or exported file), or ``clip=source`` pairs, comma-separated
    (``walk=expert:humanoid-walk,turn=runs/t``; a bare source is the default of the rest).
    Clip names are the env's ``motions.names`` (``walk``, ``walk@1.0``). Required."""
    student_groups: tuple[str, ...] = ("student",)
    """Observation groups the student's actor reads (``student`` = proprio + keypoints;
    ``[proprio, image]`` / ``[student, image]`` need the env's GPU-rendered ``image`` group)."""
    dagger_steps: int = 5_000_000
    """Env steps (all envs, all ranks) of the DAgger stage; PPO fine-tuning runs after them
    (rounded up to whole iterations; 0: no DAgger)."""
    beta0: float = 1.0
    """Probability ``beta_0`` that an env executes the teacher's action at DAgger iteration 0
    (1: the first iteration is the teacher's, as in Ross et al.)."""
    beta_schedule: str = "exponential"
    """``exponential``: ``beta_k = beta0 * beta_decay**k``; ``linear``: ``beta0 * max(0, 1 -
    k / beta_iters)``."""
    beta_decay: float = 0.9
    """Per-iteration factor of the exponential schedule (1 with beta0=1: behaviour cloning)."""
    beta_iters: int = 50
    """DAgger iterations over which the linear schedule reaches 0."""
    beta_resample: str = "iteration"
    """When each env's teacher-or-student draw is made: ``iteration`` (every env, at the start
    of every rollout: the executed mixture follows ``beta_k`` exactly) or ``episode`` (at each
    episode start, with the ``beta_k`` of that moment: whole-trajectory mixing)."""
    capacity: int = 100_000
    """Aggregated-dataset size in samples (FIFO). Each holds the student groups and a float32
    label, ``4 * (D_student + 28)`` bytes (0.2 GB at D = 480); it is saved in every DAgger-stage
    checkpoint (exact resume), so raise ``checkpoint_every`` with large capacities."""
    dagger_epochs: int = 2
    """Passes over the aggregated dataset per iteration."""
    dagger_minibatch_size: int = 4096
    """Samples per DAgger minibatch (the last of a pass may be smaller)."""
    dagger_lr: float = 5e-4
    """Adam learning rate of the actor's DAgger regression (its own optimizer, fixed)."""
    actor_freeze_updates: int = 10
    """Fine-tuning updates during which the actor is frozen (weights, std, normalizer) while
    the critic adapts to the student's own (sampled) returns (mjlab's warm-up)."""
    bc_coef: float = 0.0
    """Weight of the DAgger term during fine-tuning, on the rollout's states with fresh teacher
    labels (0: off; the teachers then no longer run)."""
    bc_decay: float = 0.95
    """Per-update decay of that weight once the actor thaws: ``bc_coef * bc_decay**m``."""
    allow_privileged: bool = False
    """Allow the student to read privileged groups (``policy``, ``reference``, ``critic``,
    ``teacher``): for sanity checks only; a student reading the reference is no vision student."""


# ---------------------------------------------------------------------------------- algorithm
class VisionDistill(PPO):
    """DAgger from per-clip experts to a student actor, then PPO fine-tuning (module docstring).

    Args:
        env: the BatchedEnv (absolute actions; ``clip_ids`` and ``to_absolute`` when teachers
            are per clip or residual).
        cfg: :class:`DistillPPOConfig` (``actor_groups`` replaced by ``dcfg.student_groups``).
        dcfg: :class:`VisionDistillConfig`.
        seed: seeds the action noise, the mixture draws and the minibatch orders.
    """

    def __init__(self, env, cfg: PPOConfig, dcfg: VisionDistillConfig, seed: int = 0):
        _check_config(dcfg)
        mode = getattr(getattr(env, "cfg", None), "action_mode", "absolute")
        if mode != "absolute":
            raise ValueError(f"vision-distill: the student env has action_mode={mode!r}, which "
                             f"adds the reference motion to the student's actions (a leak of "
                             f"what the camera student must infer); use action_mode='absolute' "
                             f"(residual teachers are converted with env.to_absolute)")
        spaces = env.observation_spaces
        _check_student_groups(dcfg, spaces)
        super().__init__(env, replace(cfg, actor_groups=tuple(dcfg.student_groups)), seed=seed)
        self.distill = dcfg
        self.teachers = TeacherSet(dcfg.teacher, env, self.device)
        self.student_groups = list(dcfg.student_groups)
        specs = obs_specs(spaces, self.obs_groups)
        specs[LABEL] = ((env.act_dim,), torch.float32)
        self.storage = RolloutStorage(cfg.num_steps, env.num_envs, specs, env.act_dim, 1,
                                      self.device)
        world = torch.distributed.get_world_size() if torch.distributed.is_available() \
            and torch.distributed.is_initialized() else 1
        #: DAgger iterations (``dagger_steps`` over the env steps of one iteration, rounded up).
        self.dagger_iters = math.ceil(dcfg.dagger_steps / (env.num_envs * cfg.num_steps * world))
        self.dataset: AggregatedDataset | None = None
        if self.dagger_iters > 0:
            self.dataset = AggregatedDataset(dcfg.capacity, obs_specs(spaces, self.student_groups),
                                             env.act_dim, self.device)
        pol = self.policy
        self.actor_params = [*pol.actor_encoder.parameters(), *pol.actor.parameters()]
        self.dagger_optimizer = torch.optim.Adam(self.actor_params, lr=dcfg.dagger_lr)
        self.mix_gen = torch.Generator(device=self.device).manual_seed(seed + 104_729)
        self.dagger_gen = torch.Generator(device="cpu").manual_seed(seed + 15_485_863)
        #: ``(N,)`` bool: the envs executing their teacher's action (DAgger stage).
        self.teacher_mask = torch.zeros(env.num_envs, dtype=torch.bool, device=self.device)
        self.mask_drawn = False
        self.updates_done = 0
        self._freeze_actor(self.actor_frozen)

    # ------------------------------------------------------------------ schedule
    @property
    def in_dagger(self) -> bool:
        """True during the DAgger stage (the first :attr:`dagger_iters` updates)."""
        return self.updates_done < self.dagger_iters

    @property
    def ft_updates(self) -> int:
        """Fine-tuning updates done so far (0 during DAgger)."""
        return max(0, self.updates_done - self.dagger_iters)

    @property
    def actor_frozen(self) -> bool:
        """True for the first ``actor_freeze_updates`` fine-tuning updates."""
        return not self.in_dagger and self.ft_updates < self.distill.actor_freeze_updates

    @property
    def beta(self) -> float:
        """``beta_k`` of this DAgger iteration (0 once fine-tuning)."""
        d, k = self.distill, self.updates_done
        if not self.in_dagger:
            return 0.0
        if d.beta_schedule == "linear":
            return d.beta0 * max(0.0, 1.0 - k / d.beta_iters)
        return d.beta0 * d.beta_decay ** k

    @property
    def bc_weight(self) -> float:
        """Weight of the fine-tuning DAgger term this update (0 in DAgger or while frozen)."""
        d = self.distill
        if self.in_dagger or self.actor_frozen or d.bc_coef == 0:
            return 0.0
        return d.bc_coef * d.bc_decay ** (self.ft_updates - d.actor_freeze_updates)

    def _freeze_actor(self, frozen: bool) -> None:
        for p in [*self.actor_params, self.policy.log_std]:
            p.requires_grad_(not frozen)

    def _draw_mask(self, rows: torch.Tensor | None = None) -> None:
        """Redraw the teacher-or-student choice of every env (``rows``: only where True)."""
        u = torch.rand(self.num_envs, generator=self.mix_gen, device=self.device)
        draw = u < self.beta
        self.teacher_mask = draw if rows is None else torch.where(rows, draw, self.teacher_mask)

    # ------------------------------------------------------------------ rollout
    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(N, A)`` actions: DAgger's per-env mixture of teacher labels and student means, or
        the fine-tuning student's samples; records the step (with its label) for the update."""
        pol = self.policy
        if not self.actor_frozen:
            pol.actor_encoder.update_normalizers(obs)
        pol.critic_encoder.update_normalizers(obs)
        mu, sigma = pol.dist_params(obs)
        if self.in_dagger or self.bc_weight > 0:
            label = self.teachers.labels(obs)
        else:
            label = torch.zeros_like(mu)
        if self.in_dagger:
            if not self.mask_drawn or (self.distill.beta_resample == "iteration"
                                       and self.storage.step == 0):
                self._draw_mask()
                self.mask_drawn = True
            actions = torch.where(self.teacher_mask[:, None], label, mu)
        else:
            noise = torch.randn(mu.shape, generator=self.act_gen, device=mu.device, dtype=mu.dtype)
            actions = mu + sigma * noise
        self.storage.add({**obs, LABEL: label}, actions, gaussian_log_prob(actions, mu, sigma),
                         mu, sigma, pol.value(obs))
        return actions

    @torch.no_grad()
    def process_env_step(self, obs, reward, terminated, truncated, info) -> None:
        """PPO's (time-out bootstrapping); with ``beta_resample="episode"`` the envs that ended
        draw teacher-or-student afresh for their next episode."""
        super().process_env_step(obs, reward, terminated, truncated, info)
        if self.in_dagger and self.distill.beta_resample == "episode":
            self._draw_mask(terminated | truncated)

    # ------------------------------------------------------------------ update
    def update(self) -> dict[str, float]:
        """One DAgger iteration (aggregate, critic regression, actor regression) or one
        fine-tuning PPO update; then the stage / freeze bookkeeping."""
        st = self.storage
        beta, in_dagger = self.beta, self.in_dagger
        # The student's error on this rollout's states, before learning from them.
        label_mse = float(allreduce_mean(F.mse_loss(st.mu, st.obs[LABEL])))
        stats = self._dagger_update() if in_dagger else self._finetune_update()
        st.clear()
        self.updates_done += 1
        if self.dataset is not None and not self.in_dagger:
            self.dataset = None  # fine-tuning labels come from its own rollouts
        self._freeze_actor(self.actor_frozen)
        stats.update({"losses/learning_rate": self.learning_rate,
                      "losses/action_std": float(self.policy.log_std.detach().exp().mean()),
                      "distill/stage": 0.0 if in_dagger else 1.0, "distill/beta": beta})
        if in_dagger or stats.get("distill/bc_coef", 0) > 0:
            stats["distill/label_mse"] = label_mse
        return stats

    def _step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, params) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        allreduce_grads_(params)
        nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        optimizer.step()

    def _dagger_update(self) -> dict[str, float]:
        cfg, pol, st = self.cfg, self.policy, self.storage
        # Aggregate: every state the mixture visited, with its teacher label (time-major order).
        self.dataset.add({g: st.obs[g].flatten(0, 1) for g in self.student_groups},
                         st.obs[LABEL].flatten(0, 1))
        teacher_frac = float(allreduce_mean(self.teacher_mask.float().mean()))
        # Privileged critic: value regression on the rollout's GAE returns.
        critic_params = [*pol.critic_encoder.parameters(), *pol.critic.parameters()]
        v_sum, n_v = 0.0, 0
        for mb in st.minibatches(cfg.num_minibatches, cfg.num_epochs, self.batch_gen):
            v_loss = value_loss(pol.value(mb["obs"]), mb["values"], mb["returns"], cfg)
            self._step(cfg.value_coef * v_loss, self.optimizer, critic_params)
            v_sum, n_v = v_sum + v_loss.item(), n_v + 1
        # Actor: DAgger regression over the aggregated dataset.
        d_sum, n_d = 0.0, 0
        d = self.distill
        for mb in self.dataset.minibatches(d.dagger_minibatch_size, d.dagger_epochs,
                                           self.dagger_gen):
            loss = F.mse_loss(pol.act_deterministic(mb["obs"]), mb["labels"])
            self._step(loss, self.dagger_optimizer, self.actor_params)
            d_sum, n_d = d_sum + loss.item(), n_d + 1
        return {"losses/value_loss": v_sum / max(n_v, 1),
                "distill/dagger_loss": d_sum / max(n_d, 1),
                "distill/dataset_size": float(self.dataset.size),
                "distill/teacher_fraction": teacher_frac}

    def _finetune_update(self) -> dict[str, float]:
        cfg, pol = self.cfg, self.policy
        frozen, w = self.actor_frozen, self.bc_weight
        sums: dict[str, float] = {}
        n = 0
        for mb in self.storage.minibatches(cfg.num_minibatches, cfg.num_epochs, self.batch_gen):
            obs = mb["obs"]
            with torch.set_grad_enabled(not frozen):
                mu, sigma = pol.dist_params(obs)
            with torch.no_grad():
                kl = allreduce_mean(gaussian_kl(mb["mu"], mb["sigma"], mu, sigma).mean())
            v_loss = value_loss(pol.value(obs), mb["values"], mb["returns"], cfg)
            loss = cfg.value_coef * v_loss
            stats = {"losses/value_loss": v_loss.item(), "losses/approx_kl": kl.item()}
            if not frozen:  # PPO on the student (plus the decaying DAgger term)
                self.adapt_learning_rate(kl)
                ratio = torch.exp(gaussian_log_prob(mb["actions"], mu, sigma) - mb["log_prob"])
                surrogate = clipped_surrogate(mb["advantages"][:, 0], ratio, cfg)
                entropy = gaussian_entropy(sigma).mean()
                loss = loss + surrogate - cfg.entropy_coef * entropy
                stats.update({"losses/policy_loss": surrogate.item(),
                              "losses/entropy": entropy.item(),
                              "losses/clip_fraction":
                                  ((ratio - 1).abs() > cfg.clip_eps).float().mean().item()})
                if w > 0:
                    bc = F.mse_loss(mu, obs[LABEL])
                    loss = loss + w * bc
                    stats["distill/bc_loss"] = bc.item()
            self._step(loss, self.optimizer, [p for p in pol.parameters() if p.requires_grad])
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
        out = {k: v / max(n, 1) for k, v in sums.items()}
        out.update({"distill/actor_frozen": float(frozen), "distill/bc_coef": w})
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """PPO's state plus the stage position, the DAgger optimizer, the mixture and
        minibatch generators, the current mixture and the aggregated dataset (exact resume)."""
        return {**super().state_dict(), "distill": {
            "updates_done": self.updates_done,
            "dagger_optimizer": self.dagger_optimizer.state_dict(),
            "mix_gen": self.mix_gen.get_state(), "dagger_gen": self.dagger_gen.get_state(),
            "teacher_mask": self.teacher_mask.clone(), "mask_drawn": self.mask_drawn,
            "dataset": None if self.dataset is None else self.dataset.state_dict()}}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        super().load_state_dict(sd)
        d = sd["distill"]
        self.updates_done = int(d["updates_done"])
        self.dagger_optimizer.load_state_dict(d["dagger_optimizer"])
        self.mix_gen.set_state(d["mix_gen"])
        self.dagger_gen.set_state(d["dagger_gen"])
        self.teacher_mask = d["teacher_mask"].to(self.device).clone()
        self.mask_drawn = bool(d["mask_drawn"])
        if not self.in_dagger:
            self.dataset = None
        elif d["dataset"] is None or self.dataset is None:
            raise ValueError("vision-distill checkpoint: the DAgger stage's dataset is missing")
        else:
            self.dataset.load_state_dict(d["dataset"])
        self._freeze_actor(self.actor_frozen)


def _check_config(d: VisionDistillConfig) -> None:
    """Ranges of the config (``ValueError`` naming the field)."""
    checks = [("beta0", 0 <= d.beta0 <= 1), ("beta_decay", 0 <= d.beta_decay <= 1),
              ("beta_iters", d.beta_iters >= 1), ("capacity", d.capacity >= 1),
              ("dagger_steps", d.dagger_steps >= 0), ("dagger_epochs", d.dagger_epochs >= 1),
              ("dagger_minibatch_size", d.dagger_minibatch_size >= 1),
              ("dagger_lr", d.dagger_lr > 0), ("actor_freeze_updates", d.actor_freeze_updates >= 0),
              ("bc_coef", d.bc_coef >= 0), ("bc_decay", 0 < d.bc_decay <= 1),
              ("beta_schedule", d.beta_schedule in ("exponential", "linear")),
              ("beta_resample", d.beta_resample in ("iteration", "episode"))]
    bad = [name for name, ok in checks if not ok]
    if bad:
        values = ", ".join(f"{b}={getattr(d, b)!r}" for b in bad)
        raise ValueError(f"vision-distill: bad value of {values} "
                         f"(beta0, beta_decay in [0, 1]; beta_iters, capacity, dagger_epochs, "
                         f"dagger_minibatch_size >= 1; beta_schedule exponential|linear; "
                         f"beta_resample iteration|episode; see `rlkd list agents`)")
    if not d.student_groups:
        raise ValueError("vision-distill: student_groups is empty")


def _check_student_groups(d: VisionDistillConfig, spaces) -> None:
    """Refuse student groups the env lacks (``image``: GPU rendering) or that are privileged."""
    for g in d.student_groups:
        if g in spaces:
            continue
        if g == "image":
            raise ValueError(f"vision-distill: the student reads 'image', camera frames the env "
                             f"renders on a GPU (MuJoCo Warp; CPU rendering manages ~6-14 "
                             f"frames/s); this env provides no 'image' group (groups: "
                             f"{sorted(spaces)}); use --student rays or keypoints2d")
        raise ValueError(f"vision-distill: student group {g!r} is not an observation group of "
                         f"the env (groups: {sorted(spaces)}); the camera groups 'student' and "
                         f"'keypoints' need --set vision=rays|keypoints2d")
    leaks = [g for g in d.student_groups if g in PRIVILEGED_GROUPS]
    if leaks and not d.allow_privileged:
        raise ValueError(f"vision-distill: student groups {leaks} are privileged (the reference "
                         f"motion or the simulator's state); the student reads proprioception "
                         f"and camera evidence (allow_privileged=true for sanity checks)")


def build_vision_distill(env, cfgs: dict[str, Any], seed: int = 0) -> VisionDistill:
    """The registry's builder; ``cfgs["ppo"]`` becomes the config actually used (actor groups =
    the student groups), so the run's config.yaml records it."""
    alg = VisionDistill(env, cfgs["ppo"], cfgs["distill"], seed=seed)
    cfgs["ppo"] = alg.cfg
    return alg


register_agent("vision-distill", build_vision_distill,
               sections={"ppo": DistillPPOConfig, "distill": VisionDistillConfig},
               aliases=PPO_ALIASES,
               description="Vision distillation: DAgger from per-clip experts to a camera "
                           "student with a privileged critic, then PPO fine-tuning (PhysHMR, "
                           "Feng et al. 2025); rlkd distill, or --distill teacher=SRC")
