"""Archive distillation: one descriptor-conditioned policy pi(a | s, d) for the whole archive.

Three ways to get it (DESIGN.md 9.6, issue 16):

* ``td3``: DCG-ME's own actor, trained with TD3 on the similarity-scaled reward during the run
  (the paper's distillation; only ``dcg-me`` runs have a conditioned actor);
* ``bc``: behaviour cloning of every elite's rollout into a fresh pi(s, d_cell), where d_cell
  is that elite's descriptor: mean squared error on the elite's (deterministic) actions. It
  distils any archive, ME's included.
* ``dagger``: ``bc``, then DAgger rounds (Ross, Gordon & Bagnell 2011): pi is commanded with
  every cell's descriptor, each visited state is labelled with *that cell's elite's* action
  (every elite is a teacher that can be queried anywhere: one batched
  :func:`~rlkd.qd.population.population_forward`), the labelled states join the aggregated
  dataset and pi trains on it again. BC only sees the elites' own states, so small action
  errors compound over the 250-step episode and the final position (the descriptor) drifts;
  DAgger trains pi on the states it reaches itself.

**Evaluation** (the same for all three): every elite is re-evaluated (the archive, "re-evaluated on
the same seeds": evaluations are deterministic, so this reproduces the stored fitness on one
device), then pi is commanded with each filled cell's descriptor as one population batch, every
command its own env (pi(., d) folded into an unconditioned genotype, :meth:`FlatActor.fold`).
Reported:

``qd_score_pct``             100 sum_c (f_pi(d_c) - f_low) / sum_c (f_elite_c - f_low): the
                             distilled policy's QD-score over the commanded cells, as a percentage
                             of the re-evaluated archive's (the paper's "distilled QD-score")
``desc_error_cells``         mean over cells of || (d_reached - d_c) / w ||_2, ``w = 2 / cells``
                             the cell width per dimension (normalized units): 1.0 = one cell off
``reinserted_qd_score_pct``  the stricter score: pi's rollouts inserted by their *reached*
                             descriptors into an empty archive of the same grid, its QD-score as a
                             percentage of the re-evaluated elites' inserted the same way
``elite_noise``              the elites themselves with Gaussian action noise (``DistillConfig.
                             elite_noise`` stds): their descriptor error and early-end rate, the
                             error a policy whose actions are off by that much is to expect

(the scoring lives in :mod:`rlkd.qd.distill_metrics`).

``DIR/distilled.pt`` (rlkd checkpoint) holds one entry per method (``policies[method]``: the
actor's layout and flat weights, the task, the metrics) and ``default``, the method last written
(``rlkd play DIR --descriptor x,y`` drives it); ``DIR/distill.json`` the metrics per method.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rlkd.qd.distill_metrics import cell_errors, command_result, elite_noise_probe, \
    qd_contributions, score
from rlkd.qd.population import PolicyShape, PopulationResult, evaluate_population, \
    population_forward

DISTILLED = "distilled.pt"
DISTILL_JSON = "distill.json"
METHODS = ("td3", "bc", "dagger")


@dataclass
class DistillConfig:
    """Behaviour-cloning and DAgger settings (``td3`` trains nothing after the run).

    Attributes:
        bc_hidden: hidden widths of the BC policy pi(s, d) (ReLU, tanh output).
        bc_steps: Adam steps of the BC fit (``dagger``'s first fit too).
        bc_batch_size: transitions per step.
        bc_lr: Adam learning rate (cosine-annealed to 0 over each fit).
        dagger_rounds: ``dagger`` only: student rollouts labelled by the elites, each followed
            by a fit on the aggregated dataset.
        dagger_steps: ``dagger`` only: Adam steps of each round's fit (warm-started). The
            defaults (20 x 1000) measured better than 10 x 2000 at the same Adam-step budget
            on AGVOmni-v0, 5 seeds: -0.19 [-0.34, -0.05] cells of descriptor error on DCG-ME
            archives, -0.09 [-0.26, 0.10] on ME (README, ``results/qd_dagger_r20/``).
        dagger_early_end_weight: ``dagger`` only: sampling weight of the labelled rows from
            pi's rollouts that ended before the time limit (on AGVOmni: collided), against 1 for
            every other row.
        elite_noise: action-noise stds (action units) at which the elites are re-evaluated
            for ``elite_noise`` in the metrics: the elites' own descriptor error and
            early-end rate when their actions are off by about that much, the yardstick for
            a distilled policy whose actions are off by about as much (() skips it).
        seed: seed of the BC initialisation and minibatches (and of the elite-noise probe).
    """

    bc_hidden: tuple[int, ...] = (256, 256)
    bc_steps: int = 3000
    bc_batch_size: int = 1024
    bc_lr: float = 3e-3
    dagger_rounds: int = 20
    dagger_steps: int = 1000
    dagger_early_end_weight: float = 1.0
    elite_noise: tuple[float, ...] = (0.02, 0.05, 0.1)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("bc_steps", "bc_batch_size", "dagger_rounds", "dagger_steps"):
            v = getattr(self, name)
            if int(v) != v or v < (1 if name == "bc_batch_size" else 0):
                raise ValueError(f"DistillConfig.{name} must be a non-negative integer "
                                 f"(bc_batch_size >= 1), got {v!r}")
        if not self.dagger_early_end_weight > 0:
            raise ValueError(f"DistillConfig.dagger_early_end_weight must be > 0, got "
                             f"{self.dagger_early_end_weight!r}")
        if any(not float(x) > 0 for x in self.elite_noise):
            raise ValueError(f"DistillConfig.elite_noise must hold stds > 0, got "
                             f"{self.elite_noise!r}")
        if not self.bc_lr > 0:
            raise ValueError(f"DistillConfig.bc_lr must be > 0, got {self.bc_lr!r}")


def distill_config(overrides: dict | None) -> DistillConfig:
    """A :class:`DistillConfig` from ``key=value`` overrides (``rlkd qd --distill-set``); an
    unknown field is a ``KeyError`` naming the valid ones, a bad value the config's
    ``ValueError``; lists become tuples (``bc_hidden=[512, 512]``)."""
    fields = {f.name for f in dataclasses.fields(DistillConfig)}
    d = dict(overrides or {})
    unknown = sorted(set(d) - fields)
    if unknown:
        raise KeyError(f"unknown DistillConfig field(s) {unknown}; valid: {sorted(fields)}")
    for k, v in d.items():
        if isinstance(v, list):
            d[k] = tuple(v)
        elif k in ("bc_hidden", "elite_noise") and not isinstance(v, tuple):
            raise ValueError(f"DistillConfig.{k} must be a list, e.g. {k}=[256, 256]; got {v!r}")
    return DistillConfig(**d)


def resolve_method(method: str, algo: str) -> str | None:
    """``auto`` -> ``td3`` for dcg-me (its conditioned actor), ``bc`` otherwise; ``none`` ->
    None; ``td3`` on a run without a conditioned actor is a ``ValueError``."""
    if method == "none":
        return None
    if method == "auto":
        return "td3" if algo == "dcg-me" else "bc"
    if method not in METHODS:
        raise ValueError(f"unknown --distill {method!r}; choose from td3, bc, dagger, auto, "
                         f"none")
    if method == "td3" and algo != "dcg-me":
        raise ValueError(f"--distill td3 needs a dcg-me run (its descriptor-conditioned actor); "
                         f"this run is {algo}: use --distill bc or dagger")
    return method


class DistilledPolicy:
    """pi(a | s, d): an MLP on ``[policy obs; d]`` (d normalized to [-1, 1]) in the
    population's flat layout (:class:`~rlkd.agents.dcg_map_elites.FlatActor`).

    Args:
        actor: the conditioned FlatActor (``desc_dim`` > 0).
        task_id: its QD task; method: ``td3`` or ``bc``; env_overrides: the run's extra env
            config.
    """

    def __init__(self, actor, task_id: str, method: str, env_overrides: dict | None = None):
        if actor.desc_dim == 0:
            raise ValueError("a distilled policy must be descriptor-conditioned")
        self.actor = actor.eval()
        self.task_id, self.method = task_id, method
        self.env_overrides = dict(env_overrides or {})

    @property
    def desc_dim(self) -> int:
        return self.actor.desc_dim

    def genotypes(self, commands: torch.Tensor) -> torch.Tensor:
        """``commands (n, n_desc)`` normalized -> ``(n, D)`` unconditioned policies pi(., d)."""
        return self.actor.fold(commands.float().to(self.actor.flat.device))

    @torch.no_grad()
    def __call__(self, obs: torch.Tensor, desc: torch.Tensor) -> torch.Tensor:
        """``obs (B, O)``, ``desc (B, n_desc)`` -> actions ``(B, A)`` in [-1, 1]."""
        return self.actor(obs, desc)

    def state_dict(self) -> dict:
        return {"method": self.method, "task": self.task_id,
                "policy_shape": dataclasses.asdict(self.actor.policy), "desc_dim": self.desc_dim,
                "flat": self.actor.flat.detach().cpu().clone(),
                "env_overrides": dict(self.env_overrides)}

    @classmethod
    def from_state(cls, state: dict, device="cpu") -> "DistilledPolicy":
        from rlkd.agents.dcg_map_elites import FlatActor

        ps = dict(state["policy_shape"])
        shape = PolicyShape(int(ps["obs_dim"]), tuple(ps["hidden"]), int(ps["act_dim"]),
                            ps.get("activation", "relu"))
        actor = FlatActor(shape, int(state["desc_dim"]), torch.Generator().manual_seed(0))
        flat = state["flat"]
        if tuple(flat.shape) != tuple(actor.flat.shape):
            raise ValueError(f"distilled weights have shape {tuple(flat.shape)}, expected "
                             f"{tuple(actor.flat.shape)} for {shape}")
        with torch.no_grad():
            actor.flat.copy_(flat)
        return cls(actor.to(device), state["task"], state["method"], state.get("env_overrides"))


# ---------------------------------------------------------------------- building the policy
def td3_policy(state: dict, task_id: str, env_overrides: dict, device="cpu") -> DistilledPolicy:
    """DCG-ME's conditioned actor from an ``archive.pt`` state (:meth:`QDAlgorithm.state_dict`)."""
    if int(state.get("desc_dim", 0)) == 0:
        raise ValueError(f"this {state['config']['algo']} run has no descriptor-conditioned "
                         f"actor; use --distill bc")
    return DistilledPolicy.from_state(
        {"method": "td3", "task": task_id, "policy_shape": state["policy_shape"],
         "desc_dim": state["desc_dim"], "flat": state["actor"]["flat"],
         "env_overrides": env_overrides}, device)


class _ClonedActor:
    """A conditioned FlatActor fitted on standardized inputs ``[s; d]`` (mean and std of the
    first dataset, fixed after): the elites' states vary little around their mean, so raw
    inputs train badly. :meth:`policy` folds the standardization into the first layer of a
    copy, which then reads raw ``[s; d]``."""

    def __init__(self, shape: PolicyShape, desc_dim: int, x: torch.Tensor, cfg: DistillConfig):
        from rlkd.agents.dcg_map_elites import FlatActor

        self.cfg, self.k = cfg, desc_dim
        self.gen = torch.Generator().manual_seed(int(cfg.seed))
        bc_shape = dataclasses.replace(shape, hidden=tuple(cfg.bc_hidden))
        self.actor = FlatActor(bc_shape, desc_dim, self.gen).to(x.device)
        self.mu, self.sd = x.mean(dim=0), x.std(dim=0).clamp_min(0.1)  # inputs O(1): <= x10

    def fit(self, x: torch.Tensor, act: torch.Tensor, steps: int,
            weights: torch.Tensor | None = None) -> float:
        """``steps`` Adam steps of MSE on ``(x (M, O + k), act (M, A))``, rows drawn uniformly
        or in proportion to ``weights (M,)``; the last loss."""
        xn = (x - self.mu) / self.sd
        opt = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.bc_lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(int(steps), 1))
        m, k = x.shape[0], self.k
        loss = torch.zeros(())
        for _ in range(int(steps)):
            b = min(self.cfg.bc_batch_size, m)
            idx = torch.randint(m, (b,), generator=self.gen) if weights is None else \
                torch.multinomial(weights, b, replacement=True, generator=self.gen)
            idx = idx.to(x.device)
            loss = (self.actor(xn[idx, :-k], xn[idx, -k:]) - act[idx]).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        return float(loss.detach())

    def policy(self, task_id: str, method: str, env_overrides: dict | None) -> DistilledPolicy:
        actor = copy.deepcopy(self.actor)
        _fold_standardization(actor, self.mu, self.sd)
        return DistilledPolicy(actor, task_id, method, env_overrides)


