"""The pipeline's layering is enforced: import-linter's contracts in pyproject.toml.

The first test checks the package as it is; the second proves the check has teeth by
adding a backwards import (a scenario module importing the analyzer) to a copy of the
package and expecting the contract to break, naming the import. The third keeps the
command line light: importing it loads no stage (`bench --help` stays fast).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_package_keeps_its_layers():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_a_backwards_import_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "bench", tmp_path / "bench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    model = tmp_path / "bench" / "scenario" / "model.py"
    model.write_text(model.read_text() + "\nfrom bench.analysis import runs  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "pipeline layers BROKEN" in result.stdout
    assert "bench.scenario.model -> bench.analysis.runs" in result.stdout


def test_the_command_line_loads_no_stage_before_a_command_runs():
    """`bench --help` imports cli and commands only: each handler imports its stages, so
    no numpy, pydantic, rich or matplotlib is loaded to print the help."""
    probe = "import sys, bench.cli; print(sorted(sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, check=True,
                            capture_output=True, text=True).stdout
    assert "'bench.commands'" in loaded
    for heavy in ("'numpy'", "'pydantic'", "'rich'", "'matplotlib'", "'locust'",
                  "'bench.driver'", "'bench.analysis'"):
        assert heavy not in loaded, heavy
