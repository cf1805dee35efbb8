"""Task configs: dataclasses with documented defaults, overridden by keyword.

Validation: each field of a task config declares its rule next to its default,
``num_obstacles: int = knob(4, integer(lo=0))``; the dataclass's ``__post_init__`` calls
:func:`validate_fields` (and checks relations between fields with :func:`require`), so
construction, :func:`dataclasses.replace` and :func:`apply_overrides` all refuse a bad value with
a :class:`ConfigError` naming the field, the value and the allowed range, e.g.
``AGVWarehouse-v0 config: num_obstacles=-3 is out of range; allowed: integer >= 0``.
A field without a rule is itself an error (``TypeError`` at the first validation).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from typing import Any, TypeVar

C = TypeVar("C")


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def apply_overrides(cfg: C, overrides: dict[str, Any], owner: str = "config") -> C:
    """Return a copy of dataclass ``cfg`` with ``overrides`` applied.

    Raises:
        KeyError: an override names a field the config does not have (the message lists them).
        TypeError: a value cannot be converted to the field's type.
        ConfigError: (a ``ValueError``) a value is outside its field's rule; the message names
            ``owner``, the field, the value and the allowed range.
    """
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    for key in overrides:
        if key not in fields:
            raise KeyError(
                f"unknown config key {key!r} for {owner}.{_suggest(key, list(fields))} "
                f"Valid keys: {', '.join(sorted(fields))}"
            )
    values = {}
    for key, value in overrides.items():
        current = getattr(cfg, key)
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(current, bool) and not isinstance(value, bool):
            raise TypeError(f"config key {key!r} of {owner} expects a bool, got {value!r}")
        if isinstance(current, (int, float)) and not isinstance(current, bool):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"config key {key!r} of {owner} expects a number, got {value!r}")
            if isinstance(current, int) and isinstance(value, float):
                if not value.is_integer():  # e.g. lidar_rays=32.5 would fail far from here
                    raise TypeError(f"config key {key!r} of {owner} expects an int, got {value!r}")
                value = int(value)
            value = type(current)(value) if isinstance(current, float) else value
        values[key] = value
    try:
        return dataclasses.replace(cfg, **values)
    except ConfigError as e:  # name the task, not the dataclass
        raise e.with_owner(owner) from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view of a config dataclass (for logs, checkpoints, YAML)."""
    return dataclasses.asdict(cfg)