def bc_policy(task, shape: PolicyShape, reference: PopulationResult, commands: torch.Tensor,
              cfg: DistillConfig, env_overrides: dict | None = None) -> tuple[DistilledPolicy, dict]:
    """Behaviour cloning of the elites' rollouts into pi(s, d).

    Args:
        task: the QD task; shape: the population's MLP layout (obs and action sizes).
        reference: the elites' re-evaluation with transitions (``E`` policies).
        commands: ``(E, n_desc)`` normalized descriptor of each elite (its conditioning input).
        cfg: BC settings.

    Returns:
        the policy and ``{"bc_loss": final MSE, "bc_transitions": M, "bc_seconds": s}``.
    """
    t0 = time.perf_counter()
    clone, x, _, loss = _fit_elites(shape, reference, commands, cfg)
    info = {"bc_loss": loss, "bc_transitions": int(x.shape[0]),
            "bc_seconds": time.perf_counter() - t0}
    return clone.policy(task.id, "bc", env_overrides), info


def _fit_elites(shape: PolicyShape, reference: PopulationResult, commands: torch.Tensor,
                cfg: DistillConfig) -> tuple["_ClonedActor", torch.Tensor, torch.Tensor, float]:
    """The BC fit both methods start with: rows ``[s; d_elite]`` of the elites' rollouts
    ``x (M, O + n_desc)``, their actions ``(M, A)``; returns the fitted clone, x, the actions
    and the last loss."""
    tr = reference.transitions()
    x = torch.cat([tr["obs"], commands.float().to(tr["obs"].device)[tr["policy"]]], dim=-1)
    clone = _ClonedActor(shape, commands.shape[1], x, cfg)
    return clone, x, tr["actions"], clone.fit(x, tr["actions"], cfg.bc_steps)


