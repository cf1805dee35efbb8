"""The experts of vision distillation (:mod:`rlkd.agents.vision_distill`): one teacher per motion
clip, loaded with :func:`rlkd.policies.load_policy`, checked against the env, and run batched.

    teachers = TeacherSet("walk=expert:humanoid-walk,turn=runs/turn", env, device)
    labels = teachers.labels(obs)      # (N, A) absolute actions in [-1, 1] for the coming step

Each env is labelled by the teacher of its current clip (``env.clip_ids`` -> ``env.motions.
names``); every teacher runs once on its own rows (boolean index masks, no per-env loop). A
teacher's ``policy`` group is read from the env's ``teacher`` group when the env has one (the
previous-action part in the teacher's own action mode); its actions are made absolute with
``env.to_absolute(actions, teacher.action_mode)`` unless it already acts in absolute mode.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rlkd.nn import group_specs
from rlkd.policies import CheckpointError, load_policy

#: Groups a student must not read: the reference motion or the simulator's privileged state.
PRIVILEGED_GROUPS = ("policy", "reference", "critic", "teacher")


def parse_teacher_spec(spec: str) -> tuple[str | None, dict[str, str]]:
    """``"walk=expert:a,turn=runs/t"`` -> ``(None, {"walk": "expert:a", "turn": "runs/t"})``;
    ``"expert:a"`` -> ``("expert:a", {})``. A bare source is the default of every clip not
    named; ``ValueError`` for an empty spec, two defaults or a clip named twice."""
    default, mapping = None, {}
    items = [s.strip() for s in str(spec or "").split(",") if s.strip()]
    if not items:
        raise ValueError("vision-distill needs a teacher: --teacher SOURCE (one expert for "
                         "every clip, e.g. expert:humanoid-walk) or --teacher clip=SOURCE,... "
                         "(one per clip)")
    for item in items:
        clip, sep, source = item.partition("=")
        if not sep:
            if default is not None:
                raise ValueError(f"--teacher gives two default sources ({default!r}, {item!r}); "
                                 f"name the clips: clip=SOURCE,...")
            default = item
            continue
        clip, source = clip.strip(), source.strip()
        if not clip or not source:
            raise ValueError(f"--teacher item {item!r} is not clip=SOURCE")
        if clip in mapping:
            raise ValueError(f"--teacher names clip {clip!r} twice")
        mapping[clip] = source
    return default, mapping


def _teacher_specs(teacher) -> dict[str, dict]:
    """``{group: {"shape", "dtype"}}`` the teacher reads (a LoadedPolicy's model spec, or a
    deployment file's metadata)."""
    model = getattr(teacher, "model", None)
    if model is not None and callable(getattr(model, "spec", None)):
        return {g: model.spec()["specs"][g] for g in teacher.obs_groups}
    meta = getattr(teacher, "metadata", {}) or {}
    return {g["name"]: {"shape": list(g["shape"]), "dtype": g["dtype"]}
            for g in meta.get("obs_groups", [])}


def _load(source: str, clips: list[str], device):
    """``load_policy(source)`` with the clips it teaches named in its errors (same types)."""
    where = f"vision-distill teacher {source} (clips {', '.join(clips)})"
    try:
        return load_policy(source, device=device)
    except CheckpointError as e:
        raise CheckpointError(f"{where}: {e}") from e
    except (ValueError, KeyError) as e:
        raise ValueError(f"{where}: {e.args[0] if e.args else e}") from e


class TeacherSet:
    """The experts labelling ``env``'s states, one per clip (see the module docstring).

    Args:
        spec: :func:`parse_teacher_spec` syntax.
        env: the student's BatchedEnv (read for ``observation_spaces``, ``act_dim``,
            ``spec_id``, ``motions.names``, ``clip_ids``, ``to_absolute``, ``cfg``).
        device: where the teachers run.

    Raises (before any step): ``ValueError`` for an unknown expert name, a clip of the mapping
    the env does not have, a clip without a teacher, a residual teacher without
    ``env.to_absolute``, or a teacher whose action mode differs from the env's
    ``teacher_action_mode``; :class:`CheckpointError` for a missing/corrupt file or a teacher
    trained on another env, with another action size, or reading groups the env lacks or gives
    with another shape or dtype.
    """

    def __init__(self, spec: str, env, device):
        self.env = env
        default, mapping = parse_teacher_spec(spec)
        motions = getattr(env, "motions", None)
        names = list(getattr(motions, "names", ())) if motions is not None else []
        if mapping and not names:
            raise ValueError(f"--teacher maps clips {sorted(mapping)}, but {env.spec_id} has no "
                             f"motion clips; give one source")
        unknown = sorted(c for c in mapping if c not in names)
        if unknown:
            raise ValueError(f"--teacher names clip(s) {unknown} that the env's motion does "
                             f"not have (its clips: {names}; set them with --set motion=...)")
        per_clip = [mapping.get(c, default) for c in names] if names else [default]
        orphans = [c for c, s in zip(names, per_clip) if s is None]
        if orphans:
            raise ValueError(f"clip(s) {orphans} have no teacher: add clip=SOURCE to --teacher, "
                             f"or a bare SOURCE as the default of the clips not named")
        self.sources = list(dict.fromkeys(per_clip))
        self.teachers = [_load(s, [c for c, t in zip(names or ["all"], per_clip) if t == s],
                               device) for s in self.sources]
        #: ``(num_clips,)`` int64: the teacher index of each clip.
        self.clip_teacher = torch.tensor([self.sources.index(s) for s in per_clip],
                                         dtype=torch.int64, device=device)
        self.modes = [str(t.action_mode) for t in self.teachers]
        #: ``{teacher group: env group}``: ``policy`` is read from ``teacher`` when the env has it.
        self.route = {}
        for source, teacher in zip(self.sources, self.teachers):
            self._check(source, teacher)

    def _check(self, source: str, teacher) -> None:
        env, spaces = self.env, self.env.observation_spaces
        where = f"vision-distill teacher {source}"
        theirs = str(teacher.env_id).removeprefix("rlkd/")
        ours = str(env.spec_id).removeprefix("rlkd/")
        if theirs != ours:
            raise CheckpointError(f"{where}: trained on {theirs}, this run is on {ours}")
        have = group_specs(spaces)
        for g, spec in _teacher_specs(teacher).items():
            src = "teacher" if g == "policy" and "teacher" in spaces else g
            if src not in have:
                raise CheckpointError(f"{where}: it reads observation group {g!r}, which this "
                                      f"env lacks (groups: {sorted(have)})")
            if list(spec["shape"]) != have[src]["shape"] or spec["dtype"] != have[src]["dtype"]:
                raise CheckpointError(f"{where}: it reads {g!r} as {dict(spec)}, this env's "
                                      f"{src!r} is {have[src]} (another future_steps, motion or "
                                      f"env setting?)")
            self.route[g] = src
        model = getattr(teacher, "model", None)
        act_dim = int(model.spec()["act_dim"] if callable(getattr(model, "spec", None))
                      else (getattr(teacher, "metadata", {}) or {}).get("act_dim", env.act_dim))
        if act_dim != env.act_dim:
            raise CheckpointError(f"{where}: it outputs {act_dim} actions, this env takes "
                                  f"{env.act_dim}")
        mode = str(teacher.action_mode)
        if mode != "absolute" and not callable(getattr(env, "to_absolute", None)):
            raise ValueError(f"{where}: it acts in {mode!r} mode and this env has no "
                             f"to_absolute() to turn its actions into absolute labels")
        env_mode = getattr(getattr(env, "cfg", None), "teacher_action_mode", None)
        if "teacher" in spaces and env_mode is not None and env_mode != mode:
            raise ValueError(f"{where}: it acts in {mode!r} mode, but the env's 'teacher' group "
                             f"carries the previous action in {env_mode!r} form; --set "
                             f"teacher_action_mode={mode}")

    def __repr__(self) -> str:
        parts = (f"{Path(s).name}:{m}" for s, m in zip(self.sources, self.modes))
        return f"TeacherSet({', '.join(parts)})"

    @torch.no_grad()
    def labels(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(N, A)`` labels for ``obs`` (the env's current observations; call before its
        ``step``): each env's clip teacher's mean action, made absolute for the coming step."""
        env = self.env
        src = {g: obs[e] for g, e in self.route.items()}
        if len(self.teachers) == 1:
            raw = self.teachers[0](src)
            tid = None
        else:
            tid = self.clip_teacher[env.clip_ids]
            raw = torch.zeros(env.num_envs, env.act_dim, device=tid.device)
            for k, teacher in enumerate(self.teachers):
                rows = (tid == k).nonzero().squeeze(-1)
                if rows.numel():
                    raw[rows] = teacher({g: v[rows] for g, v in src.items()})
        out = raw
        for mode in dict.fromkeys(self.modes):
            if mode == "absolute":
                continue
            absolute = env.to_absolute(raw, mode)
            if tid is None:
                out = absolute
            else:
                use = torch.tensor([m == mode for m in self.modes], device=tid.device)[tid]
                out = torch.where(use[:, None], absolute, out)
        return out.clamp(-1.0, 1.0)
