"""Layering (DESIGN.md section 1): ``rlkd.core`` imports no task; the built-in tasks reach its
registry through a loader (:func:`rlkd.core.registry.register_loader`) that the top-level
``rlkd`` package installs.

Importing any ``rlkd`` submodule runs ``rlkd/__init__.py`` first, and that file also imports
``rlkd.envs`` at once (``import rlkd`` must register the gymnasium ids). So "core alone pulls in
no task" can only be observed with the top-level ``__init__`` bypassed: the subprocess below
stands a bare ``rlkd`` package in ``sys.modules`` (same directory, ``__init__`` not run) and then
imports ``rlkd.core``, exactly what embedding the core without the task packages looks like.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_core_sources_import_only_core():
    """Every ``rlkd.*`` import in ``rlkd/core`` is of ``rlkd.core`` (no task, no agent, not the
    top-level package, which would import the tasks)."""
    bad = []
    for path in sorted((ROOT / "rlkd" / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if (name == "rlkd" or name.startswith("rlkd.")) and not (
                        name == "rlkd.core" or name.startswith("rlkd.core.")):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not bad, bad


CORE_ALONE = r"""
import importlib, importlib.util, json, pkgutil, sys, types

# A bare top-level package: rlkd/__init__.py (which installs the loader and imports the tasks)
# does not run.
found = importlib.util.find_spec("rlkd")
pkg = types.ModuleType("rlkd")
pkg.__path__ = list(found.submodule_search_locations)
sys.modules["rlkd"] = pkg

import rlkd.core
for m in pkgutil.iter_modules(rlkd.core.__path__):
    importlib.import_module(f"rlkd.core.{m.name}")
from rlkd.core import registry

out = {"task_modules": sorted(n for n in sys.modules
                              if n.startswith(("rlkd.envs", "rlkd.agents"))),
       "ids_without_loader": registry.list_envs()}
registry.register_loader("rlkd.envs")  # what rlkd/__init__.py installs
out["imported_on_install"] = "rlkd.envs" in sys.modules  # a loader is lazy
out["spec"] = registry.spec("AGVWarehouse-v0").id
out["imported_on_lookup"] = "rlkd.envs" in sys.modules
out["has_twin"] = "AGVWarehouseBullet-v0" in registry.list_envs()
print(json.dumps(out))
"""


def test_core_alone_imports_no_task_and_finds_them_through_the_loader():
    out = _run(CORE_ALONE)
    assert out["task_modules"] == []
    assert out["ids_without_loader"] == []  # no task is hard-wired into the core
    assert out["imported_on_install"] is False
    assert out["spec"] == "AGVWarehouse-v0"
    assert out["imported_on_lookup"] is True and out["has_twin"] is True


USER_PATH = r"""
import json, sys
import rlkd.core.registry as registry  # runs rlkd/__init__.py first

out = {"pending": [l for l in registry._PENDING_LOADERS if isinstance(l, str)]}
out["spec"] = registry.spec("rlkd/AGVWarehouse-v0").id
out["pending_after"] = len(registry._PENDING_LOADERS)
print(json.dumps(out))
"""


def test_importing_only_core_still_finds_the_builtin_tasks():
    out = _run(USER_PATH)
    assert out["pending"] == ["rlkd.envs"]  # installed by rlkd/__init__.py
    assert out["spec"] == "AGVWarehouse-v0"
    assert out["pending_after"] == 0  # run once, at the first lookup


def test_loader_runs_once_and_a_failing_one_is_retried():
    from rlkd.core import registry

    calls = []
    registry.register_loader(lambda: calls.append(1))
    registry.list_envs()
    registry.list_envs()
    assert calls == [1]

    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ImportError("plugin not ready")

    registry.register_loader(flaky)
    with pytest.raises(ImportError, match="plugin not ready"):  # not swallowed
        registry.list_envs()
    registry.list_envs()
    assert len(attempts) == 2 and not registry._PENDING_LOADERS
