"""Policies: trained ones loaded without their env or trainer (:func:`load_policy`), and
stand-ins (random, zero, scripted) for ``rlkd play`` / ``rlkd eval`` when an env id is given.

    policy = load_policy("expert:humanoid-walk")    # or a run dir, checkpoint, exported file
    policy.obs_groups, policy.env_id, policy.env_overrides, policy.action_mode
    actions = policy(obs)                            # obs: the env's dict; (N, A) in [-1, 1]

Loading never builds an env or an agent and never runs code from the file
(``torch.load(weights_only=True)``, :mod:`rlkd.train.checkpoint`). Distillation methods load
their teachers this way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from rlkd.train.checkpoint import CheckpointError

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
EXPERTS = {"humanoid-walk": ("rlkd.envs.humanoid", "experts/walk.pt"),
           "humanoid-general": ("rlkd.envs.humanoid", "experts/general.pt")}


def expert_path(name: str):
    """Path of the shipped expert ``name`` (see :data:`EXPERTS`)."""
    from importlib.resources import files
    from pathlib import Path

    if name not in EXPERTS:
        raise ValueError(f"unknown expert {name!r}; shipped experts: {sorted(EXPERTS)}")
    package, file = EXPERTS[name]
    return Path(str(files(package) / file))


class LoadedPolicy:
    """A trained actor: ``policy(obs) -> actions``, mean actions clamped to [-1, 1], no autograd,
    normalizers frozen.

    Attributes:
        model: the :class:`~rlkd.nn.policy.ActorCritic` (actor only) in eval mode.
        obs_groups: the observation groups it reads, in order.
        env_id, env_overrides: the task it was trained on (``rlkd.make(env_id,
            **env_overrides)`` rebuilds it).
        action_mode: how its actions drive the task (``"absolute"``; the humanoid's experts may
            be ``"residual"``: offsets from the reference).
        agent: the agent that trained it; ``train_config``: its whole train config (dict).
        provenance: notes stored by ``rlkd export`` (commands, measured quality); may be empty.
        source: the file it was loaded from.
    """

    def __init__(self, model, train_config: dict, action_mode: str, source: Path,
                 provenance: dict | None = None):
        self.model = model.eval()
        self.train_config = dict(train_config)
        self.env_id: str = train_config["env"]
        self.env_overrides: dict = dict(train_config.get("env_overrides") or {})
        self.agent: str = train_config.get("agent", "")
        self.action_mode = action_mode
        self.source = Path(source)
        self.provenance = dict(provenance or {})

    @property
    def obs_groups(self) -> list[str]:
        return self.model.actor_groups

    @property
    def device(self) -> torch.device:
        return self.model.log_std.device

    def to(self, device) -> "LoadedPolicy":
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``obs`` (a dict holding at least :attr:`obs_groups`, ``(N, ...)`` each) ->
        ``(N, act_dim)`` actions in [-1, 1]."""
        missing = [g for g in self.obs_groups if g not in obs]
        if missing:
            raise KeyError(f"policy {self.source.name} reads observation groups {missing}, "
                           f"absent from the given obs ({sorted(obs)})")
        return self.model.act_deterministic(obs).clamp(-1.0, 1.0)

    def __repr__(self) -> str:
        return (f"LoadedPolicy({self.source.name}: {self.env_id}, agent {self.agent}, reads "
                f"{self.obs_groups}, action_mode {self.action_mode})")


def _legacy_model_spec(ck: dict, cfg) -> dict:
    """The actor's constructor arguments for a checkpoint of format v1, whose policies were
    all PPO-family actor-critics on one flat group (their PPO config overrides are stored)."""
    from rlkd.agents import get_agent

    ppo = get_agent(cfg.agent).configs(cfg.agent_cfg)["ppo"]
    shapes = ck.get("obs_spaces") or {}
    missing = [g for g in ppo.actor_groups if g not in shapes]
    if missing:
        raise CheckpointError(f"checkpoint lacks the shapes of observation groups {missing}")
    return {"specs": {g: {"shape": list(shapes[g]), "dtype": "float32"} for g in ppo.actor_groups},
            "actor_groups": list(ppo.actor_groups), "critic_groups": None,
            "act_dim": int(ck["agent"]["policy"]["log_std"].shape[0]), "num_heads": 1,
            "actor_hidden": list(ppo.actor_hidden), "critic_hidden": list(ppo.critic_hidden),
            "activation": ppo.activation, "init_noise_std": 1.0,
            "normalize_obs": ppo.normalize_obs}


def _action_mode(env_id: str, overrides: dict) -> str:
    if "action_mode" in overrides:
        return str(overrides["action_mode"])
    from rlkd.core.registry import spec

    try:  # the task's default config (its class is imported, not constructed)
        return str(getattr(spec(env_id).default_config(), "action_mode", "absolute"))
    except KeyError:
        return "absolute"


