"""``rlkd train`` and ``rlkd list agents``: the command line built from :class:`TrainConfig` and
the agent registry, so a new config field or a newly registered agent (and its config sections)
shows up on the command line and in ``--help`` without editing this file."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import tyro

from rlkd.core.config import field_docs
from rlkd.train.config import TrainConfig

#: TrainConfig fields whose command-line form differs from the dataclass field.
_RENAMED = {"env_overrides": "set"}
TRAIN_DOC = """Train a registered agent (`rlkd list agents`). With no arguments: the built-in default
(AGV warehouse, ppo-rdd, 256 envs, 6M steps; 10-15 minutes on 2 CPU cores).

Overrides are key=value pairs parsed as YAML (numbers, booleans, lists): --set for the env
config, --<section> for each of the agent's config sections (--ppo, --intrinsic, ...)."""


class UsageError(SystemExit):
    """A user mistake on the command line (a bad flag value, an unknown env id or config key, a
    corrupt checkpoint, a run directory in the way): :func:`rlkd.cli.main` prints
    ``error: <message>`` on stderr and exits with status 2, without a traceback. ``str()`` is
    the message. Set ``RLKD_DEBUG=1`` to get the original exception's traceback instead."""

    def __init__(self, message: str):
        message = " ".join(str(message).split())  # one line, whatever the source wrote
        super().__init__(message if message.startswith("error:") else f"error: {message}")
        self.code = 2  # argparse's status for usage errors; the message stays in args[0]


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that, raised while a command is being set up (parsing, building the env
    and the agent, loading a checkpoint), are the user's mistake; later they are bugs."""
    from rlkd.train.checkpoint import CheckpointError
    from rlkd.train.logger import MissingPackageError

    return (KeyError, TypeError, ValueError, CheckpointError, MissingPackageError)


def as_usage_error(exc: BaseException) -> BaseException:
    """``exc`` as a :class:`UsageError` (its message alone: a KeyError's quotes dropped), or
    ``exc`` itself under ``RLKD_DEBUG=1``."""
    import os

    if os.environ.get("RLKD_DEBUG"):
        return exc
    msg = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else exc
    return UsageError(str(msg))


def parse_overrides(pairs: tuple[str, ...], flag: str = "--set") -> dict[str, Any]:
    """``("a=1", "b=[2, 3]") -> {"a": 1, "b": [2, 3]}``; a malformed pair exits with one line."""
    import yaml

    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} expects key=value, got {item!r}")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            # Not YAML (e.g. ``motion=@general``: '@' is reserved at a scalar's start): a
            # flow-looking value is a user mistake, anything else is the literal string.
            if value.lstrip().startswith(("[", "{")):
                raise UsageError(f"{flag} {key.strip()}: cannot parse {value!r} as a list or "
                                 "mapping") from None
            parsed = value
        if isinstance(parsed, str):  # YAML 1.1 leaves "1e-5" a string; on a CLI it is a number
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key.strip()] = parsed
    return out


def _section_help(section: str, agents: list[str]) -> str:
    from rlkd.agents import AGENTS

    by_cls: dict[type, list[str]] = {}
    for name in agents:
        by_cls.setdefault(AGENTS[name].sections[section], []).append(name)
    parts = []
    for cls, names in by_cls.items():
        keys = ", ".join(f.name for f in dataclasses.fields(cls))
        parts.append(f"{cls.__name__} (agents {', '.join(names)}): {keys}")
    return (f"Overrides of the agent's {section!r} config section, key=value. "
            + "; ".join(parts) + ". `rlkd list agents` documents every key.")


def _agents_doc() -> str:
    from rlkd.agents import AGENTS

    return "\n".join(f"  {s.name}: {s.description} (sections: {', '.join(s.sections) or '-'})"
                     for s in AGENTS.values())


