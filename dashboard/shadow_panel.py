"""The circuit page's shadow evaluation section: what the candidate running beside the
circuit's config would have done, in one sentence and a list, the config it runs and
its differences from the live one (docs/dashboard.md, "Shadow evaluation")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controlplane.circuits import shadow
from controlplane.circuits.models import Circuit
from dashboard.forms import config_diff


def times(count: int) -> str:
    """``"once"``, ``"3 times"``, ``"1,240 times"``."""
    return "once" if count == 1 else f"{count:,} times"


def calls(count: int) -> str:
    """``"no calls"``, ``"1 call"``, ``"1,240 calls"``."""
    if not count:
        return "no calls"
    return "1 call" if count == 1 else f"{count:,} calls"


def sentence(figures: shadow.Summary, now: datetime) -> str:
    """ "Would have opened 3 times in the last hour, rejecting 1,240 calls." over the
    summary's span (since it started, when that is less than an hour ago)."""
    ran = (figures["ended_at"] or now) - figures["started_at"]
    if ran >= shadow.SUMMARY_WINDOW:
        span = "in the last hour"
    else:
        span = f"in the {max(1, round(ran.total_seconds() / 60))} min since it started"
    opened = figures["opened"]
    head = f"Would have opened {times(opened)}" if opened else "Would not have opened"
    return f"{head} {span}, rejecting {calls(figures['rejected'])}."


def panel(circuit: Circuit, now: datetime) -> dict[str, Any] | None:
    """The running evaluation's figures for the page, or None when none runs."""
    evaluation = shadow.running_shadow(circuit)
    if evaluation is None:
        return None
    figures = shadow.summary(evaluation, now=now)
    current = circuit.current_config
    return {
        "evaluation": evaluation,
        "figures": figures,
        "sentence": sentence(figures, now),
        "numbers": {name: f"{figures[name]:,}" for name in shadow.COUNTERS},  # type: ignore[literal-required]
        "diff": config_diff(current.config if current else {}, evaluation.config),
    }
