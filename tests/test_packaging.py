"""Packaging (DESIGN.md section 1): ``envs/`` and ``agents/`` install as ``rlkd.envs`` and
``rlkd.agents``; nothing named ``envs`` or ``agents`` is importable top-level outside the repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import rlkd

ROOT = Path(__file__).resolve().parents[1]


def test_namespaced_packages_import():
    import rlkd.agents
    import rlkd.envs
    import rlkd.envs.agv_warehouse

    assert Path(rlkd.envs.__file__).resolve().parent == ROOT / "envs"
    assert Path(rlkd.agents.__file__).resolve().parent == ROOT / "agents"
    assert rlkd.envs.agv_warehouse.AGVWarehouseEnv.__module__ == "rlkd.envs.agv_warehouse.env"


def test_no_top_level_envs_or_agents_outside_the_repo(tmp_path):
    code = ("import importlib.util, json, rlkd.envs, rlkd.agents; "
            "print(json.dumps({n: importlib.util.find_spec(n) is not None "
            "for n in ('envs', 'agents', 'rlkd.envs.agv_warehouse', 'rlkd.agents')}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what is installed
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found == {"envs": False, "agents": False, "rlkd.envs.agv_warehouse": True,
                     "rlkd.agents": True}


def test_every_package_directory_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = cfg["package-dir"]
    assert mapping == {"rlkd": "rlkd", "rlkd.envs": "envs", "rlkd.agents": "agents"}
    listed = set(cfg["packages"])
    on_disk = set()
    for name, folder in mapping.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if any(part.startswith((".", "__")) for part in rel.parts):
                continue
            on_disk.add(".".join([name, *rel.parts]))
    # rlkd.envs / rlkd.agents are found through their own mapping, not as rlkd/ subfolders.
    missing = on_disk - listed
    assert not missing, f"package directories missing from pyproject packages: {sorted(missing)}"
    stale = {p for p in listed if p not in on_disk}
    assert not stale, f"pyproject lists packages with no directory: {sorted(stale)}"


def test_version():
    from importlib.metadata import version

    assert rlkd.__version__ == version("rlkd")


def test_shipped_experts_are_package_data():
    """Every expert named in rlkd.policies.EXPERTS exists and is covered by package-data, so a
    wheel carries it."""
    from fnmatch import fnmatch

    from rlkd.policies import EXPERTS, expert_path

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]
    for name, (package, file) in EXPERTS.items():
        assert expert_path(name).is_file(), name
        assert any(fnmatch(file, pattern) for pattern in data.get(package, [])), (name, file)


def test_license_file_is_mit_and_referenced_by_pyproject():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "rlkd contributors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\"" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]


#: Optional packages -> the extra that provides them. None of them may be imported when rlkd is
#: (they are imported where used, with an error naming the extra).
EXTRAS = {"onnx": "deploy", "onnxscript": "deploy", "onnxruntime": "deploy", "moviepy": "video",
          "pybullet": "twin", "isaacgym": "stubs"}


def _requirement_names(reqs: list[str]) -> set[str]:
    import re

    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower() for r in reqs}


def test_optional_packages_are_extras_and_the_test_extra_pulls_them():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = _requirement_names(project["dependencies"])
    extras = project["optional-dependencies"]
    for package, extra in EXTRAS.items():
        pip_name = "isaacgym-stubs" if package == "isaacgym" else package
        assert pip_name not in required, f"{pip_name} is required; it belongs in [{extra}]"
        assert pip_name in _requirement_names(extras[extra]), (pip_name, extra)
    # `pip install -e ".[test]"` must run the whole suite: it pulls every extra a test uses.
    pulled = {e.strip() for r in extras["test"] if r.startswith("rlkd[")
              for e in r[len("rlkd["):r.index("]")].split(",")}
    assert {"deploy", "video", "twin"} <= pulled


def test_import_rlkd_needs_no_extra(tmp_path):
    """With every optional package made unimportable, rlkd, its envs (the PyBullet twin is
    registered) and its CLI still import; building the twin names its extra."""
    blocked = sorted(EXTRAS) + ["pybullet_utils"]
    code = ("import sys\n"
            f"for m in {blocked!r}: sys.modules[m] = None\n"
            "import rlkd, rlkd.envs, rlkd.cli, rlkd.deploy, rlkd.policies, rlkd.train.export\n"
            "assert 'AGVWarehouseBullet-v0' in rlkd.list_envs()\n"
            "try:\n"
            "    rlkd.make('AGVWarehouseBullet-v0', num_layouts=1)\n"
            "except ImportError as e:\n"
            "    print('ERR', e)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert 'pip install "rlkd[twin]"' in proc.stdout, proc.stdout
