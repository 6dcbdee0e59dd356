"""The case list's search: names, institutions and teams by any part; phones only by the
exact full number or exactly the last four digits.

A search by any longer suffix would be an oracle: the list masks the middle digits
(138****8000), and "does 38000 match? 138000?" would reveal them one by one. So a query of
digits (spaces and hyphens ignored) matches a phone only when it is the whole number or its
last four; every such query is a phone search, limited and audit-logged by
app/auth/phone_search.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_

from app.auth.phone_search import masked_digits
from app.models import Case

_SEPARATORS = re.compile(r"[\s\-]")


@dataclass(frozen=True)
class Query:
    text: str  # as typed (trimmed)
    digits: str | None  # the digits of a phone search, else None

    @property
    def is_phone(self) -> bool:
        return self.digits is not None

    @property
    def masked(self) -> str:
        """The query as the audit log keeps it: its length and last four digits, no more than
        the case list shows of a phone."""
        if self.digits is None:
            return self.text
        return masked_digits(self.digits)


def parse(text: str) -> Query:
    """A query of four or more digits (spaces and hyphens aside) is a phone search."""
    text = text.strip()
    digits = _SEPARATORS.sub("", text)
    if digits.isdigit() and digits.isascii() and len(digits) >= 4:
        return Query(text, digits)
    return Query(text, None)


def conditions(query: Query) -> ColumnElement[bool]:
    """The WHERE clause of a search."""
    if query.is_phone:
        if len(query.digits) == 4:
            phone = or_(Case.phone.endswith(query.digits), Case.phone2.endswith(query.digits))
        else:  # the whole number or nothing: a partial number matches no phone
            phone = or_(Case.phone == query.digits, Case.phone2 == query.digits)
        # unit names may hold digits (第1团队); a name match reveals no phone
        return or_(phone, Case.institution_name.contains(query.text, autoescape=True),
                   Case.team_name.contains(query.text, autoescape=True))
    return or_(Case.name.contains(query.text, autoescape=True),
               Case.institution_name.contains(query.text, autoescape=True),
               Case.team_name.contains(query.text, autoescape=True))
