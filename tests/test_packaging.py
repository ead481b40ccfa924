"""Packaging, once: pyproject.toml declares the groups, uv.lock pins them, and the requirement
files the image installs are exports of that lock, never edited by hand.

The image installs runtime + stack (requirements-stack.txt); pytest, moto, playwright and the
linters stay out of it. The developer's .venv holds every group at the locked versions.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker

ROOT = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).parent / "uv"
TEST_AND_DEV_ONLY = {"pytest", "moto", "playwright", "ruff", "aiosmtpd"}

pytestmark = pytest.mark.unit


def _pins(path: Path) -> dict[str, str]:
    """name → version of a `uv export` file, for the pins whose markers hold here."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)(?: ; (.+))?$", line)
        if match and (match.group(3) is None or Marker(match.group(3)).evaluate()):
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def _export(*args: str) -> str:
    out = subprocess.run(
        [str(UV), "export", "--frozen", "--no-hashes", "--no-emit-project", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def test_the_lock_matches_pyproject() -> None:
    result = subprocess.run(
        [str(UV), "lock", "--check", "--offline"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, f"uv.lock is stale; run `make lock`: {result.stderr}"


@pytest.mark.parametrize(
    ("path", "args"),
    [
        ("requirements.txt", ["--no-default-groups"]),
        ("requirements-stack.txt", ["--no-default-groups", "--group", "stack"]),
    ],
)
def test_requirement_files_are_the_locks_export(path: str, args: list[str]) -> None:
    exported = {line for line in _export(*args).splitlines() if line and not line.startswith("#")}
    written = {
        line for line in (ROOT / path).read_text().splitlines() if line and not line.startswith("#")
    }
    assert exported == written, f"{path} differs from uv.lock; run `make requirements`"


def test_the_image_gets_the_stack_fixes_and_no_test_tools() -> None:
    image = _pins(ROOT / "requirements-stack.txt")
    assert image["asyncpg"]
    assert image["psycopg"] and image["psycopg-binary"] and image["psycopg2-binary"]
    # celery 5.7 removed celery.backends.database.retry, which the Celery provider imports.
    assert image["celery"].startswith("5.6.")
    assert TEST_AND_DEV_ONLY.isdisjoint(image)
    assert "RUN pip install uv" in (ROOT / "Dockerfile").read_text()
    assert "requirements-stack.txt" in (ROOT / "Dockerfile").read_text()


def test_the_venv_holds_what_the_image_installs_at_the_same_versions() -> None:
    """The stack test runs the compose services from this venv: it must hold the image's
    packages, at the image's versions."""
    wrong = {}
    for name, version in _pins(ROOT / "requirements-stack.txt").items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}, "run `make install`: (locked, installed) " + repr(wrong)


def test_every_group_is_declared_with_exact_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    groups = {"runtime": project["project"]["dependencies"], **project["dependency-groups"]}
    assert set(groups) == {"runtime", "stack", "test", "dev"}
    loose = [d for deps in groups.values() for d in deps if "==" not in d]
    assert loose == []