def load_policy(source: str | Path, device: str | torch.device = "cpu"):
    """The trained policy in ``source``: a run directory (its ``checkpoints/last.pt``), a
    training checkpoint, an exported policy file or ``expert:<name>`` (:data:`EXPERTS`) -> a
    :class:`LoadedPolicy`; or a deployment file of ``rlkd export --format onnx|torchscript``
    (suffix ``.onnx``, ``.ts``, ``.torchscript``) -> a :class:`rlkd.deploy.DeployedPolicy`
    with the same interface, its env id and overrides read from the file's metadata.

    Builds the actor alone from the file (no env, no agent, no critic). Raises
    :class:`~rlkd.train.checkpoint.CheckpointError` when the file is missing, corrupt, holds
    anything but tensors and plain data, or its weights do not fit its own description.

    Security: rlkd checkpoints never run code from the file, and neither do ONNX files, but a
    **TorchScript file is code** (``torch.jit.load``): it is loaded only when ``source`` names
    such a file explicitly by its suffix, never found inside a run directory.
    """
    from rlkd.nn.policy import ACTOR_PREFIXES, ActorCritic, upgrade_state_dict
    from rlkd.train.checkpoint import load_checkpoint, resolve_checkpoint
    from rlkd.train.config import TrainConfig

    if isinstance(source, str) and source.startswith("expert:"):
        source = expert_path(source[len("expert:"):])
    from rlkd.deploy import DeployedPolicy, deploy_format

    if deploy_format(source) is not None and not Path(source).is_dir():
        if not Path(source).is_file():
            raise CheckpointError(f"file not found: {source}")
        return DeployedPolicy(source, device=device)
    path = resolve_checkpoint(source)
    if not path.exists():
        raise CheckpointError(f"file not found: {path}")
    ck = load_checkpoint(path, map_location=device, required=("config", "agent"))
    cfg = TrainConfig.from_dict(ck["config"])
    spec = dict(ck.get("model") or _legacy_model_spec(ck, cfg))
    spec["critic_groups"] = None  # deployment: the actor alone
    try:
        model = ActorCritic(**spec)
    except (TypeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: its model description does not build an actor: {e}") \
            from e
    weights = upgrade_state_dict(ck["agent"]["policy"], spec["actor_groups"], None)
    actor = {k: v for k, v in weights.items() if k.startswith(ACTOR_PREFIXES)}
    try:
        model.load_state_dict(actor, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit {cfg.env} / {cfg.agent}: {e}") from e
    model.to(device)
    return LoadedPolicy(model, cfg.to_dict(), _action_mode(cfg.env, cfg.env_overrides), path,
                        ck.get("provenance"))


def load_training_checkpoint(source: str | Path,
                             device: str | torch.device = "cpu") -> tuple[Path, dict]:
    """``(path, checkpoint)`` of a run directory (its ``last.pt``) or checkpoint file, whole, for
    distillation methods that need more than the actor (AACD copies the teacher's critic);
    loaded as :func:`load_policy` loads (``weights_only=True``, checksum verified). Raises
    :class:`CheckpointError` when the file is missing, corrupt or lacks ``config`` / ``agent``;
    the caller checks ``checkpoint.get("kind")`` (``"policy"``: an export, actor only)."""
    from rlkd.train.checkpoint import load_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(source)
    if not path.exists():
        raise CheckpointError(f"file not found: {path}")
    return path, load_checkpoint(path, map_location=device, required=("config", "agent"))


def policy_source(target: str, stand_in: str = "random", device: str = "cpu",
                  seed: int = 0, descriptor: str | None = None
                  ) -> tuple[str, dict, PolicyFactory, str]:
    """What to evaluate: ``(env_id, env_overrides, policy_factory, label)``.

    ``target`` is a run directory / checkpoint of ``rlkd train`` or an exported policy (its
    env, its overrides, its policy with mean actions and frozen normalizers; an ONNX /
    TorchScript file of ``rlkd export --format`` too, see :func:`load_policy`), ``expert:<name>``
    (a shipped expert, :data:`EXPERTS`) or an env id (no overrides, the ``stand_in``
    policy), or a QD run directory of ``rlkd qd`` with ``descriptor`` (``"x,y"``, normalized):
    its distilled policy commanded with it; that factory also has ``wrap_env(env)`` (every
    episode from the task's fixed start) and ``report(env)`` (:mod:`rlkd.qd.play`). Raises
    ``CheckpointError`` for a corrupt checkpoint, ``ValueError`` for a bad ``descriptor``.
    """
    from pathlib import Path

    from rlkd.qd.play import is_qd_run, qd_policy_source

    if target.startswith("expert:"):
        target = str(expert_path(target[len("expert:"):]))
    if is_qd_run(target):
        return qd_policy_source(target, descriptor, device)
    if descriptor is not None:
        raise ValueError(f"--descriptor drives the distilled policy of a QD run directory "
                         f"(`rlkd qd ... --out DIR`); {target} is not one")
    if not Path(target).exists():
        return target, {}, lambda env: make_policy(stand_in, env, seed), stand_in
    policy = load_policy(target, device=device)

    def factory(env) -> Policy:
        return policy

    return policy.env_id, dict(policy.env_overrides), factory, \
        f"{policy.agent} ({Path(target).name})"
