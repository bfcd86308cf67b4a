"""The dependencies CI and production install are one tested, pinned set: constraints.txt.

pyproject.toml keeps ranges (a lower bound, and for the main drivers the next major as the
upper one); constraints.txt pins every package of the dependency closure to the versions the
suite passed with. These tests keep the two from drifting apart.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TOP_LEVEL = [Requirement(r) for r in (*PYPROJECT["project"]["dependencies"],
                                      *PYPROJECT["project"]["optional-dependencies"]["dev"])]
MAIN_DRIVERS = {"neo4j": 7, "neo4j-rust-ext": 7, "opensearch-py": 4, "redis": 9, "psycopg": 4, "pydantic": 3,
                "pytest": 10}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line).groups()  # type: ignore[union-attr]
            pins[canonicalize_name(name)] = version
    return pins


@pytest.mark.parametrize("requirement", TOP_LEVEL, ids=str)
def test_every_top_level_dependency_is_pinned_within_its_range(requirement: Requirement) -> None:
    pins = _pins()
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
    assert requirement.specifier.contains(pins[name], prereleases=True), \
        f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement.specifier}"


@pytest.mark.parametrize(("name", "major"), MAIN_DRIVERS.items())
def test_the_main_drivers_stop_before_their_next_major(name: str, major: int) -> None:
    specifier = next(r.specifier for r in TOP_LEVEL if canonicalize_name(r.name) == name)
    assert f"<{major}" in {str(s) for s in specifier}, f"{name}: {specifier} has no upper bound <{major}"


def test_the_pins_are_exactly_the_dependency_closure() -> None:
    """Every package kfm-ops[dev] pulls in is pinned, and nothing else is (as installed in this venv)."""
    closure: set[str] = set()
    todo = list(TOP_LEVEL)
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        closure.add(key[0])
        environments = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
        for text in metadata.distribution(requirement.name).requires or []:
            needed = Requirement(text)
            if needed.marker is None or any(needed.marker.evaluate(env) for env in environments):
                todo.append(needed)
    pins = set(_pins())
    assert closure - pins == set(), "installed with kfm-ops but not pinned in constraints.txt"
    assert pins - closure == set(), "pinned in constraints.txt but not a dependency of kfm-ops"


def test_the_makefile_installs_the_pinned_set() -> None:
    makefile = (ROOT / "Makefile").read_text()
    install = [line for line in makefile.splitlines() if "pip install" in line and "-e " in line]
    assert install and all("-c constraints.txt" in line for line in install), install
