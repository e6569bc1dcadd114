"""What pyproject.toml pins a dependency to, for the tests of the private library parts cim builds on: their
failures name the attribute, the pinned range and the installed release."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def pinned(dist: str) -> str:
    """The requirement of ``dist`` in the project's dependencies, e.g. ``paho-mqtt>=2.2,<2.3``."""
    for requirement in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        if re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower() == dist.lower():
            return str(requirement)
    raise LookupError(f"{dist} is not among pyproject.toml's dependencies: pin it there")


def broken(dist: str, module: str, what: str, why: str) -> str:
    """The message of a seam test: which private part of ``dist`` changed, and what to do."""
    return (
        f"{what} {why} in {dist} {version(dist)} (pyproject.toml pins {pinned(dist)}): {module} relies on it; "
        f"adapt {module} to this release, or keep {dist} within the pinned range"
    )
