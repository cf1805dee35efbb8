"""Deployable policy files: a trained run's actor alone (weights, action std and observation
normalizer), with its train config and a provenance record.

``kind: "policy"`` checkpoints load everywhere a run does (:func:`rlkd.train.load_policy`, so
``rlkd play`` and ``rlkd eval``), at a fraction of a training checkpoint's size: no critic, no
optimizer state, no env state. They cannot be resumed or fine-tuned from (``--init-from`` needs
the critic too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlkd.train.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint, \
    save_checkpoint

#: State-dict prefixes of the actor side of :class:`rlkd.agents.ppo.ActorCritic`.
ACTOR_KEYS = ("actor.", "actor_norm.", "log_std")


def export_policy(run_or_ckpt: str | Path, out: str | Path,
                  provenance: dict[str, Any] | None = None) -> Path:
    """Write the actor of ``run_or_ckpt`` (run directory: its ``last.pt``) to ``out``
    atomically; ``provenance`` (commands, measured quality, ...) is stored with it."""
    path = resolve_checkpoint(run_or_ckpt)
    ck = load_checkpoint(path, required=("config", "agent"))
    if ck.get("kind") == "policy":
        raise CheckpointError(f"{path} is already an exported policy")
    policy = ck["agent"]["policy"]
    actor = {k: v.detach().clone() for k, v in policy.items() if k.startswith(ACTOR_KEYS)}
    if not any(k.startswith("actor.") for k in actor):
        raise CheckpointError(f"{path} holds no actor weights (keys {sorted(policy)[:4]}...)")
    payload = {"kind": "policy", "config": ck["config"], "agent": {"policy": actor},
               "env_steps": ck.get("env_steps"), "iteration": ck.get("iteration"),
               "obs_spaces": ck.get("obs_spaces"), "source": str(path),
               "provenance": dict(provenance or {})}
    return save_checkpoint(out, payload)
