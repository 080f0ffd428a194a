"""The library's distribution: the wheel built from pyproject.toml installs into a fresh
virtualenv with nothing else (no dependency), imports without Django, and names its
integrations' clients as optional extras only."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-q", "-w", str(out), str(ROOT)],
        check=True, cwd=build, timeout=300,
    )  # fmt: skip
    [built] = out.glob("switchyard_breakers-*.whl")
    return built


def test_the_wheel_holds_the_library_and_its_extras_only(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata_name] = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"breakers"}
    assert "breakers/integrations/httpx.py" in names and "breakers/py.typed" in names
    requires = metadata.get_all("Requires-Dist") or []
    assert sorted(metadata.get_all("Provides-Extra") or []) == [
        "aiohttp",
        "celery",
        "django",
        "httpx",
        "otel",
        "requests",
    ]
    # Every requirement belongs to an extra: the core pulls nothing.
    assert requires and all("extra ==" in r for r in requires), requires


def test_a_fresh_venv_installs_the_core_alone_and_imports_it(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"

    def installed() -> set[str]:
        listed = subprocess.run(
            [str(python), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout.split()  # fmt: skip
        return {p.split("==")[0].lower() for p in listed}

    before = installed()  # what venv itself puts in (pip; setuptools on Python 3.11)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-index", "--disable-pip-version-check",
         "-q", str(wheel)],
        check=True, timeout=120,
    )  # fmt: skip
    assert installed() - before == {"switchyard-breakers"}
    script = """
import breakers, breakers.agent, breakers.integrations.http
b = breakers.CircuitBreaker("x")
assert b.call(lambda: 42) == 42
try:
    import breakers.integrations.httpx
except ImportError as exc:
    print(exc)
else:
    raise SystemExit("httpx should not be importable here")
"""
    done = subprocess.run(
        [str(python), "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert 'pip install "switchyard-breakers[httpx]"' in done.stdout
