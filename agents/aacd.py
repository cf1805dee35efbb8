"""AACD: asymmetric actor-critic distillation (TacSL, Akinola, Xu et al. 2024, arXiv 2408.06506).

DESIGN.md section 9.4. An online recipe for policies whose sensors are expensive to learn from
(tactile fields and images): the value knowledge is distilled through the critic.

**Stage 1, teacher**: an ordinary PPO run whose actor *and* critic read cheap privileged state::

    rlkd train TactilePegInsertion-v0 --agent ppo --ppo actor_groups=[critic] --out runs/teacher

**Stage 2, student** (this file, ``--agent aacd``)::

    rlkd train TactilePegInsertion-v0 --agent aacd --teacher runs/teacher --out runs/student

* a **fresh actor** ``pi_s(a | o)`` on what a real robot has, ``o = [policy, tactile]``
  (``ppo.actor_groups``; an MLP for the float force field, the small CNN for uint8 tactile
  images), initialized exactly as a ``ppo`` actor of the same seed;
* the teacher's **critic ``V_T(s_priv)`` and its observation normalizer copied** bitwise from the
  teacher's *training* checkpoint (an exported policy has no critic), reading the teacher's
  critic groups (``ppo.critic_groups`` and ``critic_hidden`` are taken from the teacher);
* for the first ``critic_warmup`` iterations the critic is **frozen**: no gradient and no
  normalizer update, so the fresh actor's advantages ``A_t = GAE(r, V_T)`` come from the
  teacher's value function rather than from a critic still chasing a random actor's returns;
  afterwards the critic is trained with PPO's clipped value loss (TacSL's released recipe);
* the actor's loss is PPO's (:mod:`rlkd.agents.ppo`)::

      L_PPO = -min(rho A, clip(rho, 1-eps, 1+eps) A) + c_v max((V-R)^2, (V_clip-R)^2) - c_H H

* **DAgger term** (ours, switchable; DESIGN.md 9.4 (b)): on the student-visited states of the
  rollout, regression of the student's mean action to the teacher's mean action (the teacher
  loaded with :func:`rlkd.policies.load_policy`, reading its own groups of the same obs dict,
  clamped to [-1, 1] as the env would)::

      L_BC = mean_{b, j} (mu_s(o_b)_j - mu_T(s_b)_j)^2,    L = L_PPO + beta_k L_BC,
      beta_k = bc_coef * bc_decay^k  at iteration k (k = 0, 1, ...);

* ``rl=false``: **DAgger alone**, ``L = L_BC`` (no surrogate, no value loss, the critic left as
  copied, a fixed learning rate). Rollouts still come from the student (its mean action; sampled
  actions with ``dagger_sample=true``), so the labels are on the student's own state
  distribution (DAgger with mixing coefficient 0).

The student run is an ordinary run: its checkpoints hold an
:class:`~rlkd.nn.policy.ActorCritic` whose ``spec()`` names the student's actor groups, so
``rlkd play / eval / export`` and ``load_policy`` take it without the teacher. Resuming it
(``rlkd train --resume``) rebuilds the agent, so the teacher must still be at ``teacher``.

Differences from TacSL's released code (IsaacGymEnvs, tacsl branch): the DAgger term and
``rl=false`` are our additions (reported as their own arms); the warm-up length is ours (the
number of iterations the released config freezes for was not checked here); rl_games' PPO is
replaced by :mod:`rlkd.agents.ppo` (rsl_rl's recipe: adaptive learning rate, clipped value loss).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rlkd.agents.ppo import PPO, PPO_ALIASES, PPOConfig, clipped_surrogate, gaussian_entropy, \
    gaussian_kl, gaussian_log_prob, value_loss
from rlkd.agents.registry import register_agent
from rlkd.core.distributed import allreduce_grads_, allreduce_mean
from rlkd.nn import group_specs
from rlkd.policies import CheckpointError, load_policy, load_training_checkpoint
from rlkd.storage import RolloutStorage, obs_specs

#: State-dict prefixes of the critic side of an ActorCritic (what AACD copies from the teacher).
CRITIC_PREFIXES = ("critic.", "critic_encoder.")


@dataclass
class AACDPPOConfig(PPOConfig):
    """PPO hyperparameters of the AACD student (as ``ppo``'s, but the actor reads what a real
    robot has). ``critic_groups`` and ``critic_hidden`` are replaced by the teacher's."""

    actor_groups: tuple[str, ...] = ("policy", "tactile")
    """Observation groups read by the student's actor (TacSL: proprioception + tactile; the
    ``no_tactile`` arm: ``[policy]``; tactile images: ``[policy, tactile_image]``)."""