def dagger_policy(task, env, shape: PolicyShape, elites: torch.Tensor,
                  reference: PopulationResult, commands: torch.Tensor, cells: tuple[int, ...],
                  cfg: DistillConfig, env_overrides: dict | None = None
                  ) -> tuple[DistilledPolicy, dict]:
    """BC, then ``cfg.dagger_rounds`` DAgger rounds with every elite as its cell's teacher.

    Args:
        env: the task's env with ``E`` envs (one per elite / command).
        cells: the archive's grid (for the per-round descriptor error).
        elites: ``(E, D)`` the elites' parameters (the teachers, queried on pi's states).
        reference, commands, cfg: as :func:`bc_policy`.

    Returns:
        the policy and ``{"bc_loss", "dagger_transitions": M (aggregated),
        "dagger_rounds": [{round, desc_error_cells, qd_score_pct_of_elites, loss}],
        "bc_seconds": s}``: each round's entry scores the policy it rolled out (round 0 is the
        BC policy), so the list shows what every round bought.
    """
    t0 = time.perf_counter()
    clone, x0, a0, loss = _fit_elites(shape, reference, commands, cfg)
    bc_loss, xs, acts = loss, [x0], [a0]
    cmd = commands.float().to(x0.device)
    weighted = cfg.dagger_early_end_weight != 1.0
    ws = [torch.ones(len(x0))] if weighted else []
    elites = elites.to(x0.device)
    ref_pos = float(qd_contributions(reference.fitness, task.fitness_low).sum())
    rounds = []
    for r in range(int(cfg.dagger_rounds)):
        res = command_result(clone.policy(task.id, "dagger", env_overrides), task, env,
                             commands, keep_transitions=True)
        err = float(cell_errors(commands, task.normalize(res.descriptor), cells).mean())
        pos = float(qd_contributions(res.fitness, task.fitness_low).sum())
        rounds.append({"round": r, "desc_error_cells": err, "loss": loss,
                       "qd_score_pct_of_elites": float(100 * pos / ref_pos) if ref_pos > 0
                       else float("nan")})
        x, a = teacher_labels(shape, elites, res, cmd)
        xs.append(x)
        acts.append(a)
        if weighted:  # rows of rollouts that ended early (collisions): rare, where pi fails
            early = (res.length < task.episode_steps).cpu()
            ws.append(torch.where(early, cfg.dagger_early_end_weight, 1.0)[
                res.row_policy().cpu()].float())
        loss = clone.fit(torch.cat(xs), torch.cat(acts), cfg.dagger_steps,
                         torch.cat(ws) if weighted else None)
    info = {"bc_loss": bc_loss, "dagger_loss": loss,
            "dagger_transitions": int(sum(x.shape[0] for x in xs)), "dagger_rounds": rounds,
            "bc_seconds": time.perf_counter() - t0}
    return clone.policy(task.id, "dagger", env_overrides), info