def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` of a dataclass whose fields carry attribute docstrings (the string
    literal after each field, as in our configs), over its whole class hierarchy; fields
    without one are absent. Reads the source with ``ast``; never imports or runs anything."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):  # no source (e.g. built at run time)
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


# ---------------------------------------------------------------------------------- validation
class ConfigError(ValueError):
    """A config field holds a value its rule does not allow.

    Attributes ``owner`` (task id or config class), ``field``, ``value``, ``allowed`` (the rule in
    words) and ``problem`` (``"is out of range"`` or ``"has the wrong type (str)"``)."""

    def __init__(self, owner: str, field: str, value: Any, allowed: str,
                 problem: str = "is out of range"):
        self.owner, self.field, self.value, self.allowed, self.problem = (
            owner, field, value, allowed, problem)
        super().__init__(f"{owner}: {field}={value!r} {problem}; allowed: {allowed}")

    def with_owner(self, owner: str) -> "ConfigError":
        """The same error attributed to ``owner`` (a registry id: ``"<id> config"``)."""
        if owner == "config":
            return self
        return ConfigError(f"{owner} config", self.field, self.value, self.allowed, self.problem)

    def __reduce__(self):  # picklable (worker processes re-raise it)
        return (ConfigError, (self.owner, self.field, self.value, self.allowed, self.problem))


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one config field may hold; build with :func:`integer`, :func:`number`, :func:`flag`,
    :func:`one_of`, :func:`text` or :func:`integers`.

    ``kind``: ``"int"``, ``"float"``, ``"bool"``, ``"choice"``, ``"str"``, ``"int_tuple"`` or
    ``"span"`` (a ``(lo, hi)`` pair of numbers with ``lo <= hi``: a range to draw from);
    ``lo``/``hi``: inclusive bounds (``None``: unbounded), exclusive where ``lo_open``/``hi_open``;
    ``allow_inf``: an infinite float passes the bounds check (NaN never passes);
    ``choices``: the allowed strings; ``min_len``: fewest elements of a tuple.
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    allow_inf: bool = False
    choices: tuple[str, ...] = ()
    min_len: int = 0
    note: str = ""

    def describe(self) -> str:
        """The rule in words, as error messages print it (e.g. ``"number in [0, 1)"``)."""
        if self.kind == "bool":
            return "True or False"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "str":
            return "a non-empty string" + (f" ({self.note})" if self.note else "")
        noun = {"int": "integer", "float": "finite number" if not self.allow_inf else "number",
                "int_tuple": "integer", "span": "finite number"}[self.kind]
        fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
        if self.lo is not None and self.hi is not None:
            rng = (f" in {'(' if self.lo_open else '['}{fmt(self.lo)}, {fmt(self.hi)}"
                   f"{')' if self.hi_open else ']'}")
        elif self.lo is not None:
            rng = f" {'>' if self.lo_open else '>='} {fmt(self.lo)}"
        elif self.hi is not None:
            rng = f" {'<' if self.hi_open else '<='} {fmt(self.hi)}"
        else:
            rng = ""
        out = noun + rng
        if self.kind == "float" and self.allow_inf:
            out += " (inf allowed)"
        if self.kind == "int_tuple":
            out = f"a tuple of at least {self.min_len} element(s), each {out}"
        if self.kind == "span":
            out = f"a pair (lo, hi) with lo <= hi, each {out}"
        return out + (f"; {self.note}" if self.note and self.kind != "str" else "")

    def _in_bounds(self, v: float) -> bool:
        if math.isnan(v) or (math.isinf(v) and not self.allow_inf):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def problem(self, value: Any) -> str | None:
        """``None`` if ``value`` satisfies the rule, else what is wrong with it."""
        wrong = f"has the wrong type ({type(value).__name__})"
        if self.kind == "bool":
            return None if isinstance(value, bool) else wrong
        if self.kind in ("choice", "str"):
            if not isinstance(value, str):
                return wrong
            ok = value in self.choices if self.kind == "choice" else bool(value.strip())
            return None if ok else ("is not allowed" if self.kind == "choice" else "is empty")
        if self.kind == "int_tuple":
            if not isinstance(value, tuple) or not all(_is_int(v) for v in value):
                return wrong
            if len(value) < self.min_len:
                return "has too few elements"
            return None if all(self._in_bounds(float(v)) for v in value) else "is out of range"
        if self.kind == "span":
            if not (isinstance(value, tuple) and len(value) == 2 and all(
                    isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)):
                return wrong if not isinstance(value, tuple) else "is not a pair of numbers"
            if not all(self._in_bounds(float(v)) for v in value):
                return "is out of range"
            return None if value[0] <= value[1] else "has lo > hi"
        if self.kind == "int":
            if not _is_int(value):
                return wrong
        elif isinstance(value, bool) or not isinstance(value, numbers.Real):
            return wrong
        return None if self._in_bounds(float(value)) else "is out of range"


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def integer(lo: int | None = None, hi: int | None = None, note: str = "") -> Rule:
    """An ``int`` (not a bool) in ``[lo, hi]``."""
    return Rule("int", lo, hi, note=note)


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, allow_inf: bool = False, note: str = "") -> Rule:
    """A real number (int or float, not a bool), never NaN; finite unless ``allow_inf``; within
    ``lo``/``hi`` (exclusive where ``lo_open``/``hi_open``)."""
    return Rule("float", lo, hi, lo_open, hi_open, allow_inf, note=note)


def flag() -> Rule:
    """A ``bool``."""
    return Rule("bool")


def one_of(*choices: str) -> Rule:
    """One of the strings ``choices``."""
    return Rule("choice", choices=tuple(choices))


def text(note: str = "") -> Rule:
    """A string that is not empty or blank."""
    return Rule("str", note=note)


def integers(lo: int | None = None, hi: int | None = None, min_len: int = 1) -> Rule:
    """A tuple of at least ``min_len`` ints, each in ``[lo, hi]``."""
    return Rule("int_tuple", lo, hi, min_len=min_len)


def span(lo: float | None = None, hi: float | None = None, note: str = "") -> Rule:
    """A ``(lo, hi)`` pair of finite numbers, ``lo <= hi``, both in ``[lo, hi]`` of the rule: a
    range that a per-env value is drawn from uniformly (equal ends: a fixed value)."""
    return Rule("span", lo, hi, note=note)


def knob(default: Any, rule: Rule) -> Any:
    """A dataclass field with ``default`` and its validation ``rule`` (in the field's metadata,
    where :func:`validate_fields` finds it), e.g.
    ``dt: float = knob(0.1, number(lo=0, lo_open=True))``."""
    return dataclasses.field(default=default, metadata={"rule": rule})


def field_rules(cls_or_cfg: Any) -> dict[str, Rule | None]:
    """``{field: Rule or None}`` of a config dataclass (``None``: the field has no rule)."""
    return {f.name: f.metadata.get("rule") for f in dataclasses.fields(cls_or_cfg)}


def validate_fields(cfg: Any, owner: str | None = None) -> None:
    """Check every field of dataclass ``cfg`` against its :func:`knob` rule.

    Raises:
        ConfigError: the first field whose value breaks its rule (``owner`` defaults to the
            config's class name).
        TypeError: a field has no rule (every field of a validated config must have one).
    """
    owner = owner or type(cfg).__name__
    for name, rule in field_rules(cfg).items():
        if rule is None:
            raise TypeError(f"{owner}: field {name!r} has no validation rule; declare it with "
                            f"knob(default, rule)")
        value = getattr(cfg, name)
        problem = rule.problem(value)
        if problem is not None:
            raise ConfigError(owner, name, value, rule.describe(), problem)


def require(cfg: Any, ok: bool, field: str, allowed: str) -> None:
    """A relation between fields: raise :class:`ConfigError` for ``field`` (its current value)
    with ``allowed`` as the rule unless ``ok``."""
    if not ok:
        raise ConfigError(type(cfg).__name__, field, getattr(cfg, field), allowed)