@dataclass
class AACDConfig:
    """What AACD adds to PPO (DESIGN.md 9.4)."""

    teacher: str = ""
    """Run directory or *training* checkpoint of the teacher (``rlkd train ENV --agent ppo --ppo
    actor_groups=[critic]``); its critic and critic normalizer are copied. Required."""
    critic_warmup: int = 20
    """Iterations during which the copied critic is frozen (no gradient, no normalizer update)
    before PPO trains it (TacSL's recipe; the length is ours). 0: trained from the start."""
    copy_critic: bool = True
    """Copy the teacher's critic (AACD). False: a fresh critic on the teacher's critic groups
    (with ``bc_coef`` > 0: PPO + DAgger without the critic transfer, an ablation)."""
    bc_coef: float = 0.0
    """Weight ``beta_0`` of the DAgger term (student mean action -> teacher mean action on
    student-visited states; ours). 0: plain AACD."""
    bc_decay: float = 1.0
    """Per-iteration decay of the DAgger weight: ``beta_k = bc_coef * bc_decay**k`` (1: constant;
    e.g. 0.95 fades it out over ~60 iterations, a warm start)."""
    rl: bool = True
    """False: DAgger alone (``L = L_BC``, weight 1, fixed learning rate, critic untouched); the
    student still collects the data."""
    dagger_sample: bool = False
    """With ``rl=false``: collect with sampled actions (the student's std) instead of its mean."""


# ---------------------------------------------------------------------------------- teacher
def _refuse(path: Path | str, why: str) -> CheckpointError:
    return CheckpointError(f"aacd teacher {path}: {why}")


def load_teacher_checkpoint(source: str, env) -> tuple[Path, dict[str, Any]]:
    """``(path, checkpoint)`` of the teacher's training checkpoint, checked against ``env``.

    Raises :class:`CheckpointError` naming why when no teacher is given, the file is missing or
    corrupt, it is an exported policy (no critic), the teacher trained on another env, or its
    critic reads observation groups the env lacks (or gives with another shape), or has more
    than one value head.
    """
    if not source:
        raise CheckpointError("aacd needs a teacher: --teacher RUN (or --aacd teacher=RUN), "
                              "the run directory or training checkpoint of `rlkd train ENV "
                              "--agent ppo --ppo actor_groups=[critic]`")
    try:
        path, ck = load_training_checkpoint(source, device=env.device)
    except CheckpointError as e:
        raise _refuse(source, str(e)) from e
    if ck.get("kind") == "policy":
        raise _refuse(path, "is an exported policy (actor only); aacd copies the teacher's "
                            "critic and its normalizer, so it needs the teacher's run directory "
                            "or training checkpoint")
    theirs = str(ck["config"].get("env", "")).removeprefix("rlkd/")
    ours = str(env.spec_id).removeprefix("rlkd/")
    if theirs != ours:
        raise _refuse(path, f"was trained on {theirs}, this run is on {ours}; the critic "
                            f"values {theirs}'s states")
    spec = ck.get("model")
    if not spec or not spec.get("critic_groups"):
        raise _refuse(path, "holds no critic description (a checkpoint of format 1 or an actor "
                            "without critic); retrain the teacher with this rlkd")
    if int(spec.get("num_heads", 1)) != 1:
        raise _refuse(path, f"its critic has {spec['num_heads']} value heads (an intrinsic-"
                            f"reward agent); aacd needs a one-head extrinsic critic (--agent ppo)")
    check_teacher_groups(path, spec, "critic", env)
    return path, ck


def check_teacher_groups(path: Path, spec: dict[str, Any], side: str, env) -> None:
    """Refuse (:class:`CheckpointError`) a teacher whose ``side`` (``critic`` / ``actor``) reads
    an observation group ``env`` lacks or gives with another shape or dtype."""
    have = group_specs(env.observation_spaces)
    for g in dict.fromkeys(spec[f"{side}_groups"]):
        if g not in have:
            raise _refuse(path, f"its {side} reads observation group {g!r}, which this env "
                                f"lacks (groups: {sorted(have)})")
        if list(spec["specs"][g]["shape"]) != have[g]["shape"] \
                or spec["specs"][g]["dtype"] != have[g]["dtype"]:
            raise _refuse(path, f"its {side} reads {g!r} as {spec['specs'][g]}, this env gives "
                                f"{have[g]} (other env settings?)")


