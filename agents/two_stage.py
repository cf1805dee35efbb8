"""Two-stage baseline of vision distillation (issue 15; the "estimate the motion, then track it"
pipeline PhysHMR compares against): a regressor estimates the expert's privileged
``reference`` group of ``HumanoidMotion-v0`` from what a vision student sees (``student``), and
the expert tracks the estimate.

    stage 1  r_hat = f(o_student)                 (MSE on expert-visited states, normalized)
    stage 2  a_res = pi_expert([proprio, prev_res, r_hat]),  a_abs = (clamp(q1_hat + s a_res) - q_mid) / q_half

``q1_hat`` is the estimate's next-frame joint angles (``ref1_joint_pos``), so the residual expert's
action is turned absolute against the *estimated* reference, not the true one (``env.to_absolute``
would leak it), and the expert's previous action is re-expressed in its residual form against
the previous estimate. Nothing here sees the reference at run time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from rlkd.envs.humanoid.actions import convert_actions, pd_targets
from rlkd.nn.mlp import mlp
from rlkd.nn.normalizer import RunningMeanStd


@dataclass
class TwoStageConfig:
    """Stage 1's data and fit (ours: the issue names the pipeline, not its settings)."""

    samples: int = 200_000
    """Expert-visited states collected for the regression (the expert acts through the env's
    ``teacher`` group and ``to_absolute``)."""
    hidden: tuple[int, ...] = (512, 256)
    """Regressor MLP widths."""
    epochs: int = 30
    """Passes over the collected states."""
    minibatch_size: int = 4096
    lr: float = 1e-3
    """Adam learning rate (cosine-decayed to 0 over the fit)."""
    val_fraction: float = 0.1
    """Share of the states held out to report the fit's generalization."""
    rounds: int = 1
    """1: fit on the expert's states only (open loop, as an off-line pipeline). More: each
    further round adds ``samples`` states visited by the composed two-stage policy itself,
    labelled with the true reference, and refits (data aggregation against compounding error)."""


class ReferenceRegressor(nn.Module):
    """``(B, D_student) -> (B, D_reference)``: an MLP between a frozen input normalizer and a
    target de-normalizer (both fitted on the training states)."""

    def __init__(self, in_dim: int, out_dim: int, hidden=(512, 256)):
        super().__init__()
        self.x_norm, self.y_norm = RunningMeanStd(in_dim, clip=None), RunningMeanStd(out_dim,
                                                                                       clip=None)
        self.net = mlp(in_dim, hidden, out_dim, "elu")

    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.x_norm.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.normalized(x)
        return y * torch.sqrt(self.y_norm.var.float() + self.y_norm.eps) + self.y_norm.mean.float()


