"""An export streams from a real uvicorn server in constant memory: the first bytes
arrive while PostgreSQL is still writing the file (its COPY running, a small part of the
rows read), the server's resident memory stays flat over 200,000 rows, and the COPY
ends with the response, or is stopped when the client goes away mid-file."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection

from controlplane.circuits.auth import create_api_token
from tests.circuits import history
from tests.e2e.conftest import ControlPlaneProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROWS = 200_000
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
# Resident memory the server may gain while it streams 200,000 rows (about 45 MB of
# CSV): a body gathered in memory would take more than this by itself.
MAX_GROWTH_KB = 16 * 1024


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _load(rows: int) -> None:
    circuit = history.circuit("checkout", "payments")
    owner = history.instance(circuit.service, "web-1")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO circuits_transition (instance_id, circuit_id, generation, seq,
                from_state, to_state, at, reason, failure_rate, calls, failures,
                config_version, received_at)
            SELECT %s, %s, 0, g, 'closed', 'open', %s - g * interval '1 millisecond',
                'failure_rate', 0.5, g, g / 2, 1, %s
            FROM generate_series(1, %s) AS g
            """,
            [owner.pk, circuit.pk, T0, T0, rows],
        )


def _copies() -> list[tuple[int, str, int]]:
    """(pid, state, rows read so far) of the server's connections running an export's
    COPY."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.pid, a.state, p.tuples_processed FROM pg_stat_progress_copy p"
            " JOIN pg_stat_activity a USING (pid) WHERE p.datname = current_database()"
            " AND p.command = 'COPY TO' AND a.query LIKE %s",
            ["COPY (%"],
        )
        return list(cursor.fetchall())


def _backend(pid: int) -> tuple[str, str]:
    """(state, last query) of one server connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
        assert row is not None
        return row[0], row[1]


def _export_params(fmt: str) -> dict[str, Any]:
    return {
        "format": fmt,
        "since": (T0 - timedelta(days=1)).isoformat(),
        "until": (T0 + timedelta(days=1)).isoformat(),
    }


def test_an_export_streams_in_constant_memory_before_the_query_is_read(
    own_control_plane: ControlPlaneProcess, viewer: User
) -> None:
    _load(ROWS)
    token = create_api_token(viewer)[1]
    pid = own_control_plane.pid
    assert pid is not None
    params = _export_params("csv")
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{own_control_plane.url}/api/v1/transitions/export/"
    with httpx.Client(headers=headers, timeout=60) as client:
        # Warm up (imports, a pooled connection), then measure from there.
        warm = client.get(url, params={**params, "circuit": 999_999_999})
        assert warm.status_code == 200 and warm.text.count("\n") == 1
        baseline = _rss_kb(pid)
        peak = baseline
        lines = 0
        started = time.monotonic()
        with client.stream("GET", url, params=params) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "text/csv; charset=utf-8"
            chunks = answer.iter_bytes()
            first = next(chunks)
            first_at = time.monotonic() - started
            lines += first.count(b"\n")
            # The client has not read on: PostgreSQL is blocked mid-COPY, a small part
            # of the rows read (what the buffers on the way hold).
            copies = _copies()
            assert len(copies) == 1, "the file was written whole before the first bytes"
            backend, state, read = copies[0]
            assert state == "active" and read < ROWS / 2, copies
            for chunk in chunks:
                lines += chunk.count(b"\n")
                peak = max(peak, _rss_kb(pid))
        total = time.monotonic() - started
    assert lines == ROWS + 1  # the header and every row
    growth = peak - baseline
    print(
        f"\n{ROWS} rows in {total:.2f} s, first bytes after {first_at * 1000:.0f} ms;"
        f" server RSS {baseline // 1024} MB, peak growth {growth / 1024:.1f} MB"
    )
    assert growth < MAX_GROWTH_KB, f"the server grew {growth} kB while streaming"
    assert first_at < total / 4
    # The COPY and its transaction ended with the response.
    assert wait_for(lambda: not _copies() and _backend(backend)[0] == "idle")
    assert _backend(backend)[1] == "COMMIT"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_client_that_goes_away_mid_file_stops_the_copy(
    fmt: str, own_control_plane: ControlPlaneProcess, viewer: User
) -> None:
    _load(ROWS)
    token = create_api_token(viewer)[1]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{own_control_plane.url}/api/v1/transitions/export/"
    client = httpx.Client(headers=headers, timeout=60)
    with client, client.stream("GET", url, params=_export_params(fmt)) as answer:
        assert answer.status_code == 200
        chunks = answer.iter_bytes()  # (dropping the iterator closes the stream)
        next(chunks)
        assert wait_for(lambda: len(_copies()) == 1)
        backend, state, read = _copies()[0]
        assert state == "active" and read < ROWS / 2
        # Leaving the block closes the connection with the rest of the file unread.
    # The COPY stops (cancelled, the rest of the file never written) and its
    # transaction is rolled back: the connection is back in the pool, idle.
    assert wait_for(lambda: not _copies() and _backend(backend)[0] == "idle", timeout=10)
    assert _backend(backend)[1] == "ROLLBACK"
