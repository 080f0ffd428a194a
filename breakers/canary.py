"""Which instances run a canary config: one decision the agent and the server share.

A canary rollout (docs/rollouts.md) sends a new config version to some instances of a
service while the others keep the current one. The desired state carries, per breaker,
``"canary": {"rollout": id, "config_version": N, "config": {...}, "select": {...}}``;
each agent asks :func:`selected` with its own :func:`stable_identity`, and the server
asks the same function with the identity of every instance it knows, so both sides
agree on the two groups without the agent reporting its choice.

A **selector** is one of

- ``{"percent": P, "salt": S}``: the instances whose identity hashes below ``P`` %
  (1 <= P <= 99); ``S`` is chosen once per rollout, so two rollouts pick independent
  groups and one rollout keeps its group for its whole life;
- ``{"instances": [identity, ...]}``: exactly the instances with these identities.

The **stable identity** of a process is what stays the same when it restarts:

- the ``instance_id`` the application gave the agent (``Agent(instance_id=...)``);
- for a process forked from one that was given an id (``<id>-<pid>``), that id;
- else (the default ``<hostname>-<pid>-<6 hex>``) the hostname.

So a restarted process lands in the group it was in, and the processes of one host
without a fixed id share a group. It is computed from the three fields every sync
reports (``instance.id``, ``instance.hostname``, ``instance.pid``), so the server needs
nothing more than what it already stores. Standard library only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

__all__ = [
    "MAX_NAMED",
    "MAX_PERCENT",
    "MAX_SALT_LENGTH",
    "MIN_PERCENT",
    "CanaryWire",
    "selected",
    "selector_errors",
    "stable_identity",
]

#: Bounds of a percentage selector.
MIN_PERCENT = 1
MAX_PERCENT = 99
#: At most this many named instances in one selector.
MAX_NAMED = 1000
#: A salt is 1 to this many characters.
MAX_SALT_LENGTH = 64

_DEFAULT_SUFFIX = re.compile(r"-(\d+)-[0-9a-f]{6}\Z")


class CanaryWire(TypedDict):
    """The ``canary`` key of a breaker's desired state while a rollout runs."""

    rollout: int
    config_version: int
    config: dict[str, Any]
    select: dict[str, Any]


def stable_identity(instance_id: str, hostname: str | None, pid: int | None) -> str:
    """The identity a restarted process keeps (module docstring): the hostname for
    an agent's default id, the fixed id without a forked child's ``-<pid>``, else the
    id itself."""
    if pid is not None and hostname:
        match = _DEFAULT_SUFFIX.search(instance_id)
        if match and int(match.group(1)) == pid and instance_id[: match.start()] == hostname:
            return hostname
        suffix = f"-{pid}"
        if instance_id.endswith(suffix) and len(instance_id) > len(suffix):
            return instance_id[: -len(suffix)]
    return instance_id


def _fraction(salt: str, identity: str) -> float:
    """Where ``identity`` falls in [0, 1) for ``salt``: uniform and fixed per pair."""
    digest = hashlib.sha256(f"{salt}\0{identity}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def selector_errors(select: object) -> dict[str, str]:
    """What is wrong with a selector, by field (empty when it is well formed)."""
    if not isinstance(select, Mapping):
        return {"select": "must be an object with percent and salt, or instances"}
    if "instances" in select:
        names = select["instances"]
        if (
            not isinstance(names, Sequence)
            or isinstance(names, str)
            or not all(isinstance(n, str) and n for n in names)
        ):
            return {"instances": "must be a list of instance identities"}
        if not 1 <= len(names) <= MAX_NAMED:
            return {"instances": f"must name 1 to {MAX_NAMED} instances, got {len(names)}"}
        return {}
    errors: dict[str, str] = {}
    percent = select.get("percent")
    if (
        isinstance(percent, bool)
        or not isinstance(percent, int)
        or not MIN_PERCENT <= percent <= MAX_PERCENT
    ):
        errors["percent"] = (
            f"must be an integer from {MIN_PERCENT} to {MAX_PERCENT}, got {percent!r}"
        )
    salt = select.get("salt")
    if not isinstance(salt, str) or not 1 <= len(salt) <= MAX_SALT_LENGTH:
        errors["salt"] = f"must be a string of 1 to {MAX_SALT_LENGTH} characters"
    return errors


def selected(select: Mapping[str, Any], identity: str) -> bool:
    """Whether the instance of ``identity`` is in the canary group of ``select``.

    ValueError naming the field for a selector that is not well formed
    (:func:`selector_errors`).
    """
    errors = selector_errors(select)
    if errors:
        field, reason = next(iter(errors.items()))
        raise ValueError(f"select.{field} {reason}")
    if "instances" in select:
        names: list[str] = list(select["instances"])
        return identity in names
    percent: int = select["percent"]
    return _fraction(str(select["salt"]), identity) * 100.0 < percent
