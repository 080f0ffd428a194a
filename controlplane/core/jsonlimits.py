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

# A JSON string (escapes included), or an unterminated one up to the end: strings are
# blanked before brackets are counted. Possessive, so a scan never backtracks.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]++")
_OPENING = frozenset(b"[{")


def max_depth() -> int:
    """The deepest nesting of arrays and objects accepted (SWITCHYARD_JSON_MAX_DEPTH)."""
    return int(settings.SWITCHYARD_JSON_MAX_DEPTH)


def depth_error(body: bytes | str, limit: int | None = None) -> str | None:
    """Why ``body`` nests arrays and objects deeper than ``limit`` levels, or None.

    ``[]`` is one level, ``{"a": [1]}`` two. Linear in the body's size and never
    recursive: strings are blanked, then the brackets left are counted (a body left
    unclosed counts too: the parser would recurse into it before seeing its end).
    """
    limit = max_depth() if limit is None else limit
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return None  # cannot nest deeper than it has brackets
    depth = 0
    for char in _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw)):
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
