"""Packaging as users of the ecosystem expect it: ``pip install -e .`` gives the commands, and the dependency
list matches the pinned set that was checked together (requirements.txt)."""
from __future__ import annotations

import importlib
import re
import tomllib

from tests.conftest import ROOT


def _name(requirement: str) -> str:
    return re.split(r"[\s=<>~!;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_pyproject_lists_the_pinned_dependencies_and_a_licence():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {_name(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    listed = {_name(d) for d in project["dependencies"]}
    optional = {_name(d) for group in project["optional-dependencies"].values() for d in group}
    assert pinned - listed <= optional, f"pinned but not declared: {sorted(pinned - listed - optional)}"
    assert listed <= pinned, f"declared but not pinned: {sorted(listed - pinned)}"
    assert project["license"] == "Apache-2.0" and "Apache License" in (ROOT / "LICENSE").read_text()


def test_every_console_command_points_at_a_function():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"v2m-infer", "v2m-train", "v2m-eval", "v2m-curate", "v2m-features"} <= set(scripts)
    for command, target in scripts.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), command
