"""Deployable policy files: a trained run's actor alone (weights, action std and observation
normalizer), with its train config and a provenance record.

``kind: "policy"`` checkpoints load everywhere a run does (:func:`rlkd.policies.load_policy`, so
``rlkd play`` and ``rlkd eval``), at a fraction of a training checkpoint's size: no critic, no
optimizer state, no env state. They cannot be resumed or fine-tuned from (``--init-from`` needs
the critic too).

:func:`export` also writes deployment graphs (``format="onnx"`` / ``"torchscript"``,
:mod:`rlkd.deploy`): the same actor, normalizer folded in, for runtimes without rlkd.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlkd.train.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint, \
    save_checkpoint


def export_policy(run_or_ckpt: str | Path, out: str | Path,
                  provenance: dict[str, Any] | None = None,
                  env_overrides: dict[str, Any] | None = None) -> Path:
    """Write the actor of ``run_or_ckpt`` (run directory: its ``last.pt``) to ``out``
    atomically; ``provenance`` (commands, measured quality, ...) is stored with it.
    ``env_overrides`` replace those keys of the run's own env overrides in the stored config
    (e.g. ``{"motion": "@general"}`` when the run trained on a motion file that exists only
    where it was trained); the replaced values are kept in ``provenance["env_overrides_at_training"]``.

    The file holds the actor's weights (state-dict prefixes
    :data:`rlkd.nn.policy.ACTOR_PREFIXES`), its constructor arguments (``model``, critic
    dropped) and the train config, so :func:`rlkd.policies.load_policy` rebuilds it alone.
    """
    from rlkd.nn.policy import ACTOR_PREFIXES, upgrade_state_dict
    from rlkd.policies import _legacy_model_spec
    from rlkd.train.config import TrainConfig

    path = resolve_checkpoint(run_or_ckpt)
    ck = load_checkpoint(path, required=("config", "agent"))
    if ck.get("kind") == "policy":
        raise CheckpointError(f"{path} is already an exported policy")
    policy = ck["agent"].get("policy") or {}
    if not any(k.startswith("actor.") for k in policy):
        raise CheckpointError(f"{path} holds no actor weights (keys {sorted(policy)[:4]}...)")
    cfg = TrainConfig.from_dict(ck["config"])
    provenance = dict(provenance or {})
    if env_overrides:
        from rlkd.core.config import apply_overrides
        from rlkd.core.registry import spec as env_spec

        # Unknown keys and bad values fail here, not when the file is next played.
        apply_overrides(env_spec(cfg.env).default_config(), env_overrides, owner=cfg.env)
        provenance["env_overrides_at_training"] = {k: cfg.env_overrides.get(k)
                                                   for k in env_overrides}
        cfg.env_overrides = {**cfg.env_overrides, **env_overrides}
    spec = dict(ck.get("model") or _legacy_model_spec(ck, cfg))
    spec["critic_groups"] = None
    spec["specs"] = {g: v for g, v in spec["specs"].items() if g in spec["actor_groups"]}
    weights = upgrade_state_dict(policy, spec["actor_groups"], None)
    actor = {k: v.detach().clone() for k, v in weights.items() if k.startswith(ACTOR_PREFIXES)}
    payload = {"kind": "policy", "config": cfg.to_dict(), "agent": {"policy": actor},
               "model": spec, "env_steps": ck.get("env_steps"), "iteration": ck.get("iteration"),
               "obs_spaces": ck.get("obs_spaces"), "obs_specs": ck.get("obs_specs"),
               "source": str(path), "provenance": provenance}
    return save_checkpoint(out, payload)


#: ``rlkd export --format`` choices -> default output suffix.
FORMATS = {"policy": ".pt", "onnx": ".onnx", "torchscript": ".ts"}


def export(source: str | Path, out: str | Path, format: str = "policy",
           provenance: dict[str, Any] | None = None,
           env_overrides: dict[str, Any] | None = None) -> Path:
    """Export the actor of ``source`` to ``out`` as ``format``:

    * ``"policy"``: an rlkd policy file (:func:`export_policy`; ``source`` is a run or a
      training checkpoint);
    * ``"onnx"`` / ``"torchscript"``: a deployment graph (:mod:`rlkd.deploy`) built from
      :func:`rlkd.policies.load_policy` (``source``: a run, a checkpoint, a policy file or
      ``expert:<name>``), checked against torch before it is written.

    ``env_overrides`` (policy files only) replace keys of the stored env overrides.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}: choose one of {sorted(FORMATS)}")
    if format == "policy":
        return export_policy(source, out, provenance, env_overrides)
    if env_overrides:
        raise ValueError("env overrides can be stored in policy files only (--format policy)")
    from rlkd import deploy
    from rlkd.policies import LoadedPolicy, load_policy

    policy = load_policy(source if str(source).startswith("expert:") else Path(source))
    if not isinstance(policy, LoadedPolicy):
        raise CheckpointError(f"{source} is already a deployment file; export its run instead")
    writer = deploy.export_onnx if format == "onnx" else deploy.export_torchscript
    return writer(policy, out, provenance)
