"""Task configs: dataclasses with documented defaults, overridden by keyword."""

from __future__ import annotations

import dataclasses
import difflib
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
    return dataclasses.replace(cfg, **values)


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
