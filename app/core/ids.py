"""Database ids as they arrive from outside (a URL, a query string, a form, a session cookie).

Every id column fits PostgreSQL's ``integer``; a longer number can name no row, and passed on
it would fail in the database (out of range on PostgreSQL, overflow in the SQLite driver)
instead of finding nothing. The URL converter and ``as_id`` turn such input into "no such row".
"""
from __future__ import annotations

from werkzeug.routing import IntegerConverter

MAX_ID = 2**31 - 1


def as_id(value) -> int | None:
    """A positive id that can exist, or None (not digits, zero, or too large)."""
    text = str(value if value is not None else "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


class IdConverter(IntegerConverter):
    """``<int:…>`` in every route: a number out of an id's range does not match (404)."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)
