"""Policies for ``rlkd play`` / ``rlkd eval``: a trained run's, or a stand-in (random, zero,
scripted) when an env id is given instead of a run."""

from __future__ import annotations

from typing import Callable

import torch

Policy = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def make_policy(name: str, env, seed: int = 0) -> Policy:
    """``random`` (uniform in [-1, 1]), ``zero`` or ``scripted`` (the task's own controller)."""
    if name == "random":
        gen = torch.Generator(device=env.device).manual_seed(seed)
        return lambda obs: torch.rand(env.num_envs, env.act_dim, generator=gen,
                                      device=env.device) * 2 - 1
    if name == "zero":
        return lambda obs: torch.zeros(env.num_envs, env.act_dim, device=env.device)
    if name == "scripted":
        factory = getattr(env, "scripted_policy", None)
        if factory is None:
            raise ValueError(f"{env.spec_id} has no scripted policy; use random or zero")
        return factory()
    raise ValueError(f"unknown policy {name!r}: choose random, zero or scripted")


#: Builds the policy for a given env (it may need the env's batch size or device).
PolicyFactory = Callable[[object], Policy]


#: Trained policies shipped in the package (``rlkd play expert:<name>``): name -> (package,
#: file). Each file records the commands that reproduce it (``provenance``).
EXPERTS = {"humanoid-walk": ("rlkd.envs.humanoid", "experts/walk.pt")}


def expert_path(name: str):
    """Path of the shipped expert ``name`` (see :data:`EXPERTS`)."""
    from importlib.resources import files
    from pathlib import Path

    if name not in EXPERTS:
        raise ValueError(f"unknown expert {name!r}; shipped experts: {sorted(EXPERTS)}")
    package, file = EXPERTS[name]
    return Path(str(files(package) / file))


def policy_source(target: str, stand_in: str = "random", device: str = "cpu",
                  seed: int = 0) -> tuple[str, dict, PolicyFactory, str]:
    """What to evaluate: ``(env_id, env_overrides, policy_factory, label)``.

    ``target`` is a run directory / checkpoint of ``rlkd train`` or an exported policy (its
    env, its overrides, its policy with mean actions and frozen normalizers), ``expert:<name>``
    (a shipped expert, :data:`EXPERTS`) or an env id (no overrides, the ``stand_in``
    policy). Raises ``CheckpointError`` for a corrupt checkpoint.
    """
    from pathlib import Path

    if target.startswith("expert:"):
        target = str(expert_path(target[len("expert:"):]))
    if not Path(target).exists():
        return target, {}, lambda env: make_policy(stand_in, env, seed), stand_in
    from rlkd.train import load_policy
    from rlkd.train.runner import policy_group

    cfg, net = load_policy(target, device=device)
    group = policy_group(cfg)

    def factory(env) -> Policy:
        return lambda obs: net.act_deterministic(obs[group]).clamp(-1.0, 1.0)

    return cfg.env, dict(cfg.env_overrides), factory, f"{cfg.agent} ({Path(target).name})"
