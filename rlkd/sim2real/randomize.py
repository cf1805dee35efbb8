"""Domain randomisation while training, from the same perturbation kinds as ``rlkd eval sim2real``.

``rlkd train ... --randomize SPEC`` attaches a :class:`DomainRandomizer` to the training env: at
every reset (the first one and each same-step autoreset) it draws new values for the reset envs
only and writes them through ``env.params`` with the task's ``PERTURBATIONS`` table and the
suites' :data:`~rlkd.sim2real.suites.OPS`, so a policy trains on the very perturbations the
sim-to-real report later measures.

``SPEC`` is one of

* a built-in suite name (``default``, ``dynamics``, ``sensing``, ``latency``) or a suite YAML
  file: the same :func:`~rlkd.sim2real.suites.load_suite` as ``rlkd eval sim2real --suite``;
* a range file, YAML with a ``ranges`` mapping ``kind: [low, high]``::

      ranges: {mass: [0.8, 1.5], friction: [0.5, 1.0], action_latency: [0, 2]}

* inline ranges, ``kind=low:high[,kind=low:high...]`` (e.g. ``mass=0.8:1.5,obs_noise=0:0.05``).

Two modes (``--randomize-mode``):

``ranges`` (default)
    every kind of the spec gets an interval; from a suite it runs from the kind's *identity*
    (1 for factor kinds such as ``mass``, 0 for absolute kinds such as ``obs_noise``: nominal)
    to the most extreme value any of the suite's conditions gives it (``default``: mass
    [1, 1.5], friction [0.5, 1], motor strength [0.8, 1], latency {0, 1, 2} steps, action noise
    [0, 0.1], ...). Each reset env draws every kind independently and uniformly in its interval
    (integer params such as the latency: uniformly among the whole steps), all kinds at once.
``conditions``
    each reset env draws one of the suite's applicable conditions uniformly (``nominal``
    included) and is put in exactly that condition, as ``Condition.apply`` would.

Why ``ranges`` is the default: domain randomisation is meant to cover a *neighbourhood* of the
nominal world the real robot lies somewhere in (Tobin et al. 2017; Peng et al. 2018), not a
handful of points; and training on a suite's discrete conditions and then reporting on the same
conditions measures recall of the test set. Under ``ranges`` an eval condition is an edge of the
training box (and ``combined`` a point inside it), which still says nothing about values outside
the box: evaluate on a wider suite (``dynamics``, ``latency``) for that. ``conditions`` is there
for when the deployment conditions really are a known finite set.

Everything is batched over the reset envs (loops run over kinds and conditions, never envs), the
draws come from the env's own per-env streams (:class:`~rlkd.core.rng.BatchRNG`), so a run is
deterministic for a seed on CPU and its checkpoint (which holds the env's ``params`` and streams)
resumes exactly. Kinds the task lacks (``pd_gains`` and ``tactile_noise`` on the AGV) are
dropped and listed in :meth:`DomainRandomizer.describe`, as the evaluator reports them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from .suites import KINDS, SUITES, Condition, load_suite

MODES = ("ranges", "conditions")

#: Tensor forms of :data:`rlkd.sim2real.suites.OPS`: the same maps with a per-env value ``v``
#: (broadcast over the param's trailing dimensions); tests check they agree with ``OPS``.
TENSOR_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "scale": lambda p, v: p * v,
    "divide": lambda p, v: p / v,
    "set": lambda p, v: torch.zeros_like(p) + v,
    "add": lambda p, v: p + v,
    "traction": lambda p, v: (1.0 - (1.0 - p) * v.clamp(max=1.0)).clamp(0.0, 0.95),
}


def identity(kind: str) -> float:
    """The value of ``kind`` that leaves the task nominal: 1 for factor kinds, else 0."""
    return 1.0 if KINDS[kind][0] == "factor" else 0.0


@dataclass
class RandomizationSpec:
    """A parsed ``--randomize`` value, independent of any env.

    Attributes:
        source: the spec as given (suite name, file path or inline ranges).
        mode: ``ranges`` or ``conditions``.
        ranges: ``kind -> (low, high)`` (ranges mode).
        conditions: the suite's conditions (conditions mode; also kept in ranges mode when the
            spec is a suite, for the record).
    """

    source: str
    mode: str
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    conditions: list[Condition] = field(default_factory=list)


def _check_range(kind: str, lo: Any, hi: Any, where: str) -> tuple[float, float]:
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown perturbation kind {kind!r}; known kinds: "
                         f"{sorted(KINDS)}")
    try:
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: range of {kind!r} is not two numbers: {lo!r}, {hi!r}")
    if not lo <= hi:
        raise ValueError(f"{where}: range of {kind!r} has low {lo} > high {hi}")
    if KINDS[kind][0] == "factor" and lo <= 0:
        raise ValueError(f"{where}: {kind!r} is a factor on the nominal value; its range must "
                         f"be positive, got [{lo}, {hi}]")
    return lo, hi


def _suite_ranges(conditions: list[Condition]) -> dict[str, tuple[float, float]]:
    """Per kind, the interval from its identity to the extreme values the conditions give it."""
    vals: dict[str, list[float]] = {}
    for c in conditions:
        for kind, v in c.perturb.items():
            vals.setdefault(kind, [identity(kind)]).append(float(v))
    return {k: (min(v), max(v)) for k, v in vals.items()}


def parse_randomize(spec: str, mode: str = "ranges") -> RandomizationSpec:
    """Parse a ``--randomize`` value (formats in the module docstring).

    Raises:
        ValueError: unknown mode, suite, file or kind, a malformed range, or ``conditions``
            mode with a spec that has only ranges.
    """
    if mode not in MODES:
        raise ValueError(f"randomize mode must be one of {list(MODES)}, got {mode!r}")
    spec = str(spec).strip()
    if not spec:
        raise ValueError("randomize spec is empty; give a suite name (built-in: "
                         f"{sorted(SUITES)}), a YAML file or kind=low:high ranges")
    ranges: dict[str, tuple[float, float]] | None = None
    conditions: list[Condition] = []
    path = Path(spec)
    if spec in SUITES:
        conditions = load_suite(spec).conditions
    elif path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ValueError(f"randomize file {spec!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"randomize file {path}: not valid YAML: {e}") from e
        if isinstance(data, dict) and "ranges" in data:
            if not isinstance(data["ranges"], dict) or not data["ranges"]:
                raise ValueError(f"randomize file {path}: 'ranges' must map kind -> [low, high]")
            ranges = {}
            for kind, r in data["ranges"].items():
                if not isinstance(r, (list, tuple)) or len(r) != 2:
                    raise ValueError(f"randomize file {path}: ranges.{kind} must be [low, high]")
                ranges[kind] = _check_range(kind, r[0], r[1], f"randomize file {path}")
        else:
            conditions = load_suite(path).conditions
    elif "=" in spec:
        ranges = {}
        for item in filter(None, (s.strip() for s in spec.split(","))):
            kind, eq, body = item.partition("=")
            lo, colon, hi = body.partition(":")
            if not eq or not colon:
                raise ValueError(f"randomize range {item!r}: expected kind=low:high")
            ranges[kind.strip()] = _check_range(kind.strip(), lo, hi, f"randomize range {item!r}")
    else:
        raise ValueError(f"unknown randomize spec {spec!r}: built-in suites are "
                         f"{sorted(SUITES)}; or give a suite/range YAML file, or inline ranges "
                         f"kind=low:high[,...]")
    if ranges is None:
        if mode == "ranges":
            ranges = _suite_ranges(conditions)
        if mode == "conditions" and len(conditions) < 2:
            raise ValueError(f"randomize spec {spec!r} has only nominal: nothing to randomize")
    elif mode == "conditions":
        raise ValueError(f"randomize spec {spec!r} holds ranges, not conditions; use "
                         f"randomize mode 'ranges' (or give a suite)")
    if mode == "ranges" and not ranges:
        raise ValueError(f"randomize spec {spec!r} perturbs nothing")
    return RandomizationSpec(spec, mode, ranges or {}, conditions)


class DomainRandomizer:
    """The reset hook: draws the reset envs' perturbations and writes them into ``env.params``.

    Args:
        env: the env to randomise (its current ``params`` are taken as nominal).
        spec: a ``--randomize`` value or a parsed :class:`RandomizationSpec`.
        mode: ``ranges`` or ``conditions`` (ignored when ``spec`` is parsed already).

    Raises:
        ValueError: a bad spec, or nothing in it applies to ``env``.
    """

    def __init__(self, env, spec: str | RandomizationSpec, mode: str = "ranges"):
        self.spec = spec if isinstance(spec, RandomizationSpec) else parse_randomize(spec, mode)
        self.mode = self.spec.mode
        name = type(env).__name__
        table = env.PERTURBATIONS
        self.skipped: dict[str, str] = {}
        if self.mode == "ranges":
            self.ranges = {k: r for k, r in self.spec.ranges.items() if k in table}
            for k in self.spec.ranges:
                if k not in table:
                    self.skipped[k] = f"{name} has no perturbation kind {k!r}"
            self.conditions: list[Condition] = []
            kinds = list(self.ranges)
        else:
            self.ranges = {}
            self.conditions = [c for c in self.spec.conditions if c.applicable(env) is None]
            self.skipped = {c.name: c.applicable(env) for c in self.spec.conditions
                            if c.applicable(env) is not None}
            kinds = list(dict.fromkeys(k for c in self.conditions for k in c.perturb))
        if (self.mode == "ranges" and not self.ranges) or \
                (self.mode == "conditions" and len(self.conditions) < 2):
            raise ValueError(f"randomize {self.spec.source!r}: nothing applies to {name} "
                             f"(its perturbation kinds: {sorted(table)}); skipped: {self.skipped}")
        touched = {p for k in kinds for p, _ in table[k]}
        touched |= {p for c in self.conditions for p in c.params}
        self._table = {k: table[k] for k in kinds}
        #: Nominal values of every param the randomisation writes (rows of all envs).
        self.nominal = {p: env.params[p].clone() for p in sorted(touched)}
        #: Kinds drawn as whole numbers (they act on an integer param, e.g. the latency).
        self._integer = {k for k in kinds
                         if any(not env.params[p].is_floating_point() for p, _ in table[k])}
        #: ``(num_envs,)`` int64: the condition each env was last put in (conditions mode; -1
        #: before the first reset and in ranges mode).
        self.condition = torch.full((env.num_envs,), -1, dtype=torch.int64, device=env.device)

    # ------------------------------------------------------------------ the hook
    def __call__(self, env, env_ids: torch.Tensor) -> None:
        """Draw and write new values for ``env_ids`` ((M,) int64) from their streams."""
        vals = {p: v[env_ids].to(torch.float32) for p, v in self.nominal.items()}
        if self.mode == "ranges":
            kinds = list(self.ranges)
            u = env.rng.uniform(env_ids, len(kinds))
            for j, kind in enumerate(kinds):
                lo, hi = self.ranges[kind]
                if kind in self._integer:  # uniform among the whole numbers of [lo, hi]
                    a, b = float(math.ceil(lo)), float(math.floor(hi))
                    v = (a + torch.floor(u[:, j] * (b - a + 1))).clamp(max=b)
                else:
                    v = lo + (hi - lo) * u[:, j]
                self._apply_kind(vals, kind, v)
        else:
            k = env.rng.integers(env_ids, 1, len(self.conditions))[:, 0]
            self.condition[env_ids] = k
            base = vals
            vals = {p: v.clone() for p, v in base.items()}
            for ci, cond in enumerate(self.conditions):
                local = {p: v.clone() for p, v in base.items()}
                for kind, value in cond.perturb.items():
                    self._apply_kind(local, kind, torch.full_like(k, 0, dtype=torch.float32)
                                     + float(value))
                for p, value in cond.params.items():
                    local[p] = torch.zeros_like(local[p]) + float(value)
                pick = k == ci
                for p in local:
                    m = pick.view(-1, *([1] * (local[p].dim() - 1)))
                    vals[p] = torch.where(m, local[p], vals[p])
        for p, new in vals.items():
            t = env.params[p]
            t[env_ids] = new.to(t.dtype) if t.is_floating_point() else new.round().to(t.dtype)

    def _apply_kind(self, vals: dict[str, torch.Tensor], kind: str, v: torch.Tensor) -> None:
        for p, op in self._table[kind]:
            x = vals[p]
            vals[p] = TENSOR_OPS[op](x, v.view(-1, *([1] * (x.dim() - 1))))

    # ------------------------------------------------------------------ record and resume
    def describe(self) -> dict[str, Any]:
        """The resolved randomisation (what ``config.yaml`` and checkpoints record)."""
        out: dict[str, Any] = {"source": self.spec.source, "mode": self.mode}
        if self.mode == "ranges":
            out["ranges"] = {k: [float(lo), float(hi)] for k, (lo, hi) in self.ranges.items()}
            out["integer_kinds"] = sorted(self._integer)
        else:
            out["conditions"] = [c.to_dict() for c in self.conditions]
        out["skipped"] = dict(self.skipped)
        return out

    def state_dict(self) -> dict[str, Any]:
        """The resolved spec and the per-env condition index (the drawn values themselves live
        in the env's ``params``, its streams in ``env.rng``: both in the env's state)."""
        return {"describe": self.describe(), "condition": self.condition.clone()}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore :meth:`state_dict`. Raises ``ValueError`` when the checkpoint was trained
        with another randomisation (e.g. a suite file edited since), or with none."""
        if state is None:
            raise ValueError("the checkpoint was trained without domain randomisation; this "
                             f"run asks for {self.spec.source!r}")
        if state["describe"] != self.describe():
            raise ValueError(f"randomization {self.spec.source!r} resolves to {self.describe()}, "
                             f"the checkpoint was trained with {state['describe']}")
        self.condition.copy_(state["condition"].to(self.condition.device))


def attach_randomizer(env, spec: str | RandomizationSpec, mode: str = "ranges") -> DomainRandomizer:
    """Build a :class:`DomainRandomizer` for ``env`` and register it as a reset hook (from the
    next reset on); returns it."""
    dr = DomainRandomizer(env, spec, mode)
    env.reset_hooks.append(dr)
    return dr
