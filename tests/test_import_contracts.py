"""The import contracts of pyproject.toml (floors point down, no cycles), run by
`make test` as well as by `make lint`; and proof that a planted import breaks them."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("breakers", "controlplane", "dashboard")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the packages under ``cwd`` (and nothing else on the path)."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def copy_of_the_code(tmp_path: Path) -> Path:
    """The packages' Python files and pyproject.toml, copied to a scratch directory."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "templates", "static", "*.md"),
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def plant(module: Path, line: str) -> None:
    module.write_text(module.read_text() + f"\n{line}\n")


def test_the_code_keeps_every_import_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_lower_floor_importing_a_higher_one_is_reported(copy_of_the_code: Path) -> None:
    pagination = copy_of_the_code / "controlplane/core/pagination.py"
    plant(pagination, "import controlplane.circuits.choices")
    result = lint_imports(copy_of_the_code)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "controlplane.core is not allowed to import controlplane.circuits" in result.stdout
    assert "controlplane.core.pagination -> controlplane.circuits.choices" in result.stdout


def test_the_library_importing_the_server_is_reported(copy_of_the_code: Path) -> None:
    plant(copy_of_the_code / "breakers/errors.py", "import django.conf")
    result = lint_imports(copy_of_the_code)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "breakers is not allowed to import django" in result.stdout


def test_two_modules_importing_each_other_are_reported(copy_of_the_code: Path) -> None:
    # alerts.models imports alerts.choices; the planted line closes the cycle.
    plant(copy_of_the_code / "controlplane/alerts/choices.py", "import controlplane.alerts.models")
    result = lint_imports(copy_of_the_code)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "No cycles are allowed in controlplane.alerts" in result.stdout
