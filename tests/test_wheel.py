"""The package stands alone: built as a wheel and installed without the checkout, it carries its
package data (conf/, the online store's Lua scripts) and finds the dbt project by its setting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).parent / "uv"

pytestmark = pytest.mark.integration


INSTALLED_CHECK = """
import json, sys
import mlpipeline
from mlpipeline.core.config import ConfigurationError, pipeline_conf
from mlpipeline.features import dbt_project
from mlpipeline.online.keys import lua_script

out = {
    "package": mlpipeline.__file__,
    "conf": sorted(pipeline_conf()),
    "lua": lua_script("switch").startswith("--"),
}
try:
    dbt_project.online_spec()
except ConfigurationError as exc:
    out["without_setting"] = str(exc)
print(json.dumps(out))
"""


def test_the_package_installs_as_a_wheel_and_finds_dbt_by_its_setting(tmp_path: Path) -> None:
    """Built and installed like any wheel (no checkout beside it): the package data travels with
    it, and the dbt project comes from DBT_PROJECT_DIR, never from the package's location."""
    subprocess.run(
        [str(UV), "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("mlpipeline-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [str(UV), "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )

    def run(env: dict[str, str]) -> dict:
        # The installed copy first on the path; its dependencies from this venv's site-packages.
        deps = next(p for p in sys.path if p.endswith("site-packages"))
        result = subprocess.run(
            [
                sys.executable,
                "-I",
                "-c",
                f"import sys; sys.path[:0] = {[str(target), deps]!r}\n" + INSTALLED_CHECK,
            ],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "MLPIPELINE_DATA_DIR": str(tmp_path / "data"), **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    alone = run({})
    assert alone["package"].startswith(str(target))
    assert {"scoring", "split"} <= set(alone["conf"]) and alone["lua"]
    assert "set DBT_PROJECT_DIR" in alone["without_setting"]

    configured = run({"DBT_PROJECT_DIR": str(ROOT / "dbt_project")})
    assert "without_setting" not in configured
