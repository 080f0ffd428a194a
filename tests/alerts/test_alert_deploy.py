"""The example Prometheus rules and Grafana dashboard parse and use only metrics that
/metrics serves."""

import json
import re
from pathlib import Path

import pytest
import yaml

from controlplane.alerts.metrics import FleetCollector

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.django_db
def test_deploy_files_name_only_served_metrics() -> None:
    served = set()
    for family in FleetCollector().collect():
        served.add(family.name)
        served.update(sample.name for sample in family.samples)
        if family.type == "counter":
            served.add(f"{family.name}_total")
    rules = yaml.safe_load((DEPLOY / "prometheus" / "switchyard-rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "switchyard-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"\bswitchyard_[a-z_]+\b", e)}
    assert used and used <= served, used - served