@torch.no_grad()
def collect(env, expert, samples: int, seed: int = 0, policy=None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(student (S, D_s), reference (S, D_r))`` on states visited in ``env`` (a camera env in
    absolute action mode) by the expert (acting through ``teacher`` and ``to_absolute``) or by
    ``policy`` (obs -> absolute actions); ``S = ceil(samples / num_envs) * num_envs``."""
    if "student" not in env.observation_spaces:
        raise ValueError("two-stage needs a camera env (vision='rays' or 'keypoints2d')")
    obs, _ = env.reset(seed=seed)
    xs, ys = [], []
    for _ in range(math.ceil(samples / env.num_envs)):
        xs.append(obs["student"])
        ys.append(obs["reference"])
        a = policy(obs) if policy is not None else env.to_absolute(
            expert({"policy": obs["teacher"]}), expert.action_mode)
        obs, *_ = env.step(a)
    return torch.cat(xs), torch.cat(ys)


def train_two_stage(env, expert, cfg: TwoStageConfig, seed: int = 0
                    ) -> tuple["TwoStagePolicy", list[dict]]:
    """Both stages: collect, fit, compose; ``cfg.rounds`` > 1 aggregates the composed policy's
    own states. Returns the policy and each round's fit statistics."""
    xs, ys = collect(env, expert, cfg.samples, seed)
    history = []
    for r in range(cfg.rounds):
        model, stats = fit(xs, ys, cfg, seed + r)
        history.append({"round": r, **stats})
        policy = TwoStagePolicy(env, expert, model)
        if r + 1 < cfg.rounds:
            x, y = collect(env, expert, cfg.samples, seed + 1000 * (r + 1), policy)
            xs, ys = torch.cat((xs, x)), torch.cat((ys, y))
    return policy, history


def fit(student: torch.Tensor, reference: torch.Tensor, cfg: TwoStageConfig,
        seed: int = 0) -> tuple[ReferenceRegressor, dict]:
    """Stage 1: the regressor fitted by Adam on normalized MSE; returns it (eval mode) and
    ``{"train_mse", "val_mse"}`` (normalized units, last epoch)."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(student), generator=gen)
    n_val = int(len(student) * cfg.val_fraction)
    val, train = perm[:n_val], perm[n_val:]
    model = ReferenceRegressor(student.shape[1], reference.shape[1], cfg.hidden)
    model.x_norm.update(student[train])
    model.y_norm.update(reference[train])
    y_all = model.y_norm.normalize(reference)
    opt = torch.optim.Adam(model.net.parameters(), lr=cfg.lr)
    steps = cfg.epochs * max(1, math.ceil(len(train) / cfg.minibatch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    train_mse = float("nan")
    for _ in range(cfg.epochs):
        order = train[torch.randperm(len(train), generator=gen)]
        total, n = 0.0, 0
        for i in range(0, len(order), cfg.minibatch_size):
            idx = order[i:i + cfg.minibatch_size]
            loss = (model.normalized(student[idx]) - y_all[idx]).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item() * len(idx), n + len(idx)
        train_mse = total / max(n, 1)
    model.eval()
    with torch.no_grad():
        val_mse = float((model.normalized(student[val]) - y_all[val]).square().mean()) \
            if n_val else float("nan")
    return model, {"train_mse": train_mse, "val_mse": val_mse, "samples": len(student)}


class TwoStagePolicy:
    """Stage 2: ``obs -> (N, 28)`` absolute actions from ``obs["student"]`` and
    ``obs["proprio"]`` alone (see the module docstring). Keeps the previous estimate's
    next-frame joint angles per env; an env whose last action reads exactly 0 (the env's value
    at a reset) starts afresh.

    Args:
        env: the camera env (its joint ranges, residual scale and layout are read once).
        expert: a residual-mode :class:`~rlkd.policies.LoadedPolicy` reading ``policy``.
        regressor: stage 1's :class:`ReferenceRegressor`.
    """

    def __init__(self, env, expert, regressor: ReferenceRegressor):
        if expert.action_mode != "residual" or list(expert.obs_groups) != ["policy"]:
            raise ValueError("two-stage composes a residual expert that reads the 'policy' group")
        lay = env.observation_layout
        first = next(k for k in lay["reference"] if k.endswith("_joint_pos"))
        self.ref1 = lay["reference"][first]
        self.prev = lay["proprio"]["prev_action"]
        self.expert, self.regressor = expert, regressor
        self.q_mid, self.q_half = env.q_mid, env.q_half
        self.scale = env.cfg.residual_scale
        self._last_q1: torch.Tensor | None = None

    @torch.no_grad()
    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        ref_hat = self.regressor(obs["student"])
        prop = obs["proprio"]
        prev_abs = prop[:, self.prev]
        q1 = ref_hat[:, self.ref1]
        last = q1 if self._last_q1 is None or len(self._last_q1) != len(q1) else self._last_q1
        fresh = (prev_abs == 0).all(-1, keepdim=True)
        prev_res = convert_actions(prev_abs, "absolute", "residual", last, self.q_mid,
                                   self.q_half, self.scale) * ~fresh
        a_res = self.expert({"policy": torch.cat((prop[:, :self.prev.start], prev_res,
                                                  prop[:, self.prev.stop:], ref_hat), -1)})
        target = pd_targets(a_res, "residual", q1, self.q_mid, self.q_half, self.scale)
        self._last_q1 = q1
        return ((target - self.q_mid) / self.q_half).clamp(-1.0, 1.0)
