"""The production files: docker-compose.yml is valid and has the promised topology,
the Dockerfile runs as a non-root user with a CMD and a HEALTHCHECK, and every
environment variable the settings or the compose file read is in the README's
configuration reference."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shutil.which("docker-compose")


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    return subprocess.run(
        [COMPOSE, "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip


@pytest.mark.skipif(COMPOSE is None, reason="needs docker-compose")
def test_compose_file_is_valid_with_and_without_the_demo_profile() -> None:
    for args in (["config", "-q"], ["--profile", "demo", "config", "-q"]):
        result = compose(*args)
        assert result.returncode == 0, result.stderr


@pytest.mark.skipif(COMPOSE is None, reason="needs docker-compose")
def test_compose_topology() -> None:
    result = compose("--profile", "demo", "config")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "beat", "demo"}
    assert services["demo"]["profiles"] == ["demo"]
    assert all("profiles" not in s for n, s in services.items() if n != "demo")
    data = "/var/lib/postgresql/data"
    volumes = services["postgres"]["volumes"]
    assert any((v.get("target") if isinstance(v, dict) else v.split(":")[1]) == data
               for v in volumes), volumes  # fmt: skip
    # web's health check is the image's HEALTHCHECK; every other long-running service
    # has its own (the image's would probe a web server they do not run).
    for name in ("postgres", "redis", "worker", "beat", "demo"):
        assert "test" in services[name]["healthcheck"], name
    assert "healthcheck" not in services["web"]
    for name in ("web", "worker", "beat", "demo"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == "service_healthy", name
    assert "beat" in services["beat"]["command"] and "worker" in services["worker"]["command"]
    assert services["web"]["environment"]["DEBUG"] == "0"


def test_dockerfile_runs_as_non_root_with_cmd_and_healthcheck() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    cmd = [line for line in lines if line.startswith("CMD ")]
    assert cmd and "controlplane.serve" in cmd[-1] and "--workers ${WEB_WORKERS" in cmd[-1]
    health = [line for line in lines if line.startswith("HEALTHCHECK ")]
    assert health and "/healthz" in health[-1]


def documented() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\|([^|]+)\|", section, re.M)
    return {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


def test_every_environment_variable_is_in_the_readme() -> None:
    settings = (ROOT / "controlplane" / "settings.py").read_text()
    read = set(re.findall(r"env(?:bool|int|str|list)\(\s*\"([A-Z0-9_]+)\"", settings))
    read |= set(re.findall(r"os\.environ(?:\.get)?[\[(]\"([A-Z0-9_]+)\"", settings))
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "SWITCHYARD_ALERT_INTERVAL"} <= read
    compose_vars = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    others = {"SWITCHYARD_URL", "SWITCHYARD_TOKEN", "SWITCHYARD_SERVICE", "SWITCHYARD_INTERVAL",
              "SWITCHYARD_DEMO_SPEED"}  # fmt: skip
    missing = (read | compose_vars | others) - documented()
    assert not missing, sorted(missing)
