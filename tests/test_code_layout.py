"""The code's shape: module sizes and which layers import which (DESIGN.md section 1)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("rlkd", "envs", "agents", "tests", "scripts")
MAX_LINES = 500


def _py_files(*dirs: str):
    for d in dirs:
        yield from sorted((ROOT / d).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module name imported anywhere in ``path`` (top level and inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_no_source_file_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in _py_files(*SOURCE_DIRS)
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these modules (one job each, <= {MAX_LINES} lines): {long}"


def test_agents_never_import_the_trainer():
    # The runner is handed agents by name; agents sit below it with rlkd.nn and rlkd.storage.
    bad = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.startswith("rlkd.train"))
           for p in _py_files("agents")}
    assert not {k: v for k, v in bad.items() if v}


def test_the_runner_imports_no_algorithm():
    allowed = {"rlkd.agents"}  # the registry: agents are resolved by name
    for name in ("runner.py", "config.py", "checkpoint.py", "logger.py"):
        mods = _imports(ROOT / "rlkd" / "train" / name)
        assert not {m for m in mods if m.startswith("rlkd.agents") and m not in allowed}, name


def test_storage_and_models_import_no_agent_or_trainer():
    for d in ("rlkd/storage", "rlkd/nn"):
        for p in _py_files(d):
            mods = _imports(p)
            assert not {m for m in mods if m.startswith(("rlkd.agents", "rlkd.train"))}, p
