"""The drills section of the circuit page (docs/drills.md): the running drill with its
countdown, the form that starts one, and the finished drills' outcomes. Reads only;
the page's forms post to views.circuit_drill and views.circuit_drill_end, which write
through controlplane.circuits.drills, the functions the API calls."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings

from controlplane.circuits import access
from controlplane.circuits.drills import drill_state, live_instance_ids
from controlplane.circuits.models import Circuit, Drill
from dashboard import formats
from dashboard.forms import DrillForm

RUN = "circuits.run_drill"
# Finished drills listed on the page, newest first (the API lists every one).
SHOWN = 10


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _figures(totals: dict[str, Any]) -> dict[str, str]:
    def pct(value: float | None) -> str:
        return formats.pct(None if value is None else value / 100)

    return {
        "calls": f"{totals['calls']:,}",
        "failures": f"{totals['failures']:,}",
        "rejected": f"{totals['rejected']:,}",
        "fallbacks": f"{totals['fallbacks']:,}",
        "error_rate": pct(totals["error_rate"]),
        "rejected_rate": pct(totals["rejected_rate"]),
        "fallback_rate": pct(totals["fallback_rate"]),
    }


def _row(drill: Drill) -> dict[str, Any]:
    outcome = drill.outcome or {}
    return {
        "drill": drill,
        "seconds": formats.duration((drill.ends_at - drill.started_at).total_seconds()),
        "ran": formats.duration(
            ((drill.ended_at or drill.ends_at) - drill.started_at).total_seconds()
        ),
        "during": _figures(outcome["during"]) if outcome else None,
        "before": _figures(outcome["before"]) if outcome else None,
        "window_from": _moment(outcome.get("window", {}).get("from")),
        "window_to": _moment(outcome.get("window", {}).get("to")),
        "instances": [
            {
                "name": row["instance"],
                "forced_at": _moment(row["forced_at"]),
                "released_at": _moment(row["released_at"]),
            }
            for row in outcome.get("instances", [])
        ],
    }


def context(circuit: Circuit, user: Any, now: datetime) -> dict[str, Any]:
    """What the page's drills section shows to ``user``."""
    drills = list(
        Drill.objects.filter(circuit=circuit).select_related("created_by", "ended_by")[: SHOWN + 1]
    )
    running = next((d for d in drills if drill_state(d, now) == "running"), None)
    live = live_instance_ids(circuit, now)
    longest = settings.SWITCHYARD_DRILL_MAX_SECONDS
    return {
        "running": running,
        "finished": [_row(d) for d in drills if d is not running][:SHOWN],
        "can_run": access.may(user, RUN, circuit.service.team_id),
        "live": live,
        "max_seconds": longest,
        "form": DrillForm(live=live, max_seconds=longest, initial={"share": 10, "duration": 60}),
    }
