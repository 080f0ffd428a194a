"""What the database holds against what the agents were acknowledged.

Every transition an agent forgot because the control plane acknowledged it must be
stored exactly once, with the content the breaker produced: compared by
(instance, generation 0, seq = the agent's id) and by (circuit, from, to, at).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any


@dataclass
class Tally:
    """Transitions produced by the breakers, acknowledged to the agents, and stored."""

    produced: int = 0
    acked: int = 0
    stored: int = 0
    pending: int = 0  # still waiting for an acknowledgement when counted
    dropped: int = 0  # dropped by a full agent buffer
    lost: int = 0  # acknowledged, not stored
    duplicated: int = 0  # stored more than once
    altered: int = 0  # stored with other content than the breaker produced
    gaps: int = 0  # ids missing below an instance's highest stored id
    stored_unacked: int = 0  # stored, but the agent was not (yet) told
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.altered or self.gaps or self.dropped)

    def line(self) -> str:
        return (
            f"transitions produced {self.produced}, acknowledged {self.acked}, stored "
            f"{self.stored}; lost {self.lost}, duplicated {self.duplicated}, altered "
            f"{self.altered}, gaps {self.gaps}, pending {self.pending}, dropped {self.dropped}"
        )


def stored_rows(service: str) -> list[tuple[Any, ...]]:
    from controlplane.circuits.models import Transition

    return list(
        Transition.objects.filter(circuit__service__name=service).values_list(
            "instance__instance_id",
            "generation",
            "seq",
            "circuit__name",
            "from_state",
            "to_state",
            "at",
        )
    )


def _stamp(at: Any) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tally(service: str, records: Iterable[dict[str, Any]]) -> Tally:
    """Compare the agents' records (``fleet.agent_record``) with the stored rows."""
    result = Tally()
    by_instance: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in stored_rows(service):
        by_instance[row[0]].append(row)
    for record in records:
        instance = record["instance"]
        rows = by_instance.pop(instance, [])
        result.produced += record["produced"]
        result.pending += record["pending"]
        result.dropped += record["dropped"]
        result.stored += len(rows)
        acked = {int(i): list(key) for i, key in record["acked"].items()}
        result.acked += len(acked)
        seqs = Counter((gen, seq) for _, gen, seq, *_ in rows)
        dup_seq = sum(n - 1 for n in seqs.values() if n > 1)
        contents = Counter((c, f, t, _stamp(at)) for *_, c, f, t, at in rows)
        dup_content = sum(n - 1 for n in contents.values() if n > 1)
        duplicated = max(dup_seq, dup_content)
        if duplicated:
            result.problems.append(f"{instance}: {duplicated} stored twice")
        result.duplicated += duplicated
        if any(gen != 0 for gen, _ in seqs):
            result.problems.append(f"{instance}: rows of a later generation (a restart?)")
        content = {seq: [c, f, t, _stamp(at)] for _, gen, seq, c, f, t, at in rows if gen == 0}
        lost = sorted(set(acked) - set(content))
        if lost:
            result.problems.append(f"{instance}: acknowledged, not stored: ids {lost[:20]}")
        result.lost += len(lost)
        altered = [i for i in acked if i in content and content[i] != acked[i]]
        if altered:
            i = altered[0]
            result.problems.append(
                f"{instance}: {len(altered)} stored altered, e.g. id {i}: "
                f"{content[i]} != {acked[i]}"
            )
        result.altered += len(altered)
        top = max(content, default=0)
        gaps = sorted(set(range(1, top + 1)) - set(content))
        if gaps:
            result.problems.append(f"{instance}: ids missing below {top}: {gaps[:20]}")
        result.gaps += len(gaps)
        result.stored_unacked += len(set(content) - set(acked))
    for instance, rows in by_instance.items():
        result.problems.append(f"{len(rows)} rows of an instance no agent ran: {instance}")
        result.stored += len(rows)
    return result
