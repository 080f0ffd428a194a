"""One settings module: the server reads its SWITCHYARD_* variables in
controlplane/settings.py only, and the README's Configuration table states each one's
bounds as the settings enforce them."""

import ast
import re
from pathlib import Path

from controlplane import settings as settings_module

ROOT = Path(__file__).resolve().parent.parent.parent
SETTINGS = ROOT / "controlplane" / "settings.py"
# The demo fleet's own processes run without Django's settings (like the library's agent):
# the simulated services and the webhook receiver read their variables themselves, and the
# fleet launcher hands the children their environment.
OWN_PROCESSES = {
    ROOT / "controlplane/demo/scenario.py",
    ROOT / "controlplane/demo/receiver.py",
    ROOT / "controlplane/demo/fleet.py",
}
READS_ENVIRONMENT = re.compile(r"os\.environ|getenv\(")


def test_no_module_but_settings_reads_a_switchyard_variable() -> None:
    offenders = []
    for package in ("controlplane", "dashboard"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == SETTINGS or path in OWN_PROCESSES:
                continue
            text = path.read_text()
            if READS_ENVIRONMENT.search(text) and "SWITCHYARD_" in text:
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def bounded_settings() -> dict[str, tuple[float, float]]:
    """Each SWITCHYARD_* variable read by envint/envfloat -> (minimum, maximum)."""
    found = {}
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in ("envint", "envfloat") or not node.args:
            continue
        name = ast.literal_eval(node.args[0])
        bounds = {k.arg: k.value for k in node.keywords if k.arg in ("minimum", "maximum")}
        if name.startswith("SWITCHYARD_") and len(bounds) == 2:
            found[name] = tuple(
                eval(ast.unparse(bounds[k]), vars(settings_module)) for k in ("minimum", "maximum")
            )
    return found


def figure(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def test_the_readme_states_each_settings_bounds() -> None:
    readme = (ROOT / "README.md").read_text()
    bounded = bounded_settings()
    assert "SWITCHYARD_SYNC_MAX_BREAKERS" in bounded and "SWITCHYARD_DEMO_SPEED" in bounded
    wrong = {}
    for name, (low, high) in sorted(bounded.items()):
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}`")), "")
        if f"{figure(low)}-{figure(high)}" not in row:
            wrong[name] = row or "no row"
    assert wrong == {}
