"""Streaming exports of history as CSV or JSON Lines, in constant memory.

Under ASGI Django reads a synchronous iterator of a ``StreamingHttpResponse`` whole
into memory before it sends a byte, so the response body here is an asynchronous
iterator. It drives a synchronous generator on the request's own thread (one
``sync_to_async`` hop per chunk of rows): the generator opens a transaction and reads
the query through a server-side cursor, ``ROWS_PER_CHUNK`` rows per fetch, encoding each
chunk before handing it on. Inside a transaction the cursor is not ``WITH HOLD``, so
PostgreSQL produces rows as they are fetched instead of materializing the whole result
first; the first bytes leave before the query has been read, and memory holds one
chunk at a time. A client that goes away closes the generator, which rolls back.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.db.models import F, Func, QuerySet, TextField
from django.http import StreamingHttpResponse

from controlplane.core.keyset import iso_utc

# Rows per fetch from the database and per chunk of the response body.
ROWS_PER_CHUNK = 2000
# format -> (media type, file extension)
FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "jsonl": ("application/x-ndjson", "jsonl"),
}
_JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_APPEND_NEWLINE


@dataclass(frozen=True)
class Column:
    """One exported field: its name in the file, the ORM path read, and its kind
    (``value``, ``time`` written as ISO 8601 UTC, ``json`` kept as an object in JSON Lines
    and written as JSON text in CSV)."""

    name: str
    path: str
    kind: str = "value"


class IsoUtc(Func):
    """A time as the API writes it, formatted by PostgreSQL: ISO 8601 in UTC, the
    microseconds unless zero, ``Z``. (Decoding a timestamp in Python costs more than
    the rest of an exported row.)"""

    template = (
        "replace(to_char(%(expressions)s AT TIME ZONE 'UTC',"
        " 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), '.000000', '') || 'Z'"
    )
    output_field = TextField()


def _csv_cell(kind: str) -> Callable[[Any], Any] | None:
    if kind == "time":
        return lambda v: iso_utc(v) if isinstance(v, datetime) else v
    if kind == "json":
        return lambda v: orjson.dumps(v).decode() if v is not None else None
    return None


def _encoder(columns: Sequence[Column], fmt: str) -> Callable[[list[tuple[Any, ...]]], bytes]:
    """Rows (tuples in column order) to one chunk of the file."""
    names = [c.name for c in columns]
    if fmt == "jsonl":
        dumps = orjson.dumps

        def jsonl(rows: list[tuple[Any, ...]]) -> bytes:
            return b"".join(
                dumps(dict(zip(names, row, strict=True)), option=_JSON_OPTIONS) for row in rows
            )

        return jsonl
    cells = [(i, f) for i, c in enumerate(columns) if (f := _csv_cell(c.kind)) is not None]

    def to_csv(rows: list[tuple[Any, ...]]) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        if not cells:
            writer.writerows(rows)
            return out.getvalue().encode()
        for row in rows:
            values = list(row)
            for i, convert in cells:
                values[i] = convert(values[i])
            writer.writerow(values)
        return out.getvalue().encode()

    return to_csv


def header(columns: Sequence[Column]) -> bytes:
    """The CSV header row."""
    out = io.StringIO()
    csv.writer(out).writerow([c.name for c in columns])
    return out.getvalue().encode()


def chunks(
    queryset: QuerySet[Any], columns: Sequence[Column], fmt: str
) -> Generator[bytes, None, None]:
    """The file, chunk by chunk, read in one transaction through a server-side cursor."""
    if connections[queryset.db].vendor == "postgresql":
        times = {c.name: IsoUtc(F(c.path)) for c in columns if c.kind == "time"}
        queryset = queryset.annotate(**{f"{name}_text": expr for name, expr in times.items()})
        paths = [f"{c.name}_text" if c.name in times else c.path for c in columns]
        columns = [Column(c.name, c.path, "value" if c.name in times else c.kind) for c in columns]
    else:
        paths = [c.path for c in columns]
    encode = _encoder(columns, fmt)
    with transaction.atomic(using=queryset.db):
        rows = queryset.values_list(*paths).iterator(chunk_size=ROWS_PER_CHUNK)
        if fmt == "csv":
            yield header(columns)
        while batch := list(islice(rows, ROWS_PER_CHUNK)):
            yield encode(batch)


async def _drive(generator: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
    """``generator`` stepped on the request's thread (thread-sensitive), one chunk per hop."""

    def step() -> bytes | None:
        return next(generator, None)

    try:
        while (chunk := await sync_to_async(step, thread_sensitive=True)()) is not None:
            yield chunk
    finally:
        # Closing runs the transaction's exit (a rollback) on the thread that opened it.
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