def train_args_class() -> type:
    """A dataclass for tyro with one flag per :class:`TrainConfig` field (help = the field's
    docstring), ``--resume``, and one ``--<section>`` flag per config section of the registered
    agents. Built at call time, so agents registered after import are included."""
    from rlkd.agents import AGENTS
    from rlkd.agents.registry import all_sections

    docs = field_docs(TrainConfig)
    hints = typing.get_type_hints(TrainConfig)
    spec: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(TrainConfig):
        doc = docs.get(f.name, "")
        if f.name == "env":
            spec.append(("env", Annotated[str, tyro.conf.Positional, tyro.conf.arg(
                help=doc, metavar="ENV")], dataclasses.field(default=f.default)))
        elif f.name == "agent":
            names = tuple(AGENTS)
            spec.append(("agent", Annotated[Literal[names], tyro.conf.arg(help=doc)],  # type: ignore[valid-type]
                         dataclasses.field(default=f.default)))
        elif f.name == "agent_cfg":
            for section, agents in all_sections().items():
                spec.append((section, Annotated[tuple[str, ...], tyro.conf.arg(
                    help=_section_help(section, agents))], dataclasses.field(default=())))
        elif f.name in _RENAMED:
            spec.append((_RENAMED[f.name], Annotated[tuple[str, ...], tyro.conf.arg(
                help=doc)], dataclasses.field(default=())))
        elif f.name == "steps":
            spec.append(("steps", Annotated[Optional[int], tyro.conf.arg(
                help=f"{doc} Default {f.default:,}, or the resumed run's own budget.")],
                dataclasses.field(default=None)))
        elif f.name == "out":
            spec.append(("out", Annotated[Optional[Path], tyro.conf.arg(
                help=f"{doc} Default runs/<env>_<agent>_s<seed>.")],
                dataclasses.field(default=None)))
        elif f.name == "init_from":
            spec.append(("init_from", Annotated[Optional[Path], tyro.conf.arg(help=doc)],
                         dataclasses.field(default=None)))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            spec.append((f.name, Annotated[hints[f.name], tyro.conf.arg(help=doc)],
                         dataclasses.field(default=default)))
    spec.append(("teacher", Annotated[Optional[str], tyro.conf.arg(
        help="Teacher of a distillation agent (run directory, training checkpoint or "
             "expert:<name>): shorthand for --<section> teacher=... of the agent's config "
             "section that has a teacher field (aacd: --aacd teacher=RUN).")],
        dataclasses.field(default=None)))
    spec.append(("resume", Annotated[Optional[Path], tyro.conf.arg(
        help="Continue this run directory from its last checkpoint, exactly: --steps may raise "
             "the budget, other flags come from the run's config.yaml.")],
        dataclasses.field(default=None)))
    cls = dataclasses.make_dataclass("TrainArgs", spec)
    cls.__doc__ = TRAIN_DOC + "\n\nRegistered agents:\n" + _agents_doc()
    return cls


def teacher_section(sections: dict[str, type]) -> str | None:
    """The config section (of an agent's ``sections``) whose dataclass has a ``teacher`` field,
    or ``None``."""
    for section, cls in sections.items():
        if dataclasses.is_dataclass(cls) and "teacher" in {f.name for f in dataclasses.fields(cls)}:
            return section
    return None


def _put_teacher(cfg: dict[str, dict], agent: str, sections: dict[str, type], teacher: str
                 ) -> None:
    """``--teacher X`` as ``cfg[section]["teacher"] = X``; refuses an agent without a teacher
    and a second, different teacher given in the section itself."""
    section = teacher_section(sections)
    if section is None:
        raise UsageError(f"--teacher: agent {agent!r} takes no teacher (distillation agents "
                         f"do: see `rlkd list agents`)")
    given = cfg.get(section, {}).get("teacher")
    if given is not None and str(given) != teacher:
        raise UsageError(f"--teacher {teacher} and --{section} teacher={given} disagree; "
                         f"give one")
    cfg.setdefault(section, {})["teacher"] = teacher


def config_from_args(args) -> TrainConfig:
    """The :class:`TrainConfig` of parsed :func:`train_args_class` arguments."""
    from rlkd.agents import get_agent
    from rlkd.agents.registry import all_sections

    values: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name == "agent_cfg":
            own = get_agent(args.agent).sections
            cfg = {}
            for section in all_sections():
                pairs = getattr(args, section)
                if pairs and section not in own:
                    raise UsageError(f"agent {args.agent!r} has no --{section} section "
                                     f"(its sections: {', '.join(own) or 'none'})")
                if pairs:
                    cfg[section] = parse_overrides(pairs, f"--{section}")
            if getattr(args, "teacher", None) is not None:
                _put_teacher(cfg, args.agent, own, args.teacher)
            values["agent_cfg"] = cfg
        elif f.name in _RENAMED:
            values[f.name] = parse_overrides(getattr(args, _RENAMED[f.name]))
        else:
            values[f.name] = getattr(args, f.name)
    if values["steps"] is None:
        values["steps"] = TrainConfig.steps
    values["out"] = str(values["out"] or f"runs/{args.env}_{args.agent}_s{args.seed}")
    values["init_from"] = None if values["init_from"] is None else str(values["init_from"])
    if values["randomize"] is not None:  # a bad suite or range fails here, in one line
        from rlkd.sim2real.randomize import parse_randomize

        try:
            parse_randomize(values["randomize"], values["randomize_mode"])
        except ValueError as e:
            raise SystemExit(f"error: --randomize: {e}")
    return TrainConfig(**values)


