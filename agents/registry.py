"""The agent registry: ``rlkd train --agent NAME`` resolves ``NAME`` here.

An agent is an algorithm object with rsl_rl's shape (see :class:`Algorithm`) plus the config
dataclasses it reads, each one a *section* of the train config and of the command line
(``--ppo key=value``, ``--intrinsic key=value``, ...). Adding an agent is one new file that ends
with one registration::

    @dataclass
    class MyConfig:
        lr: float = 3e-4
        \"\"\"Adam learning rate.\"\"\"

    def build(env, cfgs, seed):            # cfgs: {"my": MyConfig(...)} with overrides applied
        return MyAlgorithm(env, cfgs["my"], seed)

    register_agent("my-agent", build, sections={"my": MyConfig}, description="...")

The runner (:mod:`rlkd.train.runner`) never imports an algorithm: it builds the registered
agent by name and drives its ``act -> process_env_step -> compute_returns -> update`` loop.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from rlkd.core.config import apply_overrides


class Algorithm(abc.ABC):
    """What the on-policy runner drives (rsl_rl's algorithm shape).

    Attributes:
        policy: the ``nn.Module`` that acts; it has ``act_deterministic(obs) -> (N, A)`` and,
            for ``rlkd export`` / ``load_policy``, ``spec()`` and the actor-side state-dict
            prefixes of :data:`rlkd.nn.policy.ACTOR_PREFIXES` (an
            :class:`~rlkd.nn.policy.ActorCritic` has all of it).
        num_steps_per_env: rollout length ``T`` of one iteration.
    """

    policy: torch.nn.Module
    num_steps_per_env: int

    @abc.abstractmethod
    def act(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Actions ``(N, A)`` for the current observations (recording what the update needs)."""

    @abc.abstractmethod
    def process_env_step(self, obs: dict[str, torch.Tensor], reward: torch.Tensor,
                         terminated: torch.Tensor, truncated: torch.Tensor,
                         info: dict[str, Any]) -> None:
        """Record the env's answer to :meth:`act` (``info`` holds ``final_obs`` / ``episode``)."""

    @abc.abstractmethod
    def compute_returns(self, last_obs: dict[str, torch.Tensor]) -> None:
        """After ``T`` steps: returns / advantages / targets of the rollout."""

    @abc.abstractmethod
    def update(self) -> dict[str, float]:
        """Learn from the rollout; returns scalars to log (``losses/...``)."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs (weights, optimizers, generators); the model's own
        weights under ``"policy"`` (``--init-from`` and export read them there)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def synced_modules(self) -> list[torch.nn.Module]:
        """Modules whose parameters rank 0 broadcasts at the start of a data-parallel run."""
        return [self.policy]


#: ``builder(env, cfgs, seed) -> Algorithm``; ``cfgs`` maps section name -> config instance.
Builder = Callable[[Any, dict[str, Any], int], Algorithm]


@dataclass(frozen=True)
class AgentSpec:
    """A registered agent.

    Attributes:
        name: what ``--agent`` takes.
        builder: ``builder(env, cfgs, seed) -> Algorithm``.
        sections: ``{section: config dataclass}``; each is a ``--<section> key=value`` flag of
            ``rlkd train`` and a key of ``TrainConfig.agent_cfg``.
        description: one line for ``rlkd list agents`` and ``rlkd train --help``.
        aliases: ``{section: {old_key: new_key}}`` renamed config keys still accepted (old runs).
    """

    name: str
    builder: Builder
    sections: dict[str, type] = field(default_factory=dict)
    description: str = ""
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)

    def configs(self, overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Each section's config with ``overrides[section]`` applied; unknown sections or keys
        raise ``KeyError`` naming them, bad values ``TypeError``."""
        overrides = dict(overrides or {})
        unknown = sorted(s for s, v in overrides.items() if s not in self.sections and v)
        if unknown:
            raise KeyError(f"agent {self.name!r} has no config section(s) {unknown}; its "
                           f"sections: {sorted(self.sections) or 'none'}")
        out = {}
        for section, cls in self.sections.items():
            ov = dict(overrides.get(section) or {})
            for old, new in self.aliases.get(section, {}).items():
                if old in ov:
                    value = ov.pop(old)
                    ov[new] = [value] if isinstance(value, str) else value
            out[section] = apply_overrides(cls(), ov, owner=f"{self.name} {section} config")
        return out

    def build(self, env, overrides: dict[str, dict[str, Any]] | None = None,
              seed: int = 0) -> tuple[Algorithm, dict[str, Any]]:
        """``(algorithm, configs)`` of this agent on ``env``."""
        cfgs = self.configs(overrides)
        return self.builder(env, cfgs, seed), cfgs


#: Every registered agent by name (``ppo``, ``ppo-rnd``, ``ppo-rdd`` built in).
AGENTS: dict[str, AgentSpec] = {}


def register_agent(name: str, builder: Builder, sections: dict[str, type] | None = None,
                   description: str = "", aliases: dict[str, dict[str, str]] | None = None,
                   overwrite: bool = False) -> AgentSpec:
    """Register an agent under ``name`` (see the module docstring); ``overwrite`` replaces one."""
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise ValueError(f"agent name must be a non-empty string without spaces, got {name!r}")
    if name in AGENTS and not overwrite:
        raise ValueError(f"agent {name!r} is already registered (pass overwrite=True)")
    for section, cls in (sections or {}).items():
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"agent {name!r}: section {section!r} must be a dataclass, got {cls!r}")
    spec = AgentSpec(name, builder, dict(sections or {}), description, dict(aliases or {}))
    AGENTS[name] = spec
    return spec


def unregister_agent(name: str) -> None:
    """Remove ``name`` from the registry (tests that register throwaway agents)."""
    AGENTS.pop(name, None)


def get_agent(name: str) -> AgentSpec:
    """The :class:`AgentSpec` of ``name``; an unknown name raises ``ValueError`` listing all."""
    if name not in AGENTS:
        import difflib

        close = difflib.get_close_matches(name, list(AGENTS), n=2)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown agent {name!r}.{hint} Registered: {', '.join(sorted(AGENTS))}")
    return AGENTS[name]


def all_sections() -> dict[str, list[str]]:
    """``{section: [agents that read it]}`` over every registered agent (CLI flags)."""
    out: dict[str, list[str]] = {}
    for spec in AGENTS.values():
        for section in spec.sections:
            out.setdefault(section, []).append(spec.name)
    return out
