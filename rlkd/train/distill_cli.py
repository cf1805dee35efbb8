"""``rlkd distill``: vision distillation (agent ``vision-distill``,
:mod:`rlkd.agents.vision_distill`) as a command, on the train runner: the run is an ordinary
``rlkd train`` run (config.yaml, checkpoints, ``rlkd play / eval / export``, ``rlkd train
--resume``).

    rlkd distill HumanoidMotion-v0 --teacher expert:humanoid-walk --student rays --out runs/v
    rlkd distill HumanoidMotion-v0 --teacher walk=expert:humanoid-walk,turn=runs/t \\
        --set motion=walk,turn distill.dagger_steps=2000000 ppo.num_steps=32 --out runs/v2
    rlkd distill --out runs/v --resume --steps 20000000

It is ``rlkd train ENV --agent vision-distill --teacher SRC`` with the student's env settings
filled in: ``action_mode=absolute``, the camera (``vision``), the teachers' action mode for the
env's ``teacher`` group (``teacher_action_mode``) and ``distill.student_groups``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro

from rlkd.train.cli import UsageError, as_usage_error, learn_and_report, parse_overrides, \
    user_errors

#: ``--student`` -> (student groups, the env's ``vision`` setting or None).
STUDENTS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "rays": (("student",), "rays"),
    "keypoints2d": (("student",), "keypoints2d"),
    "image": (("proprio", "image"), None),
    "rays+image": (("student", "image"), "rays"),
}
#: Agent config sections ``--set SECTION.key=value`` reaches.
SECTIONS = ("distill", "ppo")
AGENT = "vision-distill"
DEFAULT_STEPS = 10_000_000


def split_overrides(pairs: tuple[str, ...]) -> tuple[dict, dict[str, dict]]:
    """``--set`` pairs -> ``(env overrides, {section: overrides})``: ``distill.KEY=V`` and
    ``ppo.KEY=V`` go to the agent's sections, plain ``KEY=V`` to the env config."""
    env: dict = {}
    agent: dict[str, dict] = {}
    for key, value in parse_overrides(pairs).items():
        section, dot, name = key.partition(".")
        if not dot:
            env[key] = value
        elif section in SECTIONS and name:
            agent.setdefault(section, {})[name] = value
        else:
            raise UsageError(f"--set {key}=...: a dotted key must start with one of the agent's "
                             f"sections ({', '.join(s + '.' for s in SECTIONS)}); env keys have "
                             f"no dot")
    return env, agent


def _env_fields(env_id: str) -> set[str]:
    """Field names of ``env_id``'s config (empty when it has no dataclass config)."""
    import dataclasses

    import rlkd

    cfg = rlkd.spec(env_id).default_config()
    return {f.name for f in dataclasses.fields(cfg)} if dataclasses.is_dataclass(cfg) else set()


def _teacher_mode(spec: str, device: str) -> str | None:
    """The one action mode of the teachers in ``spec`` (None when they differ: the agent
    refuses that with the env's ``teacher`` group)."""
    from rlkd.agents.vision_teachers import parse_teacher_spec
    from rlkd.policies import load_policy

    default, mapping = parse_teacher_spec(spec)
    sources = [s for s in dict.fromkeys([default, *mapping.values()]) if s is not None]
    modes = {str(load_policy(s, device=device).action_mode) for s in sources}
    return modes.pop() if len(modes) == 1 else None


def distill_config(env: str, teacher: str, student: str, steps: int, out: Path | None,
                   set: tuple[str, ...] = (), num_envs: int = 256, seed: int = 0,
                   device: str = "cpu", **train_fields):
    """The :class:`~rlkd.train.config.TrainConfig` of an ``rlkd distill`` command line
    (``train_fields``: further TrainConfig fields, e.g. ``video=False``)."""
    from rlkd.train.config import TrainConfig

    groups, vision = STUDENTS[student]
    env_overrides, agent_cfg = split_overrides(set)
    fields = _env_fields(env)
    env_overrides.setdefault("action_mode", "absolute")
    if vision is not None and "vision" in fields:
        env_overrides.setdefault("vision", vision)
    if "teacher_action_mode" in fields and "teacher_action_mode" not in env_overrides:
        mode = _teacher_mode(teacher, device)
        if mode is not None:
            env_overrides["teacher_action_mode"] = mode
    distill = agent_cfg.setdefault("distill", {})
    given = distill.get("teacher")
    if given is not None and str(given) != teacher:
        raise UsageError(f"--teacher {teacher} and --set distill.teacher={given} disagree; "
                         f"give one")
    distill["teacher"] = teacher
    distill.setdefault("student_groups", list(groups))
    return TrainConfig(env=env, agent=AGENT, num_envs=num_envs, steps=steps, seed=seed,
                       device=device, out=str(out or f"runs/{env}_distill_{student}_s{seed}"),
                       env_overrides=env_overrides, agent_cfg=agent_cfg, **train_fields)