def student_ppo_config(cfg: PPOConfig, teacher_spec: dict[str, Any]) -> PPOConfig:
    """``cfg`` with the teacher's critic layout; settings the actor and critic share in
    :class:`~rlkd.nn.ActorCritic` must equal the teacher's (``ValueError`` naming the fix)."""
    cfg = copy.deepcopy(cfg)
    cfg.critic_groups = tuple(teacher_spec["critic_groups"])
    cfg.critic_hidden = tuple(teacher_spec["critic_hidden"])
    cfg.asymmetric_critic = True
    shared = {"activation": ("activation", cfg.activation),
              "normalize_obs": ("normalize_obs", cfg.normalize_obs),
              "encoder_hidden": ("flat_hidden", list(cfg.encoder_hidden)),
              "image_features": ("image_features", cfg.image_features)}
    for name, (key, ours) in shared.items():
        theirs = teacher_spec.get(key, ours)
        if ours != theirs:
            raise ValueError(f"aacd: --ppo {name}={ours!r}, but the teacher's critic was built "
                             f"with {name}={theirs!r} (actor and critic share it); pass --ppo "
                             f"{name}={theirs!r}")
    return cfg


# ---------------------------------------------------------------------------------- algorithm
class AACD(PPO):
    """PPO student with the teacher's critic (frozen for a warm-up) and an optional DAgger term.

    Args:
        env: the BatchedEnv.
        cfg: the student's :class:`AACDPPOConfig` (critic fields replaced by the teacher's).
        acfg: :class:`AACDConfig`.
        seed: as :class:`~rlkd.agents.ppo.PPO`.
    """

    def __init__(self, env, cfg: PPOConfig, acfg: AACDConfig, seed: int = 0):
        if acfg.critic_warmup < 0 or acfg.bc_coef < 0 or not 0.0 < acfg.bc_decay <= 1.0:
            raise ValueError(f"aacd: critic_warmup >= 0, bc_coef >= 0 and 0 < bc_decay <= 1, "
                             f"got {acfg.critic_warmup}, {acfg.bc_coef}, {acfg.bc_decay}")
        path, ck = load_teacher_checkpoint(acfg.teacher, env)
        super().__init__(env, student_ppo_config(cfg, ck["model"]), seed=seed)
        self.aacd, self.teacher_path = acfg, path
        self.updates_done = 0

        # The teacher's critic and its normalizer, bitwise (the actor stays fresh).
        if acfg.copy_critic:
            critic = {k: v for k, v in ck["agent"]["policy"].items()
                      if k.startswith(CRITIC_PREFIXES)}
            own = {k for k in self.policy.state_dict() if k.startswith(CRITIC_PREFIXES)}
            if set(critic) != own:
                raise _refuse(path, f"its critic's weights do not fit its description "
                                    f"(missing {sorted(own - set(critic))[:3]}, unexpected "
                                    f"{sorted(set(critic) - own)[:3]})")
            self.policy.load_state_dict({**self.policy.state_dict(), **critic})

        # The teacher's actor labels the DAgger term; its groups are stored with the rollout.
        self.teacher = None
        if acfg.bc_coef > 0 or not acfg.rl:
            check_teacher_groups(path, ck["model"], "actor", env)
            self.teacher = load_policy(path, device=self.device)
            extra = [g for g in self.teacher.obs_groups if g not in self.obs_groups]
            if extra:
                self.obs_groups += extra
                self.storage = RolloutStorage(
                    cfg.num_steps, env.num_envs, obs_specs(env.observation_spaces,
                                                           self.obs_groups),
                    env.act_dim, 1, self.device)
        self._freeze_critic(self.critic_frozen)

    # ------------------------------------------------------------------ schedule
    @property
    def critic_frozen(self) -> bool:
        """True during the warm-up of a copied critic (and always with ``rl=false``: DAgger
        never uses the critic)."""
        a = self.aacd
        return not a.rl or (a.copy_critic and self.updates_done < a.critic_warmup)

    @property
    def bc_weight(self) -> float:
        """``beta_k`` of this iteration (1 with ``rl=false``)."""
        if not self.aacd.rl:
            return 1.0
        return self.aacd.bc_coef * self.aacd.bc_decay ** self.updates_done

    def _freeze_critic(self, frozen: bool) -> None:
        for module in (self.policy.critic, self.policy.critic_encoder):
            for p in module.parameters():
                p.requires_grad_(not frozen)

    def teacher_actions(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The teacher's mean actions ``(B, A)`` in [-1, 1] (its own groups of ``obs``)."""
        return self.teacher(obs)

    def dagger_loss(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``L_BC``: mean squared distance of the student's to the teacher's mean action."""
        mu, _ = self.policy.dist_params(obs)
        return F.mse_loss(mu, self.teacher_actions(obs))

    # ------------------------------------------------------------------ rollout
    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """As PPO's, but the critic's normalizer stays frozen during the warm-up, and DAgger
        alone collects with the student's mean action (unless ``dagger_sample``)."""
        pol = self.policy
        pol.actor_encoder.update_normalizers(obs)
        if not self.critic_frozen:
            pol.critic_encoder.update_normalizers(obs)
        mu, sigma = pol.dist_params(obs)
        if self.aacd.rl or self.aacd.dagger_sample:
            noise = torch.randn(mu.shape, generator=self.act_gen, device=mu.device,
                                dtype=mu.dtype)
            actions = mu + sigma * noise
        else:
            actions = mu.clone()
        self.storage.add(obs, actions, gaussian_log_prob(actions, mu, sigma), mu, sigma,
                         pol.value(obs))
        return actions

    # ------------------------------------------------------------------ update
    def update(self) -> dict[str, float]:
        """PPO epochs (critic frozen during the warm-up) plus ``beta_k L_BC``; or, with
        ``rl=false``, epochs of ``L_BC`` alone."""
        cfg, acfg, pol = self.cfg, self.aacd, self.policy
        frozen, beta = self.critic_frozen, self.bc_weight
        sums: dict[str, float] = {}
        n = 0
        for mb in self.storage.minibatches(cfg.num_minibatches, cfg.num_epochs, self.batch_gen):
            obs = mb["obs"]
            mu, sigma = pol.dist_params(obs)
            with torch.no_grad():
                kl = allreduce_mean(gaussian_kl(mb["mu"], mb["sigma"], mu, sigma).mean())
            stats = {"losses/approx_kl": kl.item()}
            loss = mu.new_zeros(())
            if acfg.rl:
                self.adapt_learning_rate(kl)  # PPO's KL-adaptive schedule
                ratio = torch.exp(gaussian_log_prob(mb["actions"], mu, sigma) - mb["log_prob"])
                surrogate = clipped_surrogate(mb["advantages"][:, 0], ratio, cfg)
                # Clipped value loss; no gradient reaches a frozen critic (logged all the same:
                # how well the teacher's values fit the student's returns).
                with torch.set_grad_enabled(not frozen):
                    values = pol.value(obs)
                    v_loss = value_loss(values, mb["values"], mb["returns"], cfg)
                entropy = gaussian_entropy(sigma).mean()
                loss = surrogate + cfg.value_coef * v_loss - cfg.entropy_coef * entropy
                stats.update({"losses/policy_loss": surrogate.item(),
                              "losses/value_loss": v_loss.item(),
                              "losses/entropy": entropy.item(),
                              "losses/clip_fraction":
                                  ((ratio - 1).abs() > cfg.clip_eps).float().mean().item()})
            if self.teacher is not None and beta > 0:
                # DAgger: the teacher labels the states the student visited.
                with torch.no_grad():
                    target = self.teacher_actions(obs)
                bc = F.mse_loss(mu, target)
                loss = loss + beta * bc
                stats["aacd/bc_loss"] = bc.item()

            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for p in pol.parameters() if p.requires_grad]
            allreduce_grads_(params)
            nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            self.optimizer.step()
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
        self.storage.clear()
        self.updates_done += 1
        self._freeze_critic(self.critic_frozen)  # the warm-up may have ended
        out = {k: v / max(n, 1) for k, v in sums.items()}
        out.update({"losses/learning_rate": self.learning_rate,
                    "losses/action_std": float(pol.log_std.detach().exp().mean()),
                    "aacd/bc_coef": beta, "aacd/critic_frozen": float(frozen)})
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "aacd": {"updates_done": self.updates_done}}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """PPO's exact resume plus the warm-up / decay position."""
        super().load_state_dict(sd)
        self.updates_done = int(sd.get("aacd", {}).get("updates_done", 0))
        self._freeze_critic(self.critic_frozen)


def build_aacd(env, cfgs: dict[str, Any], seed: int = 0) -> AACD:
    """The registry's builder: :class:`AACD` from ``cfgs["ppo"]`` and ``cfgs["aacd"]``;
    ``cfgs["ppo"]`` becomes the config actually used (the teacher's critic layout), so the run's
    config.yaml records it."""
    alg = AACD(env, cfgs["ppo"], cfgs["aacd"], seed=seed)
    cfgs["ppo"] = alg.cfg
    return alg


register_agent("aacd", build_aacd, sections={"ppo": AACDPPOConfig, "aacd": AACDConfig},
               aliases=PPO_ALIASES,
               description="AACD: student actor on policy + tactile with the teacher's privileged "
                           "critic (TacSL, Akinola, Xu et al. 2024); --aacd teacher=RUN")
