"""The sync's one store on the embedded SQLite database (the statements' SQLite form)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_store_writes_the_same_rows_on_sqlite(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.circuits.sqlite_store_check", str(tmp_path / "db.sqlite3")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    stored = json.loads(done.stdout.strip().splitlines()[-1])
    # Two syncs of one instance in one write merge; a restart starts the ids over.
    assert stored["acked"] == [[1], [2, 2], [1]]
    assert stored["instance"] == [1, 1, 1]
    assert stored["transitions"] == 3
    # Reports 1 and 2 of the first start (2 sent twice in one write: stored once) and
    # report 1 of the restarted process, in one bucket, their latencies merged.
    assert stored["traffic"] == [[10 + 60 + 5, {"1": 15, "2": 60}]]
    # Reported while the rollout ran, by an instance on its from-version: the baseline's.
    assert stored["rollout"] == [["baseline", 60 + 5]]
    # The restarted process's counters grew from zero over its 2 s; the idle open
    # breaker is rewritten only because its process restarted.
    assert stored["snapshots"] == [["db", 1, 5, 5, 2.0], ["idle", 1, 0, 0, 2.0]]
