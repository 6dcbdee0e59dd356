"""Helpers for call tests: a drawn round for one county, callers, a pinned clock."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from flask import current_app

from app.calls.rules import CallSettings, parse_hours
from app.core.transactions import transaction
from app.draws.services import draw_month_and_commit
from app.extensions import db
from app.models import Case, Round, User
from tests.draws_support import MONTH, NOW, SETTINGS, TZ, add_residents
from tests.helpers import PASSWORD, csrf_token

CALLS = CallSettings(hours=parse_hours("08:30-12:00,14:30-20:30"))


def committed(service, *args, **kwargs):
    """Call a write service as a view does: in one write transaction, committed when it
    returns and rolled back when it raises."""
    with transaction(db.session, write=True):
        return service(db.session, *args, **kwargs)


def closing_args() -> dict:
    """What the month-end close takes from the application."""
    return {"questionnaires": current_app.extensions["questionnaires"], "vocabulary": current_app.extensions["vocabulary"]}


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of November 2026 in Asia/Shanghai."""
    return datetime(2026, 11, day, hour, minute, tzinfo=TZ)


@dataclass
class Setup:
    round: Round
    county: object
    caller: User
    other: User
    supervisor: User
    teams: list


def drawn_round(county, make_team, make_user, *, per_team=(12, 12), institutions=("新墙镇卫生院",), labels=("hypertension",)):
    teams = []
    for inst in institutions:
        for n, size in enumerate(per_team):
            team = make_team(county, inst, f"{inst}第{n + 1}团队")
            add_residents(team, size, labels)
            teams.append(team)
    draw_month_and_commit(db.session, MONTH, now=NOW, settings=SETTINGS, actor="test", county_ids=[county.id])
    round_ = db.session.scalar(select(Round).where(Round.county_id == county.id, Round.month == MONTH))
    caller = make_user(f"caller{county.id}", "caller", county)
    other = make_user(f"other{county.id}", "caller", county)
    supervisor = make_user(f"super{county.id}", "supervisor", county)
    return Setup(round_, county, caller, other, supervisor, teams)


def case_by(case_id: int) -> Case:
    db.session.expire_all()
    return db.session.get(Case, case_id)


def later(moment: datetime, **delta) -> datetime:
    return moment + timedelta(**delta)


# ---------------------------------------------------------------------------
# the calls pages over HTTP: import the fixtures by name into a test module
# ---------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    """The calls and reports views' clock, pinned to 09:30 on Monday 23 November 2026 and moved
    by the test (``clock["now"] = ...``)."""
    state = {"now": at(23, 9, 30)}
    monkeypatch.setattr("app.calls.routes.clock_now", lambda: state["now"])
    monkeypatch.setattr("app.reports.routes.clock_now", lambda: state["now"])
    return state


@pytest.fixture
def setup(county, make_team, make_user, clock):
    return drawn_round(county, make_team, make_user)


def token(client, url="/calls/") -> str:
    return csrf_token(client.get(url).get_data(as_text=True))


def sign_in(app, username):
    """A fresh browser session signed in as ``username``. Call it inside a fresh
    ``app.app_context()``: requests reuse the test's app context, and Flask-Login caches the
    signed-in user in its ``g``."""
    client = app.test_client()
    reply = client.post("/", data={"username": username, "password": PASSWORD, "csrf_token": token(client, "/")})
    assert reply.status_code == 302
    return client


def post(client, url, data=None, csrf=True):
    """A form POST as the page would send it (with a fresh CSRF token unless ``csrf`` is False)."""
    data = dict(data or {})
    if csrf:
        data["csrf_token"] = token(client)
    return client.post(url, data=data)


__all__ = ["CALLS", "MONTH", "NOW", "PASSWORD", "Setup", "TZ", "at", "case_by", "drawn_round", "later"]
