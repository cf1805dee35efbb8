"""PPO for batched continuous control (Schulman et al. 2017; the rsl_rl / CleanRL recipe).

DESIGN.md section 9.1. The algorithm object follows rsl_rl's shape — ``act`` ->
``process_env_step`` -> ... -> ``compute_returns`` -> ``update`` — and the math stays in this one
file:

* rollout of ``T = num_steps`` steps x ``N`` envs; Gaussian policy ``a ~ N(mu(o), diag(sigma^2))``
  with a state-independent ``log sigma``; actions are clipped to [-1, 1] by the env;
* truncation bootstrapping: when an env times out, ``r_t += gamma * V(final_obs)`` (its episode
  ends in the data, but the time limit is not a terminal state of the MDP);
* GAE: ``delta_t = r_t + gamma V(s_{t+1}) (1 - d_t) - V(s_t)``,
  ``A_t = delta_t + gamma lambda (1 - d_t) A_{t+1}``, ``R_t = A_t + V(s_t)``;
* with an intrinsic-reward module (RND / RDD) a second value head learns the intrinsic return
  (its own ``gamma_int``; non-episodic: ``d_t = 0``) and ``A = c_e A_e + c_i A_i``;
* loss: ``-min(rho A, clip(rho, 1-eps, 1+eps) A) + c_v max((V-R)^2, (V_clip-R)^2)
  - c_H H[pi]`` with ``rho = pi/pi_old`` and advantages normalized per
  minibatch (``advantage_norm_scope=rollout``: once over the whole rollout, as rsl_rl);
* Adam with the KL-adaptive learning rate (desired KL 0.01: lr / 1.5 when KL > 2x, x 1.5 when
  KL < 0.5x), gradient-norm clipping at 1.0;
* running mean/std observation normalization per observation group (frozen in eval mode);
* actor and critic each read a *list* of observation groups (:class:`rlkd.nn.ActorCritic`: MLP
  trunk over per-group encoders, a small CNN for uint8 image groups); by default the actor reads
  ``policy`` and the critic the privileged ``critic`` group (asymmetric).

Registered as ``ppo`` (this file), ``ppo-rnd`` and ``ppo-rdd`` (:mod:`rlkd.agents.rnd`,
:mod:`rlkd.agents.rdd`), with config sections ``ppo`` and ``intrinsic``.

Data-parallel training (torchrun) all-reduces gradients, normalizer statistics and the KL that
drives the learning rate, so every rank holds identical weights after each update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rlkd.agents.registry import Algorithm, register_agent
from rlkd.core.distributed import allreduce_grads_, allreduce_mean
from rlkd.nn import ActorCritic, group_specs
from rlkd.storage import RolloutStorage, obs_specs


@dataclass
class PPOConfig:
    """PPO hyperparameters (defaults: DESIGN.md 9.1, i.e. rsl_rl's continuous-control values)."""

    num_steps: int = 24
    """Rollout length per env per iteration."""
    num_epochs: int = 5
    """Passes over each rollout."""
    num_minibatches: int = 4
    """Minibatches per pass (each holds ``num_steps * num_envs / num_minibatches`` samples)."""
    gamma: float = 0.99
    """Discount of the extrinsic return (an intrinsic module may override it, see its config)."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_eps: float = 0.2
    """Clip range of the probability ratio (and of the value change when ``clip_value``)."""
    clip_value: bool = True
    """Clipped value loss."""
    value_coef: float = 1.0
    """Weight of the value loss."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus (DESIGN.md allows 0.0-0.01; 0.0 as CleanRL's continuous PPO:
    with 2-D actions clipped to [-1, 1] a bonus let the action std grow past 1 on the AGV)."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip."""
    learning_rate: float = 1e-3
    """Initial Adam learning rate."""
    lr_schedule: str = "adaptive"
    """``adaptive`` (KL-driven, see ``desired_kl``) or ``fixed``."""
    desired_kl: float = 0.01
    """Target KL between the old and new policy for the adaptive schedule."""
    normalize_advantages: bool = True
    """Normalize advantages to zero mean, unit std (over ``advantage_norm_scope``)."""
    advantage_norm_scope: str = "minibatch"
    """``minibatch`` (each minibatch's own statistics: CleanRL, SB3) or ``rollout`` (the whole
    rollout's, once before the epochs: rsl_rl's default)."""
    normalize_obs: bool = True
    """Running mean/std normalization of the actor's and critic's inputs."""
    actor_hidden: tuple[int, ...] = (256, 128, 64)
    """Hidden layer widths of the actor."""
    critic_hidden: tuple[int, ...] = (256, 128, 64)
    """Hidden layer widths of the critic."""
    activation: str = "elu"
    """Hidden activation (elu, tanh, relu, leaky_relu, silu)."""
    init_noise_std: float = 1.0
    """Initial action std (``exp(log_std)``)."""
    weight_init: str = "orthogonal"
    """Trunk initialisation: ``orthogonal`` (gain sqrt 2, actor head 0.01, critic head 1: CleanRL,
    SB3) or ``torch_default`` (``nn.Linear``'s own, as rsl_rl)."""
    actor_groups: tuple[str, ...] = ("policy",)
    """Observation groups read by the actor, in order (e.g. ``[proprio, tactile]``; a teacher on
    privileged state: ``[critic]``). ``actor_group=NAME`` of older runs means ``[NAME]``."""
    critic_groups: tuple[str, ...] = ("critic",)
    """Observation groups read by the critic (asymmetric); it falls back to ``actor_groups`` when
    the env lacks one of them or ``asymmetric_critic`` is off."""
    asymmetric_critic: bool = True
    """Let the critic read ``critic_groups`` (privileged state) when the env provides them."""
    encoder_hidden: tuple[int, ...] = ()
    """Per-flat-group MLP before the trunks (ours; empty: the normalized group itself, the
    classic single-group PPO input)."""
    image_features: int = 64
    """Output size of the small CNN of each uint8 image group (ours)."""
    critic_warmup_updates: int = 0
    """Updates at the start of training (one per iteration) that fit the value function alone:
    no surrogate or entropy term (the actor and its std do not move) and no learning-rate
    adaptation. For a fresh critic under a trained actor: ``init_from`` an exported policy or a
    shipped expert, which holds no critic (ours; rsl_rl and SB3 have no such switch)."""
    update_compile: bool = False
    """``torch.compile`` the minibatch forward and loss (and so, through AOTAutograd, their
    backward): elementwise ops fused, fewer small kernels. One compile per run (tens of seconds
    on a CPU), paid back over long runs; the numbers match eager to float rounding. Ours."""
    update_precision: str = "fp32"
    """Precision of the update's forward and backward passes: ``fp32``, or ``bf16`` (autocast:
    matmuls in bfloat16, on AMX / tensor cores; losses, ratios and the optimizer stay fp32;
    rollout inference stays fp32). Ours; see README "PPO parity" for its effect on learning."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes saved with the config (not read by the algorithm)."""

    def __post_init__(self):
        # A misspelt choice would otherwise fall through to the other branch silently.
        for name, choices in (("lr_schedule", ("adaptive", "fixed")),
                              ("advantage_norm_scope", ("minibatch", "rollout")),
                              ("weight_init", ("orthogonal", "torch_default")),
                              ("update_precision", ("fp32", "bf16"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"ppo {name}={getattr(self, name)!r}: choose one of "
                                 f"{', '.join(choices)}")
        if int(self.critic_warmup_updates) != self.critic_warmup_updates \
                or self.critic_warmup_updates < 0:
            raise ValueError(f"ppo critic_warmup_updates={self.critic_warmup_updates!r}: a "
                             f"non-negative integer")


def gaussian_log_prob(a: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Sum over action dims of ``log N(a; mu, sigma^2)``: ``(B, A) -> (B,)``."""
    return (-((a - mu) ** 2) / (2 * sigma ** 2) - sigma.log()
            - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian_entropy(sigma: torch.Tensor) -> torch.Tensor:
    """``(B, A) -> (B,)`` entropy of a diagonal Gaussian."""
    return (0.5 + 0.5 * math.log(2 * math.pi) + sigma.log()).sum(-1)


def gaussian_kl(mu0, sigma0, mu1, sigma1) -> torch.Tensor:
    """``KL(N0 || N1)`` summed over action dims, ``(B,)``."""
    return (torch.log(sigma1 / sigma0)
            + (sigma0 ** 2 + (mu0 - mu1) ** 2) / (2 * sigma1 ** 2) - 0.5).sum(-1)


def clipped_surrogate(adv: torch.Tensor, ratio: torch.Tensor, cfg: PPOConfig) -> torch.Tensor:
    """PPO's clipped surrogate loss ``mean max(-A rho, -A clip(rho, 1 - eps, 1 + eps))``,
    ``(B,) -> ()``, with ``A`` normalized per minibatch when ``cfg.normalize_advantages`` and
    ``cfg.advantage_norm_scope == "minibatch"`` (the ``rollout`` scope is applied by the caller)."""
    if cfg.normalize_advantages and cfg.advantage_norm_scope == "minibatch":
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps)).mean()


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               cfg: PPOConfig) -> torch.Tensor:
    """Value loss summed over heads, ``(B, H) -> ()``: ``mean max((V - R)^2, (V_clip - R)^2)``
    with ``V_clip = V_old + clip(V - V_old, -eps, eps)`` when ``cfg.clip_value``, else the MSE."""
    if cfg.clip_value:
        v_clip = old_values + (values - old_values).clamp(-cfg.clip_eps, cfg.clip_eps)
        return torch.max((values - returns) ** 2, (v_clip - returns) ** 2).mean(0).sum()
    return ((values - returns) ** 2).mean(0).sum()


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, last_values: torch.Tensor,
                dones: torch.Tensor, gammas: torch.Tensor, lam: float,
                episodic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation for ``H`` reward streams at once.

    Args:
        rewards, values: ``(T, N, H)``; ``last_values``: ``(N, H)`` = ``V(s_T)``.
        dones: ``(T, N)``, 1 where the episode ended after step ``t`` (the next obs is a reset).
        gammas: ``(H,)`` discounts; ``lam``: GAE lambda.
        episodic: ``(H,)`` bool; a non-episodic stream ignores ``dones`` (its return runs on
            across resets, as RND's intrinsic return).

    Returns:
        ``(advantages, returns)``, both ``(T, N, H)``, ``returns = advantages + values``.
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(last_values)
    next_value = last_values
    ep = episodic.to(rewards.dtype)
    for t in reversed(range(T)):
        # non-terminal mask per stream: (N, H)
        nonterm = 1.0 - dones[t][:, None] * ep
        delta = rewards[t] + gammas * next_value * nonterm - values[t]
        next_adv = delta + gammas * lam * nonterm * next_adv
        adv[t] = next_adv
        next_value = values[t]
    return adv, adv + values


class PPO(Algorithm):
    """The PPO algorithm over a BatchedEnv's observation dict.

    Args:
        env: the BatchedEnv (read for spaces, ``num_envs`` and ``device``).
        cfg: :class:`PPOConfig`.
        intrinsic: optional intrinsic-reward module (:class:`rlkd.agents.rnd.RND` or
            :class:`rlkd.agents.rdd.RDD`); adds a second value head and its reward stream.
        seed: seeds the action-noise and minibatch generators (use ``seed + rank``).
    """

    def __init__(self, env, cfg: PPOConfig, intrinsic: nn.Module | None = None, seed: int = 0):
        self.cfg, self.device, self.num_envs = cfg, env.device, env.num_envs
        spaces = env.observation_spaces
        self.actor_groups = list(cfg.actor_groups)
        missing = [g for g in self.actor_groups if g not in spaces]
        if missing or not self.actor_groups:
            raise KeyError(f"actor_groups {list(cfg.actor_groups)}: {missing or 'empty'} not "
                           f"observation groups of the env ({sorted(spaces)})")
        critic = list(cfg.critic_groups)
        self.critic_groups = (critic if cfg.asymmetric_critic and critic
                              and all(g in spaces for g in critic) else list(self.actor_groups))
        self.intrinsic = intrinsic
        H = 2 if intrinsic is not None else 1
        self.num_heads = H
        self.policy = ActorCritic(
            group_specs(spaces), self.actor_groups, self.critic_groups, env.act_dim, H,
            actor_hidden=cfg.actor_hidden, critic_hidden=cfg.critic_hidden,
            activation=cfg.activation, init_noise_std=cfg.init_noise_std,
            normalize_obs=cfg.normalize_obs, flat_hidden=cfg.encoder_hidden,
            image_features=cfg.image_features).to(self.device)
        if cfg.weight_init == "torch_default":
            for m in [*self.policy.actor.modules(), *self.policy.critic.modules()]:
                if isinstance(m, nn.Linear):
                    m.reset_parameters()
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.learning_rate)
        self.learning_rate = cfg.learning_rate
        gamma_ext = cfg.gamma
        if intrinsic is not None and getattr(intrinsic.cfg, "gamma_ext", None) is not None:
            gamma_ext = intrinsic.cfg.gamma_ext
        self.gamma_ext = gamma_ext
        gammas = [gamma_ext] + ([intrinsic.cfg.gamma_int] if intrinsic is not None else [])
        self.gammas = torch.tensor(gammas, dtype=torch.float32, device=self.device)
        self.episodic = torch.tensor(
            [True] + ([intrinsic.cfg.episodic] if intrinsic is not None else []),
            device=self.device)
        self.obs_groups = list(dict.fromkeys(self.actor_groups + self.critic_groups))
        intr_shape = None
        if intrinsic is not None:
            if intrinsic.obs_group not in spaces:
                raise KeyError(f"intrinsic obs_group {intrinsic.obs_group!r} is not an "
                               f"observation group of the env ({sorted(spaces)})")
            intr_shape = tuple(spaces[intrinsic.obs_group].shape)
            if len(intr_shape) != 1:
                raise ValueError(f"the intrinsic module's MLPs need a flat group; "
                                 f"{intrinsic.obs_group!r} has shape {intr_shape}")
        self.storage = RolloutStorage(cfg.num_steps, env.num_envs,
                                      obs_specs(spaces, self.obs_groups), env.act_dim, H,
                                      self.device, intr_shape)
        self.act_gen = torch.Generator(device=self.device).manual_seed(seed)
        self.batch_gen = torch.Generator(device="cpu").manual_seed(seed + 7919)
        self.iteration_stats: dict[str, float] = {}
        #: Updates done so far (``critic_warmup_updates`` counts against it).
        self.num_updates = 0
        self._loss_terms = (torch.compile(self._minibatch_terms, dynamic=False)
                            if cfg.update_compile else self._minibatch_terms)

    @property
    def num_steps_per_env(self) -> int:
        return self.cfg.num_steps

    def synced_modules(self) -> list[nn.Module]:
        return [self.policy] + ([self.intrinsic] if self.intrinsic is not None else [])

    # ------------------------------------------------------------------ rollout
    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sample actions ``(N, A)`` for the current obs and record the step's agent data."""
        self.policy.update_normalizers(obs)
        mu, sigma = self.policy.dist_params(obs)
        noise = torch.randn(mu.shape, generator=self.act_gen, device=mu.device, dtype=mu.dtype)
        actions = mu + sigma * noise
        values = self.policy.value(obs)
        self.storage.add(obs, actions, gaussian_log_prob(actions, mu, sigma), mu, sigma, values)
        return actions

    @torch.no_grad()
    def process_env_step(self, obs: dict[str, torch.Tensor], reward: torch.Tensor,
                         terminated: torch.Tensor, truncated: torch.Tensor,
                         info: dict[str, Any]) -> None:
        """Record the env's answer to :meth:`act`; bootstrap time-outs from ``final_obs``."""
        reward = reward.to(torch.float32).clone()
        done = terminated | truncated
        intr_next = None
        if self.intrinsic is not None:
            intr_next = obs[self.intrinsic.obs_group]
        if "final_obs" in info:
            ids = info["episode"]["env_ids"]
            final = info["final_obs"]
            timed_out = truncated[ids]
            if bool(timed_out.any()):
                v_final = self.policy.value({g: final[g][timed_out]
                                             for g in self.critic_groups})[:, 0]
                reward[ids[timed_out]] += self.gamma_ext * v_final
            if intr_next is not None:  # s' of the ended envs is their final obs, not the reset
                intr_next = intr_next.clone()
                intr_next[ids] = final[self.intrinsic.obs_group]
        self.storage.add_env(reward, done.to(torch.float32), intr_next)

    @torch.no_grad()
    def compute_returns(self, last_obs: dict[str, torch.Tensor]) -> None:
        """Fill intrinsic rewards (if any), then GAE advantages and returns of the rollout."""
        st = self.storage
        if self.intrinsic is not None:
            raw = self.intrinsic.rollout_rewards(st.intr_obs)  # (T, N), updates its normalizers
            st.rewards[..., 1] = self.intrinsic.normalize_rewards(raw)
            self.iteration_stats["intrinsic/reward_raw"] = float(raw.mean())
            self.iteration_stats["intrinsic/reward_norm"] = float(st.rewards[..., 1].mean())
        last_values = self.policy.value(last_obs)
        st.advantages, st.returns = compute_gae(st.rewards, st.values, last_values, st.dones,
                                                self.gammas, self.cfg.gae_lambda, self.episodic)

    # ------------------------------------------------------------------ update
    @torch.no_grad()
    def adapt_learning_rate(self, kl: torch.Tensor) -> None:
        """The KL-adaptive schedule: lr / 1.5 when ``kl > 2 desired_kl``, x 1.5 when below half,
        within [1e-5, 1e-2] (a no-op for ``lr_schedule="fixed"``)."""
        cfg = self.cfg
        if cfg.lr_schedule != "adaptive":
            return
        if kl > 2.0 * cfg.desired_kl:
            self.learning_rate = max(1e-5, self.learning_rate / 1.5)
        elif 0.0 < kl < 0.5 * cfg.desired_kl:
            self.learning_rate = min(1e-2, self.learning_rate * 1.5)
        for g in self.optimizer.param_groups:
            g["lr"] = self.learning_rate

    def _combined_advantage(self, adv: torch.Tensor) -> torch.Tensor:
        if self.intrinsic is None:
            return adv[:, 0]
        c = self.intrinsic.cfg
        return c.ext_coef * adv[:, 0] + self.intrinsic.int_coef * adv[:, 1]

    def _minibatch_terms(self, mb: dict[str, Any], adv: torch.Tensor
                         ) -> tuple[torch.Tensor, ...]:
        """One minibatch's loss terms from a forward pass: ``(surrogate, value loss, entropy,
        KL(old || new) (no gradient), clip fraction (no gradient))``, all ``()``; ``adv (B,)``
        the (combined, scope-normalized) advantages. Compiled by ``update_compile``."""
        cfg, pol = self.cfg, self.policy
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=cfg.update_precision == "bf16"):
            mu, sigma = pol.dist_params(mb["obs"])
            values = pol.value(mb["obs"])
        mu, sigma, values = mu.float(), sigma.float(), values.float()
        kl = gaussian_kl(mb["mu"], mb["sigma"], mu.detach(), sigma.detach()).mean()
        ratio = torch.exp(gaussian_log_prob(mb["actions"], mu, sigma) - mb["log_prob"])
        clip_frac = ((ratio.detach() - 1).abs() > cfg.clip_eps).float().mean()
        return (clipped_surrogate(adv, ratio, cfg), value_loss(values, mb["values"],
                                                               mb["returns"], cfg),
                gaussian_entropy(sigma).mean(), kl, clip_frac)

    def update(self) -> dict[str, float]:
        """PPO epochs over the stored rollout; returns mean losses and stats of the update."""
        cfg, pol = self.cfg, self.policy
        sums: dict[str, float] = {}
        n = 0
        # Tensors, not floats: a compiled loss would recompile on every new float.
        adv_mean, adv_std = torch.zeros((), device=self.device), torch.ones((), device=self.device)
        warmup = self.num_updates < cfg.critic_warmup_updates
        if cfg.normalize_advantages and cfg.advantage_norm_scope == "rollout":
            with torch.no_grad():
                whole = self._combined_advantage(self.storage.advantages.flatten(0, 1))
                # Every rank normalizes with the same statistics (rsl_rl's rollout scope).
                adv_mean = allreduce_mean(whole.mean())
                adv_std = allreduce_mean(whole.pow(2).mean()).sub(adv_mean ** 2).clamp_min(0).sqrt()
                adv_std = adv_std + 1e-8
        for mb in self.storage.minibatches(cfg.num_minibatches, cfg.num_epochs, self.batch_gen):
            adv = (self._combined_advantage(mb["advantages"]) - adv_mean) / adv_std
            surrogate, v_loss, entropy, kl, clip_frac = self._loss_terms(mb, adv)
            # KL-adaptive learning rate (rsl_rl): identical on every rank via the mean KL.
            kl = allreduce_mean(kl)
            if not warmup:
                self.adapt_learning_rate(kl)
            loss = surrogate + cfg.value_coef * v_loss - cfg.entropy_coef * entropy
            if warmup:  # value only: the actor's parameters get no gradient
                loss = cfg.value_coef * v_loss

            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            params = list(pol.parameters())
            allreduce_grads_(params)
            nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            self.optimizer.step()

            stats = {"losses/policy_loss": surrogate.item(), "losses/value_loss": v_loss.item(),
                     "losses/entropy": entropy.item(), "losses/approx_kl": kl.item(),
                     "losses/clip_fraction": clip_frac.item()}
            if self.intrinsic is not None:
                stats["intrinsic/predictor_loss"] = self.intrinsic.train_step(mb["intr_obs"])
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
        self.storage.clear()
        self.num_updates += 1
        out = {k: v / max(n, 1) for k, v in sums.items()}
        out["losses/critic_warmup"] = float(warmup)
        out["losses/learning_rate"] = self.learning_rate
        out["losses/action_std"] = float(pol.log_std.detach().exp().mean())
        out.update(self.iteration_stats)
        self.iteration_stats = {}
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        sd = {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
              "learning_rate": self.learning_rate, "act_gen": self.act_gen.get_state(),
              "batch_gen": self.batch_gen.get_state(), "num_updates": self.num_updates}
        if self.intrinsic is not None:
            sd["intrinsic"] = self.intrinsic.full_state_dict()
        return sd

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore weights, normalizers, optimizer, learning rate and generators (exact resume;
        the learning rate is restored too, unlike rsl_rl #221)."""
        self.policy.load_state_dict(sd["policy"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.learning_rate = float(sd["learning_rate"])
        for g in self.optimizer.param_groups:
            g["lr"] = self.learning_rate
        self.act_gen.set_state(sd["act_gen"])
        self.batch_gen.set_state(sd["batch_gen"])
        # Checkpoints before the counter: their runs had no warm-up, so any count past it works.
        self.num_updates = int(sd.get("num_updates", self.cfg.critic_warmup_updates))
        if self.intrinsic is not None:
            if "intrinsic" not in sd:
                raise KeyError("checkpoint has no intrinsic-module state but the agent uses one")
            self.intrinsic.load_full_state_dict(sd["intrinsic"])


def build_ppo(env, cfgs: dict[str, Any], seed: int = 0, intrinsic_cls: type | None = None) -> PPO:
    """The registry's builder: PPO from ``cfgs["ppo"]``, with ``intrinsic_cls`` (RND / RDD)
    built from ``cfgs["intrinsic"]`` when given."""
    intrinsic = None
    if intrinsic_cls is not None:
        icfg = cfgs["intrinsic"]
        if icfg.obs_group not in env.observation_spaces:
            icfg.obs_group = "policy"
        dim = env.observation_spaces[icfg.obs_group].shape[0]
        intrinsic = intrinsic_cls(dim, env.num_envs, icfg, device=env.device, seed=seed)
    return PPO(env, cfgs["ppo"], intrinsic=intrinsic, seed=seed)


def register_intrinsic_agent(name: str, intrinsic_cls: type, config_cls: type,
                             description: str) -> None:
    """Register ``name`` as PPO with the intrinsic-reward module ``intrinsic_cls`` (sections
    ``ppo`` and ``intrinsic``); used by :mod:`rlkd.agents.rnd` and :mod:`rlkd.agents.rdd`."""
    from functools import partial

    register_agent(name, partial(build_ppo, intrinsic_cls=intrinsic_cls),
                   sections={"ppo": PPOConfig, "intrinsic": config_cls}, aliases=PPO_ALIASES,
                   description=description)


#: Renamed keys of PPOConfig that old runs' configs still use.
PPO_ALIASES = {"ppo": {"actor_group": "actor_groups", "critic_group": "critic_groups"}}

register_agent("ppo", build_ppo, sections={"ppo": PPOConfig}, aliases=PPO_ALIASES,
               description="PPO (Schulman et al. 2017; rsl_rl's continuous-control recipe)")
