"""Streaming exports of history as CSV or JSON Lines, in constant memory.

Under ASGI Django reads a synchronous iterator of a ``StreamingHttpResponse`` whole
into memory before it sends a byte, so the response body here is an asynchronous
iterator. It drives a synchronous generator on the request's own thread (one
``sync_to_async`` hop per chunk): the generator opens a transaction and reads the file
as it is produced, handing it on ``CHUNK_BYTES`` at a time, so memory holds one chunk
and the first bytes leave before the query has been read. A client that goes away
closes the generator, which stops the query and rolls back.

On PostgreSQL the database writes the file: the queryset (filtered and ordered by the
caller) compiled to SQL, each column formatted as the API writes it, run by
``COPY (...) TO STDOUT`` and read row by row with psycopg. Elsewhere (SQLite) the rows
are read through the ORM and encoded in Python.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Func, QuerySet, TextField
from django.http import StreamingHttpResponse
from psycopg import sql

from controlplane.core.keyset import iso_utc

# Bytes of the file per chunk of the response body (PostgreSQL; whole rows).
CHUNK_BYTES = 256 * 1024
# Rows per fetch and per chunk of the response body (other databases).
ROWS_PER_CHUNK = 2000
# format -> (media type, file extension)
FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "jsonl": ("application/x-ndjson", "jsonl"),
}


@dataclass(frozen=True)
class Column:
    """One exported field: its name in the file, the ORM path read, and its kind
    (``value``; ``float``; ``time`` written as ISO 8601 UTC; ``json`` kept as an object in
    JSON Lines and written as JSON text in CSV)."""

    name: str
    path: str
    kind: str = "value"


class IsoUtc(Func):
    """A time as the API writes it, formatted by PostgreSQL: ISO 8601 in UTC, the
    microseconds unless zero, ``Z``."""

    template = (
        "replace(to_char(%(expressions)s AT TIME ZONE 'UTC',"
        " 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), '.000000', '') || 'Z'"
    )
    output_field = TextField()


class FloatText(Func):
    """A float as Python writes it (``repr``), formatted by PostgreSQL. Both write the
    shortest digits that read back as the same float; Python keeps ``.0`` on a whole
    number, which PostgreSQL drops. (Exponents agree below 1e-4; from 1e15 up they
    differ, beyond the exported rates, which lie in [0, 1].)"""

    template = (
        "CASE WHEN %(expressions)s = trunc(%(expressions)s)"
        " THEN trunc(%(expressions)s)::numeric::text || '.0'"
        " ELSE %(expressions)s::text END"
    )
    output_field = TextField()


class CompactJson(Func):
    """A ``jsonb`` value as JSON text without the blank PostgreSQL writes after each
    ``,`` and ``:`` (outside strings), as the API writes it: the keys in the order the
    API reads them, numbers as stored. The pattern steps over each string whole (escaped
    quotes included), so only separators lose their blank."""

    template = (
        "regexp_replace((%(expressions)s)::text,"
        r""" '("(?:[^"\\]|\\.)*")|([,:]) ', '\1\2', 'g')"""
    )
    output_field = TextField()


def _cell(column: Column, fmt: str) -> Func | F:
    """The SQL of one column as text (CSV) or as a JSON value (JSON Lines)."""
    value = F(column.path)
    if column.kind == "time":
        return IsoUtc(value)
    if column.kind in ("float", "json"):
        text: Func = FloatText(value) if column.kind == "float" else CompactJson(value)
        # In JSON Lines the text is the value (a json value keeps its text as written).
        return text if fmt == "csv" else Func(text, template="(%(expressions)s)::json")
    if fmt == "csv":
        # An empty string as an empty cell, as Python's csv writes it (COPY quotes it).
        return Func(value, template="NULLIF((%(expressions)s)::text, '')")
    return value


def copy_statement(
    queryset: QuerySet[Any], columns: Sequence[Column], fmt: str
) -> tuple[sql.Composed, tuple[Any, ...]]:
    """``COPY (<queryset's SELECT>) TO STDOUT`` writing the file, and its parameters.

    CSV is COPY's CSV with a header. A JSON Lines row is one JSON text built by
    ``row_to_json``, which holds no newline or control character: CSV with a quote and
    a delimiter that never occur in it writes it as it is (TEXT would double its
    backslashes)."""
    if queryset.query.distinct:
        # It would sort every row before the first, and add the ordering's columns.
        raise ValueError("an export streams rows in order: no DISTINCT")
    cells = {f"export_{i}": _cell(c, fmt) for i, c in enumerate(columns)}
    inner, params = queryset.annotate(**cells).values_list(*cells).query.sql_with_params()
    names = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    if fmt == "csv":
        template = "COPY (SELECT * FROM ({inner}) AS export ({names})) TO STDOUT"
        options = "(FORMAT csv, HEADER true)"
    else:
        template = (
            "COPY (SELECT row_to_json(export)::text FROM ({inner}) AS export ({names})) TO STDOUT"
        )
        options = "(FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
    statement = sql.SQL(f"{template} {options}").format(inner=sql.SQL(inner), names=names)
    return statement, tuple(params)


def _copy_chunks(
    queryset: QuerySet[Any], columns: Sequence[Column], fmt: str
) -> Generator[bytes, None, None]:
    """The file as PostgreSQL writes it. COPY sends one message per row (the header
    too): CSV rows end in CRLF as Python's csv writes them, a row's own newlines (inside
    quotes) kept."""
    statement, params = copy_statement(queryset, columns, fmt)
    crlf = fmt == "csv"
    with transaction.atomic(using=queryset.db), connections[queryset.db].cursor() as cursor:
        # One statement for the whole file: its own time limit. And a plan that reads
        # rows in order (an index on the order) rather than sorting them all first,
        # whatever the table's statistics say: the first bytes leave at once.
        timeout = f"{settings.SWITCHYARD_EXPORT_TIMEOUT_S}s"
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, true),"
            " set_config('enable_sort', 'off', true)",
            [timeout],
        )
        buffer = bytearray()
        with cursor.cursor.copy(statement, params) as copy:
            for row in copy:
                if crlf:
                    buffer += row[:-1]
                    buffer += b"\r\n"
                else:
                    buffer += row
                if len(buffer) >= CHUNK_BYTES:
                    yield bytes(buffer)
                    buffer.clear()
        if buffer:
            yield bytes(buffer)


def _json(value: Any) -> str:
    """JSON text as the API writes it: compact, floats as Python writes them."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _encoder(columns: Sequence[Column], fmt: str) -> Callable[[list[tuple[Any, ...]]], bytes]:
    """Rows (tuples in column order) to one chunk of the file."""
    names = [c.name for c in columns]
    times = [i for i, c in enumerate(columns) if c.kind == "time"]
    texts = [i for i, c in enumerate(columns) if c.kind == "json"] if fmt == "csv" else []

    def cells(row: tuple[Any, ...]) -> list[Any]:
        values = list(row)
        for i in times:
            values[i] = iso_utc(values[i]) if values[i] is not None else None
        for i in texts:
            values[i] = _json(values[i]) if values[i] is not None else None
        return values

    if fmt == "jsonl":

        def jsonl(rows: list[tuple[Any, ...]]) -> bytes:
            lines = (_json(dict(zip(names, cells(row), strict=True))) for row in rows)
            return "".join(f"{line}\n" for line in lines).encode()

        return jsonl

    def to_csv(rows: list[tuple[Any, ...]]) -> bytes:
        out = io.StringIO()
        csv.writer(out).writerows(cells(row) for row in rows)
        return out.getvalue().encode()

    return to_csv


def _orm_chunks(
    queryset: QuerySet[Any], columns: Sequence[Column], fmt: str
) -> Generator[bytes, None, None]:
    """The file encoded in Python from rows read in one transaction, a chunk at a time."""
    encode = _encoder(columns, fmt)
    with transaction.atomic(using=queryset.db):
        rows = queryset.values_list(*(c.path for c in columns)).iterator(ROWS_PER_CHUNK)
        if fmt == "csv":
            out = io.StringIO()
            csv.writer(out).writerow([c.name for c in columns])
            yield out.getvalue().encode()
        while batch := list(islice(rows, ROWS_PER_CHUNK)):
            yield encode(batch)


def chunks(
    queryset: QuerySet[Any], columns: Sequence[Column], fmt: str
) -> Generator[bytes, None, None]:
    """The file, chunk by chunk: written by PostgreSQL's COPY, else encoded in Python."""
    if connections[queryset.db].vendor == "postgresql":
        return _copy_chunks(queryset, columns, fmt)
    return _orm_chunks(queryset, columns, fmt)


async def _drive(generator: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    """``generator`` stepped on the request's thread (thread-sensitive), one chunk per hop."""

    def step() -> bytes | None:
        return next(generator, None)

    try:
        while (chunk := await sync_to_async(step, thread_sensitive=True)()) is not None:
            yield chunk
    finally:
        # Closing runs the exits of the COPY (cancelled if unfinished) and of the
        # transaction (a rollback) on the thread that opened them.
        await sync_to_async(generator.close, thread_sensitive=True)()


def response(
    queryset: QuerySet[Any], columns: Sequence[Column], fmt: str, filename: str
) -> StreamingHttpResponse:
    """The streaming download of ``queryset`` (ordered by the caller) as ``fmt``."""
    media_type, extension = FORMATS[fmt]
    answer = StreamingHttpResponse(_drive(chunks(queryset, columns, fmt)), content_type=media_type)
    answer["Content-Disposition"] = f'attachment; filename="{filename}.{extension}"'
    answer["X-Content-Type-Options"] = "nosniff"
    answer["Cache-Control"] = "no-store"
    return answer
