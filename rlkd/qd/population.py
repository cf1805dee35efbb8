"""Population evaluation: P policies, one env batch of P, each env driven by its own MLP.

A population is a flat parameter tensor ``(P, D)`` (one row per policy, the genotype MAP-Elites
mutates). :class:`PolicyShape` maps a row onto the layers of a small MLP, ``W_k (in_k, out_k)``
then ``b_k (out_k,)``, in order; :func:`population_forward` runs every policy on its own env's
observation with one ``torch.baddbmm`` per layer, ``(P, 1, in) x (P, in, out) + (P, 1, out)``, so
evaluating 1024 policies costs about as much as one batched env step, on any device.

:func:`evaluate_population` runs the batch from the *same* start state for every env (the task's
:meth:`~rlkd.qd.tasks.QDTask.reset`: one layout, common random numbers by putting every env on
random stream 0 with ``env.rng.set_streams``, a fixed start pose), takes each env's result at its
first episode end (later steps, after the env's autoreset, are masked out) and returns fitness,
descriptor and the transitions the critic learns from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from rlkd.qd.tasks import QDTask

#: Hidden activations of the population MLPs (the output is always ``tanh``: actions in [-1, 1]).
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "elu": torch.nn.functional.elu}


@dataclass(frozen=True)
class PolicyShape:
    """Layer sizes of the population's MLP ``obs_dim -> hidden... -> act_dim`` (tanh output).

    Attributes:
        obs_dim: observation features (the task's ``policy`` group).
        hidden: hidden layer widths.
        act_dim: action dimensions.
        activation: hidden activation, one of :data:`ACTIVATIONS`.
    """

    obs_dim: int
    hidden: tuple[int, ...]
    act_dim: int
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose from "
                             f"{sorted(ACTIVATIONS)}")

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.obs_dim, *self.hidden, self.act_dim)

    @property
    def num_params(self) -> int:
        """``D``: parameters of one policy (the genotype length)."""
        s = self.sizes
        return sum(s[i] * s[i + 1] + s[i + 1] for i in range(len(s) - 1))

    def unflatten(self, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Views ``[(W (P, in, out), b (P, out)), ...]`` of ``flat (P, D)`` (no copy)."""
        if flat.dim() != 2 or flat.shape[1] != self.num_params:
            raise ValueError(f"population parameters have shape {tuple(flat.shape)}, expected "
                             f"(P, {self.num_params}) for an MLP {self.sizes}")
        layers, off, s = [], 0, self.sizes
        for i in range(len(s) - 1):
            n_in, n_out = s[i], s[i + 1]
            w = flat[:, off:off + n_in * n_out].view(-1, n_in, n_out)
            off += n_in * n_out
            layers.append((w, flat[:, off:off + n_out]))
            off += n_out
        return layers

    def flatten(self, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Inverse of :meth:`unflatten`: ``[(W (P, in, out), b (P, out)), ...] -> (P, D)``."""
        return torch.cat([t.reshape(t.shape[0], -1) for wb in layers for t in wb], dim=1)

    def init(self, n: int, generator: torch.Generator, device="cpu") -> torch.Tensor:
        """``(n, D)`` fresh policies: LeCun-uniform weights (QDax's ``lecun_uniform``), zero
        biases, drawn from ``generator`` (on CPU, then moved: the same numbers on any device)."""
        parts, s = [], self.sizes
        for i in range(len(s) - 1):
            bound = math.sqrt(3.0 / s[i])
            w = (torch.rand(n, s[i] * s[i + 1], generator=generator) * 2 - 1) * bound
            parts += [w, torch.zeros(n, s[i + 1])]
        return torch.cat(parts, dim=1).to(device)


def population_forward(shape: PolicyShape, flat: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """Actions of every policy on its own inputs.

    Args:
        shape: the MLP layout.
        flat: ``(P, D)`` parameters.
        obs: ``(P, obs_dim)`` (one observation per policy) or ``(P, B, obs_dim)`` (a batch each).

    Returns:
        ``(P, act_dim)`` or ``(P, B, act_dim)`` actions in [-1, 1].
    """
    single = obs.dim() == 2
    x = obs[:, None] if single else obs
    act = ACTIVATIONS[shape.activation]
    layers = shape.unflatten(flat)
    for i, (w, b) in enumerate(layers):
        x = torch.baddbmm(b[:, None], x, w)
        x = act(x) if i < len(layers) - 1 else torch.tanh(x)
    return x[:, 0] if single else x


@dataclass
class PopulationResult:
    """What one batched evaluation of ``P`` policies returns (``T`` = the task's episode steps).

    Attributes:
        fitness: ``(P,)`` the task's fitness of each policy's first episode.
        descriptor: ``(P, n_desc)`` in the task's raw units (``task.normalize`` maps it to
            [-1, 1]).
        length: ``(P,)`` int64 steps of that episode.
        obs, next_obs: ``(T, P, obs_dim)`` ``policy`` observations before / after each step
            (``next_obs`` is the episode's final observation at its last step).
        actions: ``(T, P, act_dim)``.
        rewards: ``(T, P)`` the task's per-step rewards, offset to be >= 0.
        dones: ``(T, P)`` bool, True at a step that *terminated* the episode (no bootstrap);
            a time-limit end is not a done.
        valid: ``(T, P)`` bool, True for steps up to and including the first episode end.
    """

    fitness: torch.Tensor
    descriptor: torch.Tensor
    length: torch.Tensor
    obs: torch.Tensor
    next_obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    valid: torch.Tensor

    def row_policy(self) -> torch.Tensor:
        """``(M,)`` int64: the policy (env) of each valid row, rows ordered by (step, policy)
        as in :meth:`transitions`."""
        m = self.valid
        return torch.arange(m.shape[1], device=m.device).expand_as(m)[m]

    def transitions(self) -> dict[str, torch.Tensor]:
        """The valid transitions flattened, rows ordered by (step, policy), plus ``policy``
        (:meth:`row_policy`)."""
        m = self.valid
        return {"obs": self.obs[m], "next_obs": self.next_obs[m], "actions": self.actions[m],
                "rewards": self.rewards[m], "dones": self.dones[m].float(),
                "policy": self.row_policy()}


@torch.no_grad()
def evaluate_population(task: "QDTask", env, shape: PolicyShape, params: torch.Tensor,
                        keep_transitions: bool = True, action_noise: float = 0.0,
                        noise_seed: int = 0) -> PopulationResult:
    """Roll out ``params (P, D)`` as one batch of ``env`` (built by ``task.make_env(P)``).

    Every env starts from the task's fixed start state (same layout, common random numbers);
    the loop runs ``task.episode_steps`` steps (or stops once every env's first episode ended)
    and reads each env's fitness and descriptor at its first episode end.

    ``action_noise`` > 0 adds Gaussian noise of that std (action units, the range is [-1, 1])
    to every action before the step, clipped to [-1, 1], drawn from a generator seeded with
    ``noise_seed`` (a robustness probe of the policies; the recorded actions are the executed,
    noisy ones). 0 leaves the evaluation exactly as without it.
    """
    P = params.shape[0]
    if env.num_envs != P:
        raise ValueError(f"evaluate_population: the env has {env.num_envs} envs but {P} "
                         f"policies were given; build it with task.make_env({P})")
    if not action_noise >= 0:
        raise ValueError(f"evaluate_population: action_noise must be >= 0, got {action_noise!r}")
    noise = torch.Generator(device=env.device).manual_seed(int(noise_seed)) \
        if action_noise > 0 else None
    params = params.to(env.device)
    obs = task.reset(env)
    T = task.episode_steps
    alive = torch.ones(P, dtype=torch.bool, device=env.device)
    stats = task.init_stats(env)
    length = torch.zeros(P, dtype=torch.int64, device=env.device)
    rec: dict[str, list[torch.Tensor]] = {k: [] for k in
                                          ("obs", "next_obs", "actions", "rewards", "dones", "valid")}
    for _ in range(T):
        actions = population_forward(shape, params, obs)
        if noise is not None:
            actions = (actions + action_noise * torch.randn(
                actions.shape, generator=noise, device=actions.device)).clamp(-1.0, 1.0)
        nxt, _, terminated, truncated, info = env.step(actions)
        done = terminated | truncated
        # Observations after this step: the episode's final ones where it ended (autoreset).
        after = nxt
        if "final_obs" in info:
            mask = info["final_mask"]
            after = {k: v.clone() for k, v in nxt.items()}
            for k, v in info["final_obs"].items():
                after[k][mask] = v
        reward, stats = task.step_stats(env, stats, actions, after, terminated, info, alive)
        if keep_transitions:
            rec["obs"].append(obs)
            rec["next_obs"].append(after["policy"])
            rec["actions"].append(actions)
            rec["rewards"].append(reward)
            rec["dones"].append(terminated & alive)
            rec["valid"].append(alive.clone())
        length += alive.long()
        alive = alive & ~done
        obs = nxt["policy"]
        if not bool(alive.any()):
            break
    fitness, descriptor = task.finish_stats(env, stats, length)
    if keep_transitions:
        out = {k: torch.stack(v) for k, v in rec.items()}
    else:
        e = torch.zeros(0, P, device=env.device)
        out = {"obs": e, "next_obs": e, "actions": e, "rewards": e,
               "dones": e.bool(), "valid": e.bool()}
    return PopulationResult(fitness=fitness, descriptor=descriptor, length=length, **out)
