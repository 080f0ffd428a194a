"""Limits on JSON request bodies that hold before any parser recurses into them.

Python's ``json`` (Django views, DRF's parser) recurses once per nesting level and a
deeply nested body ends in a RecursionError; orjson stops at 1,024 levels. Every JSON
body the project parses is first measured by :func:`depth_error`, which never recurses,
against ``SWITCHYARD_JSON_MAX_DEPTH`` (default 32): a deeper body is a 400 with the
field ``body``.
"""

import io
import re
from typing import Any

from django.conf import settings
from rest_framework import parsers, serializers
from rest_framework.exceptions import ParseError

# Every byte but a quote and the brackets, deleted before the brackets are counted.
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b'"[]{}')
_OPENING = frozenset(b"[{")


def max_depth() -> int:
    """The deepest nesting of arrays and objects accepted (SWITCHYARD_JSON_MAX_DEPTH)."""
    return int(settings.SWITCHYARD_JSON_MAX_DEPTH)


def depth_error(body: bytes | str, limit: int | None = None) -> str | None:
    """Why ``body`` nests arrays and objects deeper than ``limit`` levels, or None.

    ``[]`` is one level, ``{"a": [1]}`` two. Linear in the body's size, never recursive,
    and mostly at C speed: escaped backslashes and quotes are dropped, then everything
    but quotes and brackets; what lies between quotes was inside strings. A body left
    unclosed counts too (a parser would recurse into it before seeing its end); other
    malformed bodies are left to the parser.
    """
    limit = max_depth() if limit is None else limit
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return None  # cannot nest deeper than it has brackets
    reduced = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURAL)
    brackets = b"".join(reduced.split(b'"')[::2])
    # Shortcut for the usual body: each pass of the two replaces removes one or two
    # levels, so emptied within limit // 2 passes means no deeper than the limit.
    shell = brackets
    for _ in range(limit // 2):
        shorter = shell.replace(b"[]", b"").replace(b"{}", b"")
        if not shorter:
            return None
        if len(shorter) == len(shell):
            break  # malformed: count exactly below
        shell = shorter
    depth = 0
    for char in brackets:
        if char in _OPENING:
            depth += 1
            if depth > limit:
                return f"JSON nested deeper than {limit} levels (SWITCHYARD_JSON_MAX_DEPTH)"
        else:
            depth -= 1
    return None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the nesting limit checked before parsing (400, ``body``)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = stream.read()  # DRF hands parsers no stream for an empty body
        reason = depth_error(data)
        if reason is not None:
            raise ParseError(reason)
        return super().parse(io.BytesIO(data), media_type, parser_context)


# What PostgreSQL cannot store in text or jsonb (NUL) and UTF-8 cannot encode (lone
# surrogates).
UNSTORABLE_RE = re.compile(r"[\x00\ud800-\udfff]")
UNSTORABLE_REASON = "must not contain NUL characters or lone surrogates"


def unstorable_text(value: Any, path: str = "") -> dict[str, str]:
    """``{path: reason}`` for every key or string in a decoded JSON value that could not
    be stored (paths as in the error shape: ``headers.X-Token``, ``items[2]``)."""
    found: dict[str, str] = {}
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if UNSTORABLE_RE.search(item):
                found[where or "detail"] = UNSTORABLE_REASON
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{where}.{key}" if where else str(key)
                if UNSTORABLE_RE.search(str(key)):
                    found[where or "detail"] = f"keys {UNSTORABLE_REASON}"
                    continue
                stack.append((name, child))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return found


class StorableJSONField(serializers.JSONField):
    """DRF's JSONField that refuses what PostgreSQL's jsonb cannot store (400 naming the
    path inside the value) instead of failing the write."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        found = unstorable_text(value)
        if found:
            raise serializers.ValidationError(found)
        return value