#: TrainConfig fields a ``--resume`` may change: the budget and how the run is shown and saved,
#: none of which changes what is computed (so the resumed run stays exact).
RESUME_SETTABLE = ("steps", "progress", "log_interval_s", "video", "video_steps",
                   "checkpoint_every", "wandb")


def _resume_flags(args, argv: list[str] | None) -> dict[str, str]:
    """``{field: flag}`` of every flag on a ``--resume`` command line: typed in ``argv`` (even
    with their default value) or with a value differing from its default (the positional ENV)."""
    typed = {}
    for tok in argv or ():
        if tok.startswith("--"):
            flag = tok.split("=", 1)[0]
            name = flag[2:].removeprefix("no-").replace("-", "_")
            typed.setdefault(name, flag)
    found = dict(typed)
    for f in dataclasses.fields(args):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if getattr(args, f.name) != default and f.name not in found:
            found[f.name] = "ENV" if f.name == "env" else f"--{f.name.replace('_', '-')}"
    return found


def resume_ignored_flags(args, argv: list[str] | None = None) -> list[str]:
    """The flags of a ``--resume`` command line the run's own config overrules (all but
    :data:`RESUME_SETTABLE`), so they would be ignored."""
    return [flag for name, flag in _resume_flags(args, argv).items()
            if name not in ("resume", *RESUME_SETTABLE)]


def resume_settings(args, argv: list[str] | None = None) -> dict[str, object]:
    """The :data:`RESUME_SETTABLE` values given on a ``--resume`` command line (``steps``
    apart: :meth:`OnPolicyRunner.resume` checks it against the steps done)."""
    return {name: getattr(args, name) for name in _resume_flags(args, argv)
            if name in RESUME_SETTABLE and name != "steps"}


def run_train(args, argv: list[str] | None = None) -> None:
    """Run ``rlkd train`` for parsed arguments (a new run, or ``--resume``); ``argv`` (the
    command line) lets ``--resume`` name the flags it would ignore. User mistakes found while
    setting up raise :class:`UsageError`."""
    from rlkd.train.runner import OnPolicyRunner

    try:
        if args.resume is not None:
            ignored = resume_ignored_flags(args, argv)
            if ignored:
                raise UsageError(
                    f"--resume continues {args.resume} with its own config; only "
                    f"{', '.join('--' + n.replace('_', '-') for n in RESUME_SETTABLE)} may be "
                    f"given, these would be ignored: {', '.join(ignored)} (a fresh run with "
                    f"other settings: --out NEW_DIR, or --out {args.resume} --overwrite)")
            runner = OnPolicyRunner.resume(args.resume, steps=args.steps, require_progress=True,
                                           settings=resume_settings(args, argv))
        else:
            runner = OnPolicyRunner(config_from_args(args))
    except user_errors() as e:
        raise as_usage_error(e) from e
    learn_and_report(runner)


def learn_and_report(runner) -> None:
    """Train ``runner`` to its budget, shut torchrun down cleanly, and print the one-line
    summary (``rlkd train`` and ``rlkd distill``)."""
    try:
        last = runner.learn()
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()  # clean shutdown of torchrun workers
    if runner.dist.is_main:
        from rich.console import Console

        import math

        # Window means; NaN until an episode has finished (or for a task without success).
        succ = last.get("charts/success_rate", float("nan"))
        ret = last.get("charts/episodic_return", float("nan"))
        parts = [f"{runner.env_steps:,} env steps"]
        parts += [f"success {100 * succ:.1f}%"] if math.isfinite(succ) else []
        parts += [f"return {ret:+.3f}"] if math.isfinite(ret) else ["no episode finished yet"]
        Console().print(f"[bold]done[/]: {', '.join(parts)}; run dir {runner.run_dir}",
                        markup=True, highlight=False)


def describe_agents() -> str:
    """Every registered agent, its config sections and each field's default and docstring."""
    from rlkd.agents import AGENTS

    lines = []
    for spec in AGENTS.values():
        lines.append(f"{spec.name}: {spec.description}")
        for section, cls in spec.sections.items():
            docs = field_docs(cls)
            lines.append(f"  --{section} ({cls.__module__}.{cls.__name__})")
            for f in dataclasses.fields(cls):
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                lines.append(f"    {f.name} = {default!r}: {docs.get(f.name, '')}")
    return "\n".join(lines)
