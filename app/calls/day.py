"""A caller's own day on the home page: their attempts, contacts and completes today and this
month, and the callbacks they set that are due today.

Everything is the signed-in user's own work in their county's current round: attempts they
made (``Attempt.caller_id``) and callbacks they set (``Case.callback_by_id``), both scoped by
the round, so neither another caller's nor another county's data can appear. Days and months
are Asia/Shanghai's (app/core/clock.py); ``now`` is an argument so tests can pin the clock.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from app.calls.outcomes import OUTCOMES
from app.core.clock import day_start, local, month_bounds, utc_naive
from app.core.masking import mask_phone
from app.models import Attempt, Case, Round, User

# contact with the sampled resident, as the outcomes table defines it (not a copy of the list)
CONTACT_CODES = tuple(code for code, rule in OUTCOMES.items() if rule.contact)
COMPLETE = "complete"


@dataclass(frozen=True)
class Figures:
    attempts: int = 0
    contacts: int = 0
    completes: int = 0


@dataclass(frozen=True)
class Callback:
    case_id: int
    name: str
    institution: str
    phone: str  # as stored; shown masked
    at: datetime  # naive UTC
    time: str  # local HH:MM, with the date when it was set for an earlier day
    due: bool


@dataclass(frozen=True)
class CallerDay:
    today: Figures = Figures()
    month: Figures = Figures()
    callbacks: list[Callback] = field(default_factory=list)  # due today (and overdue), by time
    later: int = 0  # callbacks set for after today


def today_bounds(now: datetime) -> tuple[datetime, datetime]:
    """Today's local midnight and tomorrow's, as naive UTC (comparable with stored times)."""
    start = day_start(now)
    return start, day_start(local(now) + timedelta(days=1))


def _figures(session: Session, user: User, round_: Round, now: datetime) -> tuple[Figures, Figures]:
    today_from, today_to = today_bounds(now)
    month_from, month_to = (utc_naive(moment) for moment in month_bounds(round_.month))
    today = and_(Attempt.started_at >= today_from, Attempt.started_at < today_to)
    contact = Attempt.outcome.in_(CONTACT_CODES)
    complete = Attempt.outcome == COMPLETE
    row = session.execute(
        select(
            func.count().filter(today),
            func.count().filter(today, contact),
            func.count().filter(today, complete),
            func.count(),
            func.count().filter(contact),
            func.count().filter(complete),
        ).where(
            Attempt.caller_id == user.id,
            Attempt.round_id == round_.id,
            Attempt.started_at >= month_from,
            Attempt.started_at < month_to,
        )
    ).one()
    return Figures(*row[:3]), Figures(*row[3:])


def _callback_time(at: datetime, now: datetime) -> str:
    here, today = local(at), local(now).date()
    if here.date() == today:
        return here.strftime("%H:%M")
    return f"{here.month}月{here.day}日 {here:%H:%M}"


def caller_day(session: Session, user: User, round_: Round | None, now: datetime) -> CallerDay:
    """The user's figures and callbacks in ``round_`` (their county's current round)."""
    if round_ is None or round_.county_id != user.county_id:
        return CallerDay()
    today, month = _figures(session, user, round_, now)
    _, tomorrow = today_bounds(now)
    now_u = utc_naive(now)
    mine = and_(
        Case.round_id == round_.id,
        Case.status == "queued",
        Case.callback_by_id == user.id,
        Case.callback_at.is_not(None),
    )
    # today's, and any from an earlier day still waiting: the queue offers those first too
    rows = session.execute(
        select(Case.id, Case.name, Case.institution_name, Case.phone, Case.callback_at)
        .where(mine, Case.callback_at < tomorrow)
        .order_by(Case.callback_at, Case.id)
    ).all()
    callbacks = [
        Callback(case_id=id_, name=name, institution=inst, phone=phone, at=at, time=_callback_time(at, now),
                 due=at <= now_u)
        for id_, name, inst, phone, at in rows
    ]
    later = session.scalar(select(func.count()).select_from(Case).where(mine, Case.callback_at >= tomorrow))
    return CallerDay(today=today, month=month, callbacks=callbacks, later=later or 0)


def payload(day: CallerDay, case_url: Callable[[int], str], now: datetime) -> dict:
    """day.json: what the home page's poller needs to update the list and figures in place.
    The phone is masked, as on the page."""
    return {
        "now": local(now).strftime("%H:%M"),
        "today": asdict(day.today),
        "month": asdict(day.month),
        "later": day.later,
        "callbacks": [
            {"case_id": c.case_id, "name": c.name, "time": c.time, "due": c.due, "url": case_url(c.case_id),
             "institution": c.institution, "phone": mask_phone(c.phone)}
            for c in day.callbacks
        ],
    }
