"""MAP-Elites, PGA-MAP-Elites and DCG-MAP-Elites in one file (DESIGN.md section 9.6).

After "MAP-Elites with Descriptor-Conditioned Gradients and Archive Distillation into a Single
Policy" (Faldor, Chalumeau, Flageat, Cully, GECCO 2023); defaults from QDax's ``DCGMEConfig``.

One iteration (``batch_size`` offspring, evaluated as one env batch by
:func:`rlkd.qd.evaluate_population`)::

    GA   x' = x1 + iso_sigma N(0, I) + line_sigma (x2 - x1) N(0, 1)      (x1, x2 from the archive)
    PG   parent x with descriptor d: n Adam steps on -Q(s, pi_x(s) | d)   (pga-me: -Q(s, pi_x(s)))
    AI   (dcg-me) actor pi(s, d) with d folded into its first-layer bias, d from the archive
    greedy actor (pga-me): the TD3 actor itself, one offspring
    -> evaluate -> archive.add -> replay (desc d observed, desc' the offspring's target)
    -> critic (TD3): r' = S(d, d') r, S = exp(-|d - d'| / L); actor pi(s, d') on Q(s, . | d')

All randomness comes from one ``torch.Generator`` (saved in :meth:`QDAlgorithm.state_dict`),
the evaluations are deterministic (:mod:`rlkd.qd.tasks`), so a run is reproducible on CPU for a
seed and a resumed run continues the uninterrupted one exactly.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch
from torch import nn

from rlkd.nn.mlp import mlp
from rlkd.qd.archive import Archive
from rlkd.qd.population import PolicyShape, evaluate_population, population_forward


@dataclass
class DCGMEConfig:
    """Every hyperparameter of the MAP-Elites family (QDax ``DCGMEConfig`` defaults unless
    marked). ``presets(algo, cpu=True)`` builds the three algorithms and scales the step counts
    for CPU runs (``CPU_STEPS``); the values below are the paper's / QDax's."""

    algo: str = "dcg-me"
    """``me`` (GA only), ``pga-me`` (GA + PG + greedy actor) or ``dcg-me``."""
    batch_size: int = 256
    """Offspring evaluated per iteration (one env batch)."""
    ga_fraction: float = 0.5
    """Share of the batch from the GA emitter (QDax DCG-ME: 128 of 256; ``me``: 1.0)."""
    ai_fraction: float = 0.25
    """Share from actor injection (DCG-ME: 64 of 256; the rest are PG offspring)."""
    greedy_actor: bool = False
    """Inject the unconditioned TD3 actor as one offspring per iteration (PGA-ME)."""
    conditioned: bool = True
    """Descriptor-conditioned critic Q(s, a | d') and actor pi(s, d') (DCG-ME); False: TD3 on
    the fitness reward alone (PGA-ME)."""
    iso_sigma: float = 0.005
    """GA isotropic noise, parameter units."""
    line_sigma: float = 0.05
    """GA line noise along x2 - x1."""
    cells: tuple[int, ...] = (32, 32)
    """Grid cells per descriptor dimension (ribs GridArchive over [-1, 1]^n)."""
    policy_hidden: tuple[int, ...] = (64, 64)
    """Population MLP widths (ours: QDax uses (128, 128); 6.9k parameters keep CPU evals fast)."""
    policy_activation: str = "relu"
    """Hidden activation of the population and the actor (tanh output)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Twin critic widths."""
    lengthscale: float = 0.1
    """L of S(d, d') = exp(-|d - d'| / L) on normalized descriptors (QDax 0.1; the GECCO
    repository's yaml uses 0.008)."""
    num_critic_training_steps: int = 3000
    """Critic (and actor) TD3 steps per iteration (QDax 3000; GECCO yaml 300; CPU preset 300)."""
    num_pg_training_steps: int = 150
    """Adam steps per PG offspring (QDax 150; CPU preset 50)."""
    transitions_batch_size: int = 100
    """Transitions per TD3 / PG step."""
    replay_size: int = 1_000_000
    """Replay capacity in transitions (QDax 1e6; CPU preset 100k: it is saved in archive.pt)."""
    discount: float = 0.99
    reward_scaling: float = 1.0
    critic_lr: float = 3e-4
    actor_lr: float = 3e-4
    policy_lr: float = 1e-3
    """Adam learning rate of the PG variation of each offspring."""
    policy_noise: float = 0.2
    """TD3 target policy smoothing noise (action units)."""
    noise_clip: float = 0.5
    soft_tau: float = 0.005
    policy_delay: int = 2
    """Actor update every ``policy_delay`` critic steps."""
    robust_noise: float = 0.0
    """Ours, off by default (robust MAP-Elites): > 0 evaluates every offspring ``robust_samples``
    more times with Gaussian action noise of this std (action units) and keeps the *worst*
    fitness (the clean rollout's descriptor), so an elite whose path only just clears an
    obstacle loses to one that clears it under perturbation; the archive then distils with
    less descriptor error. Costs ``robust_samples`` extra batched evaluations per iteration
    (``qd/robust_evaluations``; ``evaluations`` counts the offspring)."""
    robust_samples: int = 1
    """Noisy re-evaluations per offspring when ``robust_noise`` > 0."""

    def counts(self) -> tuple[int, int, int, int]:
        """``(ga, pg, ai, greedy)`` offspring per iteration, summing to ``batch_size``."""
        ga = int(round(self.batch_size * self.ga_fraction))
        ai = int(round(self.batch_size * self.ai_fraction)) if self.conditioned else 0
        greedy = int(self.greedy_actor and ga < self.batch_size)
        return ga, self.batch_size - ga - ai - greedy, ai, greedy


#: Step counts of the CPU presets (2 cores: an iteration of QDax's 3000 critic steps alone
#: would take ~10 s); ``presets(..., cpu=False)`` keeps the paper's.
CPU_STEPS = {"num_critic_training_steps": 300, "num_pg_training_steps": 50,
             "replay_size": 100_000}
ALGOS = {
    "me": dict(algo="me", ga_fraction=1.0, ai_fraction=0.0, conditioned=False),
    "pga-me": dict(algo="pga-me", ga_fraction=0.5, ai_fraction=0.0, conditioned=False,
                   greedy_actor=True),
    "dcg-me": dict(algo="dcg-me", ga_fraction=0.5, ai_fraction=0.25, conditioned=True),
}


def preset(algo: str, cpu: bool = True, **overrides) -> DCGMEConfig:
    """The config of ``algo`` (one of :data:`ALGOS`), CPU step counts unless ``cpu=False``."""
    if algo not in ALGOS:
        raise KeyError(f"unknown QD algorithm {algo!r}; choose from {', '.join(ALGOS)}")
    cfg = DCGMEConfig(**{**ALGOS[algo], **(CPU_STEPS if cpu else {})})
    names = {f.name for f in dataclasses.fields(DCGMEConfig)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise KeyError(f"unknown QD config fields {bad}; known: {', '.join(sorted(names))}")
    cfg = dataclasses.replace(cfg, **overrides)
    if not cfg.robust_noise >= 0 or int(cfg.robust_samples) != cfg.robust_samples \
            or cfg.robust_samples < 1:
        raise ValueError(f"robust_noise must be >= 0 and robust_samples an integer >= 1, got "
                         f"{cfg.robust_noise!r} / {cfg.robust_samples!r}")
    return cfg


def similarity(d: torch.Tensor, d_prime: torch.Tensor, lengthscale: float) -> torch.Tensor:
    """``S(d, d') = exp(-||d - d'|| / L)``: ``(..., n) x (..., n) -> (...)``."""
    return torch.exp(-(d - d_prime).norm(dim=-1) / lengthscale)


class FlatActor(nn.Module):
    """The TD3 actor pi(s[, d]) stored in the population's flat layout (one row), so it *is* a
    genotype: unconditioned it is injected as is; conditioned, :meth:`fold` turns pi(., d) into
    an unconditioned policy by moving ``d`` into the first layer's bias (QDax's
    ``_compute_equivalent_kernel_bias_with_desc``): ``W0 [s; d] + b0 = W0[:O] s + (b0 + W0[O:] d)``.
    """

    def __init__(self, policy: PolicyShape, desc_dim: int, generator: torch.Generator):
        super().__init__()
        self.policy, self.desc_dim = policy, desc_dim
        self.shape = dataclasses.replace(policy, obs_dim=policy.obs_dim + desc_dim)
        self.flat = nn.Parameter(self.shape.init(1, generator))

    def forward(self, obs: torch.Tensor, desc: torch.Tensor | None = None) -> torch.Tensor:
        """``obs (B, O)``, ``desc (B, n_desc)`` normalized -> actions ``(B, A)``."""
        x = obs if self.desc_dim == 0 else torch.cat([obs, desc], dim=-1)
        return population_forward(self.shape, self.flat, x[None])[0]

    @torch.no_grad()
    def fold(self, desc: torch.Tensor) -> torch.Tensor:
        """``desc (n, n_desc)`` normalized -> ``(n, D)`` genotypes of pi(., d) (unconditioned
        policies of the population's shape); without conditioning ``n`` copies of the actor."""
        n, O = desc.shape[0], self.policy.obs_dim
        layers = [(w.expand(n, -1, -1), b.expand(n, -1)) for w, b in self.shape.unflatten(self.flat)]
        w0, b0 = layers[0]
        if self.desc_dim:
            layers[0] = (w0[:, :O], b0 + torch.bmm(desc[:, None], w0[:, O:])[:, 0])
        return self.policy.flatten(layers)


class TwinCritic(nn.Module):
    """Q1, Q2 (s, a[, d]) -> ``(..., 1)`` each (TD3's clipped double Q)."""

    def __init__(self, obs_dim: int, act_dim: int, desc_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim + desc_dim, hidden, 1, activation="relu")
        self.q2 = mlp(obs_dim + act_dim + desc_dim, hidden, 1, activation="relu")

    def forward(self, obs, act, desc=None):
        x = torch.cat([obs, act] + ([desc] if desc is not None else []), dim=-1)
        return self.q1(x), self.q2(x)


class Replay:
    """Ring buffer of transitions ``obs, next_obs (O,), actions (A,), rewards, dones, desc,
    desc_prime (n_desc,)`` (descriptors normalized), on ``device``."""

    FIELDS = ("obs", "next_obs", "actions", "rewards", "dones", "desc", "desc_prime")

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, desc_dim: int, device="cpu"):
        dims = {"obs": obs_dim, "next_obs": obs_dim, "actions": act_dim, "rewards": 0,
                "dones": 0, "desc": desc_dim, "desc_prime": desc_dim}
        self.capacity, self.ptr, self.size = int(capacity), 0, 0
        self.data = {k: torch.zeros((self.capacity, d) if d else (self.capacity,), device=device)
                     for k, d in dims.items()}

    def insert(self, batch: dict[str, torch.Tensor]) -> None:
        n = batch["obs"].shape[0]
        if n > self.capacity:  # keep the newest
            batch, n = {k: v[-self.capacity:] for k, v in batch.items()}, self.capacity
        idx = (self.ptr + torch.arange(n, device=self.data["obs"].device)) % self.capacity
        for k in self.FIELDS:
            self.data[k][idx] = batch[k].to(self.data[k])
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(self.size, (n,), generator=generator).to(self.data["obs"].device)
        return {k: v[idx] for k, v in self.data.items()}

    def state_dict(self) -> dict:
        return {"ptr": self.ptr, "size": self.size,
                "data": {k: v[:self.size].cpu().clone() for k, v in self.data.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.ptr, self.size = int(state["ptr"]), int(state["size"])
        for k, v in state["data"].items():
            self.data[k][:self.size] = v.to(self.data[k])


class QDAlgorithm:
    """The MAP-Elites loop of ``cfg.algo`` on ``task`` (a :class:`rlkd.qd.QDTask`).

    Args:
        task: the QD task; cfg: :class:`DCGMEConfig`; seed: generator seed; device: torch device
            of envs, networks and replay; env_overrides: extra env config (tests shorten runs).
    """

    def __init__(self, task, cfg: DCGMEConfig, seed: int = 0, device="cpu", **env_overrides):
        self.task, self.cfg, self.device = task, cfg, torch.device(device)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.env = task.make_env(cfg.batch_size, device=self.device, **env_overrides)
        obs_dim, act_dim = self.env.observation_spaces["policy"].shape[0], self.env.act_dim
        self.shape = PolicyShape(obs_dim, tuple(cfg.policy_hidden), act_dim, cfg.policy_activation)
        self.archive = Archive(self.shape.num_params, cfg.cells, task.fitness_low)
        if len(cfg.cells) != task.descriptor_dim:
            raise ValueError(f"cells {cfg.cells} has {len(cfg.cells)} dimensions; task "
                             f"{task.id} has {task.descriptor_dim} descriptors")
        self.iteration, self.evaluations, self.robust_evaluations = 0, 0, 0
        self.seed = int(seed)
        ga, pg, ai, greedy = cfg.counts()
        self.uses_critic = pg + ai + greedy > 0
        k = task.descriptor_dim if cfg.conditioned else 0
        self.desc_dim = k
        self.actor = FlatActor(self.shape, k, self.gen).to(self.device)
        self.actor_target = FlatActor(self.shape, k, self.gen).to(self.device)
        self.actor_target.load_state_dict(self.actor.state_dict())
        with torch.random.fork_rng(devices=[]):  # nn.Linear's init draws the global RNG
            torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=self.gen)))
            self.critic = TwinCritic(obs_dim, act_dim, k, tuple(cfg.critic_hidden)).to(self.device)
        self.critic_target = TwinCritic(obs_dim, act_dim, k, tuple(cfg.critic_hidden)).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.replay = Replay(cfg.replay_size if self.uses_critic else 1, obs_dim, act_dim,
                             task.descriptor_dim, self.device)
        self.td3_steps = 0

    # ------------------------------------------------------------------ one iteration
    def step(self) -> dict[str, float]:
        """One iteration (the first evaluates ``batch_size`` random policies); returns metrics."""
        c, t0 = self.cfg, time.perf_counter()
        times: dict[str, float] = {}
        if self.iteration == 0 and len(self.archive) == 0:
            genomes = self.shape.init(c.batch_size, self.gen, self.device)
            target, kinds = None, torch.zeros(c.batch_size, dtype=torch.int64)
        else:
            genomes, target, kinds = self._emit(times)
        t = time.perf_counter()
        res = evaluate_population(self.task, self.env, self.shape, genomes,
                                  keep_transitions=self.uses_critic)
        fitness = self._robust_fitness(genomes, res.fitness)
        times["time/eval_s"] = time.perf_counter() - t
        desc = self.task.normalize(res.descriptor)
        t = time.perf_counter()
        status = self.archive.add(genomes, fitness, desc)
        times["time/archive_s"] = time.perf_counter() - t
        self.evaluations += c.batch_size
        losses = {}
        if self.uses_critic:
            self._store(res, desc, desc if target is None else target)
            t = time.perf_counter()
            losses = self._train_critic()
            times["time/critic_s"] = time.perf_counter() - t
        self.iteration += 1
        elapsed = time.perf_counter() - t0
        added = status > 0
        out = {f"qd/{k}": v for k, v in self.archive.stats().items()}
        out.update({"qd/evals_per_s": c.batch_size / elapsed, "qd/evaluations": self.evaluations,
                    "qd/robust_evaluations": self.robust_evaluations,
                    "qd/dropped_nonfinite": self.archive.dropped_nonfinite,
                    "qd/out_of_bounds": self.archive.out_of_bounds, **times, **losses})
        for i, name in enumerate(("ga", "pg", "ai", "greedy")):
            if bool((kinds == i).any()) or name == "ga":
                out[f"qd/added_{name}"] = int((added & (kinds == i)).sum())
        return out

    def _robust_fitness(self, genomes: torch.Tensor, fitness: torch.Tensor) -> torch.Tensor:
        """``fitness (B,)`` itself, or with ``cfg.robust_noise`` > 0 the minimum of it and the
        offspring's fitness under ``cfg.robust_samples`` noisy rollouts (seeded by run seed,
        iteration and sample: a resumed run draws the same noise)."""
        c = self.cfg
        if not c.robust_noise > 0:
            return fitness
        worst = fitness.clone()
        for k in range(int(c.robust_samples)):
            noisy = evaluate_population(
                self.task, self.env, self.shape, genomes, keep_transitions=False,
                action_noise=c.robust_noise,
                noise_seed=(self.seed * 1_000_003 + self.iteration) * 101 + k)
            worst = torch.minimum(worst, noisy.fitness.to(worst.device))
            self.robust_evaluations += genomes.shape[0]
        return worst

    def _emit(self, times: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Offspring ``(B, D)``, their target descriptors ``(B, n)`` (normalized; GA offspring's
        filled in after evaluation with their own) and emitter ids ``(B,)``: 0 GA, 1 PG, 2 AI,
        3 greedy actor."""
        c = self.cfg
        ga, pg, ai, greedy = c.counts()
        parts, targets, kinds = [], [], []
        # GA: iso + line variation of two uniformly drawn elites.
        x1, d1 = self.archive.sample(ga, self.gen)
        x2, _ = self.archive.sample(ga, self.gen)
        noise = torch.randn(x1.shape, generator=self.gen) * c.iso_sigma
        line = torch.randn(ga, 1, generator=self.gen) * c.line_sigma
        parts.append(x1 + noise + line * (x2 - x1))
        targets.append(torch.full_like(d1, float("nan")))  # own descriptor, after evaluation
        kinds.append(torch.zeros(ga, dtype=torch.int64))
        if pg:
            t = time.perf_counter()
            xp, dp = self.archive.sample(pg, self.gen)
            parts.append(self._pg_variation(xp.to(self.device), dp.to(self.device)).cpu())
            targets.append(dp)
            kinds.append(torch.full((pg,), 1, dtype=torch.int64))
            times["time/pg_s"] = time.perf_counter() - t
        if ai:
            _, da = self.archive.sample(ai, self.gen)
            parts.append(self.actor.fold(da.to(self.device)).cpu())
            targets.append(da)
            kinds.append(torch.full((ai,), 2, dtype=torch.int64))
        if greedy:
            parts.append(self.actor.fold(torch.zeros(1, 0, device=self.device)).cpu())
            targets.append(torch.full((1, d1.shape[1]), float("nan")))
            kinds.append(torch.full((1,), 3, dtype=torch.int64))
        return (torch.cat(parts).to(self.device), torch.cat(targets).to(self.device),
                torch.cat(kinds))

    def _pg_variation(self, parents: torch.Tensor, desc: torch.Tensor) -> torch.Tensor:
        """``num_pg_training_steps`` Adam steps of ``-Q1(s, pi_x(s) | d)`` on every parent
        ``(P, D)`` at once (its target ``desc (P, n)``; unconditioned: ``-Q1(s, pi_x(s))``).
        Adam is elementwise, so one optimizer over the stacked rows equals one fresh Adam per
        offspring (QDax). Each step draws one transition batch shared by all parents (as
        QDax's vmapped mutation, which shares its key)."""
        c = self.cfg
        theta = parents.clone().requires_grad_(True)
        opt = torch.optim.Adam([theta], lr=c.policy_lr)
        P, B = parents.shape[0], c.transitions_batch_size
        for p in self.critic.parameters():
            p.requires_grad_(False)
        try:
            for _ in range(c.num_pg_training_steps):
                s = self.replay.sample(B, self.gen)["obs"].expand(P, B, -1)
                a = population_forward(self.shape, theta, s)
                x = [s, a] + ([desc[:, None].expand(P, B, -1)] if self.desc_dim else [])
                q = self.critic.q1(torch.cat(x, dim=-1))
                loss = -q.mean(dim=(1, 2)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        finally:
            for p in self.critic.parameters():
                p.requires_grad_(True)
        return theta.detach()

    def _store(self, res, desc: torch.Tensor, target: torch.Tensor) -> None:
        """Valid transitions of every offspring with finite results into the replay, each with
        its observed descriptor d and its target d' (its own d where it has none)."""
        target = torch.where(torch.isnan(target), desc, target)
        tr = res.transitions()
        pid = tr.pop("policy")
        ok = torch.isfinite(res.fitness) & torch.isfinite(desc).all(dim=1)
        keep = ok[pid]
        tr["desc"], tr["desc_prime"] = desc[pid], target[pid]
        self.replay.insert({k: v[keep] for k, v in tr.items()})

    def _train_critic(self) -> dict[str, float]:
        """TD3 on the replay: critic every step, actor every ``policy_delay`` steps, both soft
        targets with ``soft_tau``; rewards scaled by S(d, d') when conditioned."""
        c = self.cfg
        closs = aloss = torch.zeros(())
        for _ in range(c.num_critic_training_steps):
            b = self.replay.sample(c.transitions_batch_size, self.gen)
            r = b["rewards"] * c.reward_scaling
            dp = b["desc_prime"] if self.desc_dim else None
            if self.desc_dim:
                r = r * similarity(b["desc"], dp, c.lengthscale)
            with torch.no_grad():
                noise = (torch.randn(b["actions"].shape, generator=self.gen).to(self.device)
                         * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
                a2 = (self.actor_target(b["next_obs"], dp) + noise).clamp(-1.0, 1.0)
                q1t, q2t = self.critic_target(b["next_obs"], a2, dp)
                y = r[:, None] + (1.0 - b["dones"][:, None]) * c.discount * torch.minimum(q1t, q2t)
            q1, q2 = self.critic(b["obs"], b["actions"], dp)
            closs = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
            self.critic_opt.zero_grad(set_to_none=True)
            closs.backward()
            self.critic_opt.step()
            _soft_update(self.critic_target, self.critic, c.soft_tau)
            if self.td3_steps % c.policy_delay == 0:
                q = self.critic(b["obs"], self.actor(b["obs"], dp), dp)[0]
                aloss = -q.mean()
                self.actor_opt.zero_grad(set_to_none=True)
                aloss.backward()
                self.actor_opt.step()
                _soft_update(self.actor_target, self.actor, c.soft_tau)
            self.td3_steps += 1
        return {"losses/critic": float(closs.detach()), "losses/actor": float(aloss.detach())}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything a resume needs, as tensors and plain data (``weights_only`` loading)."""
        return {"config": dataclasses.asdict(self.cfg), "task": self.task.id,
                "iteration": self.iteration, "evaluations": self.evaluations,
                "robust_evaluations": self.robust_evaluations, "td3_steps": self.td3_steps, "generator": self.gen.get_state(),
                "archive": self.archive.state_dict(), "replay": self.replay.state_dict(),
                "actor": self.actor.state_dict(), "actor_target": self.actor_target.state_dict(),
                "critic": self.critic.state_dict(),
                "critic_target": self.critic_target.state_dict(),
                "actor_opt": self.actor_opt.state_dict(),
                "critic_opt": self.critic_opt.state_dict(),
                "policy_shape": dataclasses.asdict(self.shape), "desc_dim": self.desc_dim}

    def load_state_dict(self, state: dict) -> None:
        self.archive.load_state_dict(state["archive"])
        self.replay.load_state_dict(state["replay"])
        for name in ("actor", "actor_target", "critic", "critic_target", "actor_opt",
                     "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.gen.set_state(state["generator"])
        self.iteration, self.evaluations = int(state["iteration"]), int(state["evaluations"])
        self.td3_steps = int(state["td3_steps"])
        self.robust_evaluations = int(state.get("robust_evaluations", 0))


@torch.no_grad()
def _soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    for pt, ps in zip(target.parameters(), source.parameters()):
        pt.lerp_(ps, tau)
