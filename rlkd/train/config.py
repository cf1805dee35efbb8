"""The train config: one run of ``rlkd train`` (saved as the run's ``config.yaml`` and in every
checkpoint). The CLI builds ``rlkd train``'s flags from this dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class TrainConfig:
    """One training run (what ``rlkd train`` parses; saved as ``config.yaml``)."""

    env: str = "AGVWarehouse-v0"
    """Registered env id."""
    agent: str = "ppo-rdd"
    """Registered agent (``rlkd list agents``): ppo, ppo-rnd, ppo-rdd, ..."""
    num_envs: int = 256
    """Envs per rank."""
    steps: int = 6_000_000
    """Total env steps (all envs, all ranks)."""
    seed: int = 0
    """Seed; rank r uses seed + r for its envs and sampling."""
    device: str = "cpu"
    """Torch device (``cuda`` becomes ``cuda:<local_rank>`` under torchrun)."""
    out: str = "runs/default"
    """Run directory."""
    checkpoint_every: int = 50
    """Iterations between checkpoints (one is always written at the end)."""
    video: bool = True
    """Render a rollout of the final policy to ``videos/final.mp4``."""
    video_steps: int = 300
    """Control steps of that rollout."""
    progress: bool = True
    """Show progress: a start header, then a progress bar on a terminal, or one progress line
    every ``log_interval_s`` when stdout is a file, a pipe, CI or a SLURM log."""
    log_interval_s: float = 30.0
    """Seconds between progress lines when stdout is not a terminal."""
    wandb: bool = False
    """Also log scalars and the config to Weights & Biases (needs ``pip install wandb``; project
    ``$WANDB_PROJECT`` or ``rlkd``, run named after the run directory)."""
    overwrite: bool = False
    """Start over in an existing run directory: its checkpoints, config, metrics, event files
    and videos are deleted first. Without it a fresh run there is refused (continue it with
    ``--resume``)."""
    env_overrides: dict[str, Any] = field(default_factory=dict)
    """Env config overrides (``--set key=value``)."""
    agent_cfg: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Overrides of the agent's config sections, ``{section: {key: value}}`` (``--ppo key=value``
    fills ``agent_cfg["ppo"]``, ``--intrinsic key=value`` ``agent_cfg["intrinsic"]``, ...)."""
    init_from: str | None = None
    """Checkpoint or run directory whose actor-critic weights and observation normalizers start
    this run (fine-tuning, e.g. after a reward change), or an exported policy / ``expert:<name>``
    whose actor alone does (the critic starts fresh: pair it with ``--ppo
    critic_warmup_updates=N``). The optimizer, learning rate, env state and step counters start
    fresh; observation shapes must match."""
    randomize: str | None = None
    """Domain randomisation at every reset, from the perturbation kinds of ``rlkd eval
    sim2real``: a suite name (``default``, ``dynamics``, ...) or suite YAML file (as ``--suite``),
    a YAML file of ``ranges: {kind: [low, high]}``, or inline ``kind=low:high,...``
    (``rlkd.sim2real.randomize``). The resolved ranges are saved in config.yaml."""
    randomize_mode: Literal["ranges", "conditions"] = "ranges"
    """How ``randomize`` draws per env: ``ranges`` (each kind uniform between nominal and the
    suite's most extreme value, all kinds at once) or ``conditions`` (one of the suite's
    conditions, uniformly)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section(self, name: str) -> dict[str, Any]:
        """The overrides of agent config section ``name`` (empty when none)."""
        return dict(self.agent_cfg.get(name) or {})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """From :meth:`to_dict` output; configs of format v1 (top-level ``ppo`` / ``intrinsic``
        override dicts) are moved into ``agent_cfg``."""
        d = dict(d)
        legacy = {k: d.pop(k) for k in ("ppo", "intrinsic") if k in d}
        if legacy:
            d["agent_cfg"] = {**{k: v for k, v in legacy.items() if v},
                              **(d.get("agent_cfg") or {})}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise KeyError(f"unknown train config keys {unknown}; known: {sorted(names)}")
        return cls(**d)