def teacher_labels(shape: PolicyShape, elites: torch.Tensor, rollout: PopulationResult,
                   commands: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DAgger's labelled states: env ``e`` of ``rollout`` was commanded with ``commands[e]``, so
    its valid states are labelled with elite ``e``'s action (one batched forward,
    ``(E, T, O) -> (E, T, A)``).

    Returns ``x (M, O + n_desc)`` rows ``[s; d_e]`` and ``actions (M, A)``, rows ordered by
    (step, env) like :meth:`PopulationResult.transitions`."""
    labels = population_forward(shape, elites, rollout.obs.transpose(0, 1)).transpose(0, 1)
    valid = rollout.valid
    return torch.cat([rollout.obs[valid], commands[rollout.row_policy()]], dim=-1), labels[valid]


@torch.no_grad()
def _fold_standardization(actor, mu: torch.Tensor, sd: torch.Tensor) -> None:
    """Make ``actor`` on raw inputs equal ``actor`` on ``(x - mu) / sd``: ``W0 <- W0 / sd``,
    ``b0 <- b0 - (mu / sd) W0`` (``mu, sd (in,)``; W0 ``(in, out)``)."""
    layers = actor.shape.unflatten(actor.flat)
    w0, b0 = layers[0]
    b0 -= ((mu / sd)[None, None] @ w0)[:, 0]
    w0 /= sd[None, :, None]


# ---------------------------------------------------------------------- evaluation
def distill_archive(task, state: dict, method: str, cfg: DistillConfig | None = None,
                    env_overrides: dict | None = None, device="cpu"
                    ) -> tuple[DistilledPolicy, dict]:
    """Distil an ``archive.pt`` state with ``method`` and evaluate it (module docstring).

    Returns the policy and its metrics (plus ``seconds`` and, for bc, the training numbers)."""
    cfg = cfg or DistillConfig()
    env_overrides = dict(env_overrides or {})
    t0 = time.perf_counter()
    ps = state["policy_shape"]
    shape = PolicyShape(int(ps["obs_dim"]), tuple(ps["hidden"]), int(ps["act_dim"]),
                        ps.get("activation", "relu"))
    cells = tuple(int(c) for c in state["archive"]["cells"])
    elites = state["archive"]["elites"]
    n = int(elites["index"].numel())
    if n == 0:
        raise ValueError("the archive is empty: nothing to distil")
    commands = elites["descriptor"].float()
    env = task.make_env(n, device=device, **env_overrides)
    ref = evaluate_population(task, env, shape, elites["solution"].to(device),
                              keep_transitions=method in ("bc", "dagger"))
    extra: dict = {}
    if method == "td3":
        policy = td3_policy(state, task.id, env_overrides, device)
    elif method == "bc":
        policy, extra = bc_policy(task, shape, ref, commands, cfg, env_overrides)
    elif method == "dagger":
        policy, extra = dagger_policy(task, env, shape, elites["solution"], ref, commands,
                                      cells, cfg, env_overrides)
    else:
        raise ValueError(f"unknown distillation method {method!r}; choose from {METHODS}")
    ref_desc = task.normalize(ref.descriptor)
    res = command_result(policy, task, env, commands)
    metrics = score(task, cells, commands, ref.fitness, ref_desc, res.fitness,
                    task.normalize(res.descriptor), ref.length, res.length)
    same = float((ref.fitness.double().cpu() - elites["fitness"]).abs().max())
    metrics.update(extra, method=method, seconds=time.perf_counter() - t0,
                   reference_max_abs_fitness_change=same,
                   elite_noise=elite_noise_probe(task, env, shape, elites["solution"], commands,
                                                 cells, cfg.elite_noise, cfg.seed))
    return policy, metrics


# ---------------------------------------------------------------------- run directories
def write_distilled(run_dir: Path, policy: DistilledPolicy, metrics: dict) -> None:
    """Add ``policy`` (and its metrics) to ``DIR/distilled.pt`` and ``DIR/distill.json``
    (other methods' entries kept; ``default`` becomes this method), atomically."""
    from rlkd.core.provenance import write_json_atomic
    from rlkd.train.checkpoint import load_checkpoint, save_checkpoint

    run_dir = Path(run_dir)
    path = run_dir / DISTILLED
    policies = {}
    if path.is_file():
        policies = dict(load_checkpoint(path, required=("policies",))["policies"])
    policies[policy.method] = {**policy.state_dict(), "metrics": _plain(metrics)}
    save_checkpoint(path, {"kind": "qd-distilled", "default": policy.method,
                           "policies": policies})
    js = run_dir / DISTILL_JSON
    table = json.loads(js.read_text(encoding="utf-8")) if js.is_file() else {}
    table[policy.method] = _plain(metrics)
    write_json_atomic(js, table)


def load_distilled(run_dir: str | Path, method: str | None = None, device="cpu"
                   ) -> DistilledPolicy:
    """The distilled policy of a QD run directory (its ``default`` method unless ``method``);
    ``ValueError`` naming the fix when there is none."""
    from rlkd.train.checkpoint import load_checkpoint

    path = Path(run_dir) / DISTILLED
    if not path.is_file():
        raise ValueError(f"{run_dir} has no distilled policy ({DISTILLED}); run `rlkd qd "
                         f"--resume {run_dir} --distill td3|bc`")
    ck = load_checkpoint(path, required=("policies", "default"))
    method = method or ck["default"]
    if method not in ck["policies"]:
        raise ValueError(f"{path} holds {sorted(ck['policies'])}, not {method!r}")
    return DistilledPolicy.from_state(ck["policies"][method], device)


def _plain(d: dict) -> dict:
    return {k: (float(v) if isinstance(v, (float, torch.Tensor)) else v) for k, v in d.items()}
