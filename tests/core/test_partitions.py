"""Range partitions by day or month on a table of its own (PostgreSQL): names, creation
ahead, rows moved out of the default partition, drops past a cutoff, quoting."""

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from django.db import connection

from controlplane.core import partitions

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")

PARENT = 'Odd "events"-2'  # quoting is exercised by every statement


def at(day: int, hour: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def sql(statement: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def parent(db: None) -> Iterator[str]:
    q = partitions.quote
    sql(
        f"CREATE TABLE {q(PARENT)} (id bigint NOT NULL, at timestamptz NOT NULL, note text,"
        f" PRIMARY KEY (id, at)) PARTITION BY RANGE (at)"
    )
    sql(f"CREATE TABLE {q(PARENT + '_default')} PARTITION OF {q(PARENT)} DEFAULT")
    yield PARENT


def insert(parent: str, *rows: tuple[int, datetime]) -> None:
    for row_id, moment in rows:
        sql(
            f"INSERT INTO {partitions.quote(parent)} (id, at, note) VALUES (%s, %s, 'n')",
            [row_id, moment],
        )


def where(parent: str) -> dict[int, str]:
    """Each row's id -> the partition holding it."""
    rows = sql(f"SELECT id, tableoid::regclass::text FROM {partitions.quote(parent)}")
    return {int(row_id): str(table).strip('"').replace('""', '"') for row_id, table in rows}


def test_names_floors_and_periods() -> None:
    assert partitions.partition_name("t", at(5, 13), "day") == "t_p20261205"
    assert partitions.partition_name("t", at(5, 13), "month") == "t_p202612"
    assert partitions.following(at(31), "day") == datetime(2027, 1, 1, tzinfo=UTC)
    assert partitions.following(at(5), "month") == datetime(2027, 1, 1, tzinfo=UTC)
    assert partitions.periods(at(30, 12, month=11), at(2), "day") == [
        at(30, month=11),
        at(1),
    ]
    with pytest.raises(ValueError, match="longer than 63"):
        partitions.partition_name("x" * 60, at(1), "day")
    with pytest.raises(ValueError, match="time zone"):
        partitions.floor(datetime(2026, 12, 5), "day")  # noqa: DTZ001
    with pytest.raises(ValueError, match="interval"):
        partitions.floor(at(5), "week")  # type: ignore[arg-type]


def test_ensure_creates_the_missing_partitions_once(parent: str) -> None:
    created = partitions.ensure(parent, at(5, 13), at(8), "day")
    assert created == [f"{parent}_p20261205", f"{parent}_p20261206", f"{parent}_p20261207"]
    assert partitions.ensure(parent, at(5), at(9), "day") == [f"{parent}_p20261208"]
    listed = partitions.list(parent)
    assert [(p.start, p.end) for p in listed] == [(at(d), at(d + 1)) for d in (5, 6, 7, 8)]
    insert(parent, (1, at(6, 23)), (2, at(9)))
    assert where(parent) == {1: f"{parent}_p20261206", 2: f"{parent}_default"}


def test_ensure_moves_the_default_partitions_rows_into_the_new_partition(parent: str) -> None:
    # Rows arrive before their partition exists: the default partition takes them.
    insert(parent, (1, at(5)), (2, at(5, 23)), (3, at(6, 1)), (4, at(20)))
    assert set(where(parent).values()) == {f"{parent}_default"}
    assert partitions.ensure(parent, at(5), at(7), "day") == [
        f"{parent}_p20261205",
        f"{parent}_p20261206",
    ]
    assert where(parent) == {
        1: f"{parent}_p20261205",
        2: f"{parent}_p20261205",
        3: f"{parent}_p20261206",
        4: f"{parent}_default",
    }
    assert sql(f"SELECT count(*), min(note) FROM {partitions.quote(parent)}") == [(4, "n")]


def test_monthly_partitions_and_a_partition_made_by_hand_is_left_alone(parent: str) -> None:
    q = partitions.quote
    sql(
        f"CREATE TABLE {q(parent + '_handmade')} PARTITION OF {q(parent)}"
        " FOR VALUES FROM ('2027-01-10') TO ('2027-01-20')"
    )
    created = partitions.ensure(parent, at(5), datetime(2027, 3, 1, tzinfo=UTC), "month")
    assert created == [f"{parent}_p202612", f"{parent}_p202702"]
    assert [p.name for p in partitions.list(parent)] == [
        f"{parent}_p202612",
        f"{parent}_handmade",
        f"{parent}_p202702",
    ]


def test_drop_before_drops_whole_partitions_and_old_default_rows(parent: str) -> None:
    partitions.ensure(parent, at(5), at(8), "day")
    insert(parent, (1, at(1)), (2, at(3)), (3, at(5, 6)), (4, at(6, 6)), (5, at(7, 6)))
    dropped = partitions.drop_before(parent, at(6, 12), "day")
    # The 5th ends before the cutoff and goes with its row; the 6th holds the cutoff.
    assert dropped.partitions == [f"{parent}_p20261205"]
    assert dropped.default_rows == 2
    assert [p.name for p in partitions.list(parent)] == [
        f"{parent}_p20261206",
        f"{parent}_p20261207",
    ]
    assert sorted(where(parent)) == [4, 5]
    assert sql("SELECT to_regclass(%s)", [partitions.quote(f"{parent}_p20261205")]) == [(None,)]
    # Only partitions named for the interval are dropped.
    assert partitions.drop_before(parent, at(9), "month").partitions == []


def test_a_table_not_partitioned_by_range_is_refused(db: None) -> None:
    with pytest.raises(ValueError, match="not a table partitioned by range"):
        partitions.ensure("circuits_service", at(5), at(6), "day")
    with pytest.raises(ValueError, match="not a table partitioned by range"):
        partitions.list("no_such_table")


@pytest.mark.django_db(transaction=True)
def test_a_partition_whose_locks_are_busy_is_skipped_and_made_next_time() -> None:
    q = partitions.quote
    sql(f"CREATE TABLE {q(PARENT)} (at timestamptz NOT NULL) PARTITION BY RANGE (at)")
    sql(f"CREATE TABLE {q(PARENT + '_default')} PARTITION OF {q(PARENT)} DEFAULT")
    try:
        params = connection.get_connection_params()
        with psycopg.connect(**params) as other:
            other.execute(f"LOCK TABLE {q(PARENT + '_default')} IN ACCESS SHARE MODE")
            original = partitions.LOCK_TIMEOUT_MS
            partitions.LOCK_TIMEOUT_MS = 100
            try:
                assert partitions.ensure(PARENT, at(5), at(6), "day") == []
            finally:
                partitions.LOCK_TIMEOUT_MS = original
        assert partitions.ensure(PARENT, at(5), at(6), "day") == [f"{PARENT}_p20261205"]
    finally:
        sql(f"DROP TABLE {q(PARENT)}")