def distill_cmd(
    env: Annotated[Optional[str], tyro.conf.arg(
        help="env id (HumanoidMotion-v0); omit with --resume", metavar="ENV")] = None,
    /,
    teacher: Optional[str] = None,
    student: Literal["rays", "keypoints2d", "image", "rays+image"] = "rays",
    steps: Optional[int] = None,
    out: Optional[Path] = None,
    resume: bool = False,
    set: tuple[str, ...] = (),
    num_envs: int = 256,
    seed: int = 0,
    device: str = "cpu",
    checkpoint_every: int = 50,
    video: bool = True,
    progress: bool = True,
    log_interval_s: float = 30.0,
    overwrite: bool = False,
) -> None:
    """Distill motion-tracking experts into a camera student: DAgger (per-env beta mixture,
    aggregated dataset, teacher labels made absolute, privileged critic learning alongside),
    then PPO fine-tuning from the student (agent vision-distill; `rlkd list agents` documents
    every key). The run is an ordinary run: rlkd play / eval / export take it.

    Args:
        env: env id.
        teacher: the experts: one source for every clip (expert:humanoid-walk, a run directory,
            a checkpoint or an exported policy) or clip=SOURCE pairs, comma-separated
            (walk=expert:humanoid-walk,turn=runs/t; a bare source is the default of the rest).
        student: what the student sees besides proprioception: rays (pixel-aligned keypoint
            rays), keypoints2d (pixels and intrinsics), image / rays+image (GPU-rendered camera
            frames: refused unless the env provides an 'image' group).
        steps: total env steps, DAgger (distill.dagger_steps) then fine-tuning. Default
            10,000,000, or the resumed run's own budget.
        out: run directory. Default runs/<env>_distill_<student>_s<seed>.
        resume: continue the run in --out exactly from its last checkpoint (--steps may raise
            the budget; --checkpoint-every, --video, --progress, --log-interval-s may be given).
        set: key=value overrides (YAML values): env config keys (motion=walk@1.0,walk,
            future_steps=[1,3]), and the agent's sections as distill.KEY / ppo.KEY
            (distill.dagger_steps=2000000, distill.beta_decay=0.8, ppo.num_steps=32).
        num_envs: envs (per rank).
        seed: seed of envs, networks and sampling.
        device: torch device.
        checkpoint_every: iterations between checkpoints (DAgger-stage checkpoints hold the
            aggregated dataset).
        video: render the final policy to videos/final.mp4.
        progress: show progress.
        log_interval_s: seconds between progress lines when stdout is not a terminal.
        overwrite: start over in an existing --out.
    """
    from rlkd.train.runner import OnPolicyRunner

    try:
        if resume:
            if out is None:
                raise UsageError("--resume continues the run in --out: give --out RUN")
            given = [flag for flag, value, default in (
                ("ENV", env, None), ("--teacher", teacher, None), ("--student", student, "rays"),
                ("--set", set, ()), ("--num-envs", num_envs, 256), ("--seed", seed, 0),
                ("--device", device, "cpu"), ("--overwrite", overwrite, False)) if value != default]
            if given:
                raise UsageError(f"--resume continues {out} with its own config; these would be "
                                 f"ignored: {', '.join(given)} (only --steps, --checkpoint-every, "
                                 f"--video, --progress, --log-interval-s may be given)")
            settings = {k: v for k, v, default in (
                ("checkpoint_every", checkpoint_every, 50), ("video", video, True),
                ("progress", progress, True), ("log_interval_s", log_interval_s, 30.0))
                if v != default}  # the run's own unless given
            runner = OnPolicyRunner.resume(out, steps=steps, require_progress=True,
                                           settings=settings)
        else:
            if env is None or not teacher:
                raise UsageError("rlkd distill needs ENV and --teacher SOURCE (or clip=SOURCE,...)"
                                 "; or --out RUN --resume")
            cfg = distill_config(env, teacher, student, DEFAULT_STEPS if steps is None else steps,
                                 out, set, num_envs, seed, device,
                                 checkpoint_every=checkpoint_every, video=video,
                                 progress=progress, log_interval_s=log_interval_s,
                                 overwrite=overwrite)
            runner = OnPolicyRunner(cfg)
    except user_errors() as e:
        raise as_usage_error(e) from e
    learn_and_report(runner)
