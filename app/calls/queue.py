"""The callers' queue: which case comes next, claiming it under a lease, releasing it, the
counts on the caller's home page, and supervisors assigning cases to callers.

A claim is a conditional UPDATE of a row chosen with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL
(each concurrent claimer gets a different row) and under SQLite's single write lock (``BEGIN
IMMEDIATE``). Functions take the session, the acting user and ``now`` (tests pin the clock),
flush, and leave the commit to the boundary (``transaction(session, write=True)``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Integer, and_, bindparam, case as sql_case, false, func, literal, or_, select, type_coerce, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import Grouping
from sqlalchemy.orm import Session

from app.core.locks import begin_write
from app.calls.rules import CallSettings
from app.core.clock import day_start, half_day_start, local, utc_naive
from app.models import audit, Case, Round, RoundInstitution, User
from app.calls.guards import is_postgresql, locked_case, open_round, CallError


def _free(now: datetime):
    return or_(Case.leased_by_id.is_(None), Case.lease_expires_at < now)


def _tiers(user: User, now: datetime, settings: CallSettings, *, in_hours: bool):
    """The queue's tiers as (number, condition): 1 callbacks due, 2 never tried, 3 retries."""
    now = utc_naive(now)
    due = and_(Case.callback_at.is_not(None), Case.callback_at <= now)
    if not in_hours:  # outside calling hours only a callback this caller set
        return [(1, and_(due, Case.callback_by_id == user.id))]
    untried = and_(Case.attempt_count == 0, Case.callback_at.is_(None))
    # the last allowed attempt waits for another day than the first one (attempts spread
    # over at least two days); a gap since the previous attempt
    last_try_today = and_(
        Case.attempt_count >= settings.max_attempts - 1, Case.first_attempt_at >= day_start(now)
    )
    retry = and_(
        Case.attempt_count > 0,
        Case.attempt_count < settings.max_attempts,
        Case.last_outcome.is_not(None),
        Case.callback_at.is_(None),
        Case.last_attempt_at <= now - settings.min_gap,
        ~last_try_today,
    )
    return [(1, due), (2, untried), (3, retry)]


def _base(round_id: int, user: User, now: datetime):
    return and_(
        Case.round_id == round_id,
        Case.status == "queued",
        _free(utc_naive(now)),
        or_(Case.assigned_to_id.is_(None), Case.assigned_to_id == user.id),
        ~Case.in_state("on_call"),
    )


def institution_deficits(session: Session, round_id: int) -> dict[int, int]:
    """Target (primaries drawn) minus completed interviews, per institution of the round."""
    done = dict(
        session.execute(
            select(Case.institution_id, func.count())
            .where(Case.round_id == round_id, Case.outcome == "complete")
            .group_by(Case.institution_id)
        ).all()
    )
    return {
        inst: target - done.get(inst, 0)
        for inst, target in session.execute(
            select(RoundInstitution.institution_id, RoundInstitution.primaries).where(
                RoundInstitution.round_id == round_id
            )
        )
    }


def _deficit(session: Session, deficits: dict[int, int]):
    """A case's institution deficit as an SQL expression. On PostgreSQL two array parameters
    and ``array_position``: the statement is the same whatever the county's size, so it is
    compiled once and cached, where a CASE of one branch per institution (still used on
    SQLite, which has no arrays) is rebuilt and re-keyed on every claim (about 10 ms for a
    county of 120 institutions)."""
    if not deficits:
        return literal(0)
    if not is_postgresql(session):
        return sql_case(deficits, value=Case.institution_id, else_=0)
    institutions = bindparam("deficit_institutions", list(deficits), type_=ARRAY(Integer))
    values = bindparam("deficit_values", list(deficits.values()), type_=ARRAY(Integer))
    subscripted = type_coerce(Grouping(values), ARRAY(Integer))  # (array)[i]: PostgreSQL wants the brackets
    return func.coalesce(subscripted[func.array_position(institutions, Case.institution_id)], 0)


def _candidates(session: Session, round_id: int, user: User, now: datetime, settings: CallSettings):
    tiers = _tiers(user, now, settings, in_hours=settings.in_hours(now))
    tier = sql_case(*[(cond, number) for number, cond in tiers], else_=None)
    deficit = _deficit(session, institution_deficits(session, round_id))
    different_half_day = sql_case((Case.last_attempt_at < half_day_start(now), 0), else_=1)
    mine_first = sql_case((or_(Case.assigned_to_id == user.id, Case.callback_by_id == user.id), 0), else_=1)
    return (
        select(Case.id)
        .where(_base(round_id, user, now), or_(*[cond for _, cond in tiers]))
        .order_by(tier, mine_first, Case.callback_at, deficit.desc(), different_half_day, Case.position, Case.id)
    )


def held_case(session: Session, round_id: int, user: User, now: datetime) -> Case | None:
    """The case this caller holds (lease still running) or whose interview they left open."""
    return session.scalar(
        select(Case)
        .where(
            Case.round_id == round_id,
            Case.status == "queued",
            Case.leased_by_id == user.id,
            or_(Case.lease_expires_at >= utc_naive(now), Case.in_state("on_call")),
        )
        .order_by(Case.lease_expires_at.desc())
        .limit(1)
    )


def claim_next(session: Session, round_id: int, user: User, now: datetime, settings: CallSettings) -> Case | None:
    """Give the caller their next case, or the one they already hold. None when nothing can
    be called now."""
    begin_write(session)
    open_round(session, round_id)
    mine = held_case(session, round_id, user, now)
    if mine is not None:
        _lease(session, mine.id, user, now, settings)
        session.flush()
        return mine
    stmt = _candidates(session, round_id, user, now, settings).limit(1)
    if is_postgresql(session):
        stmt = stmt.with_for_update(of=Case, skip_locked=True)
    for _ in range(5):  # the conditional UPDATE decides; a lost race tries the next row
        case_id = session.scalar(stmt)
        if case_id is None:
            session.flush()
            return None
        if _take(session, case_id, round_id, user, now, settings):
            session.flush()
            return session.get(Case, case_id, populate_existing=True)  # as the UPDATE left it
    session.flush()
    return None


def _take(session, case_id: int, round_id: int, user: User, now: datetime, settings: CallSettings, *,
          callable_only: bool = False) -> bool:
    conditions = [Case.id == case_id, _base(round_id, user, now)]
    if callable_only:  # a case picked by hand: the queue's tiers decide as for 下一个
        conditions.append(or_(*[cond for _, cond in _tiers(user, now, settings, in_hours=settings.in_hours(now))]))
    now = utc_naive(now)
    result = session.execute(
        update(Case)
        .where(*conditions)
        .values(leased_by_id=user.id, lease_expires_at=now + settings.lease)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _lease(session, case_id: int, user: User, now: datetime, settings: CallSettings) -> bool:
    """Renew the lease of a case the user holds."""
    result = session.execute(
        update(Case)
        .where(Case.id == case_id, Case.leased_by_id == user.id, Case.status == "queued")
        .values(lease_expires_at=utc_naive(now) + settings.lease)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def renew(session: Session, case_id: int, user: User, now: datetime, settings: CallSettings) -> bool:
    begin_write(session)
    session.flush()
    return _lease(session, case_id, user, now, settings)


def claim_case(session: Session, case_id: int, user: User, now: datetime, settings: CallSettings) -> Case:
    """A case the caller opened from the list, a callback link, Back or a stale tab. The
    queue's own conditions decide (the same SQL as 下一个: calling hours, the gap since the
    last attempt, the two-day spread, the attempt limit, a callback's time, assignment and
    lease), so no path reaches a case 下一个 would not hand out; a refusal says why and when
    the case may be called again."""
    begin_write(session)
    case = locked_case(session, case_id)
    open_round(session, case.round_id)
    if case.status == "queued" and case.leased_by_id == user.id and (
        case.lease_expires_at is None or case.lease_expires_at >= utc_naive(now) or case.state == "on_call"
    ):
        _lease(session, case.id, user, now, settings)
        session.flush()
        return case
    if not _take(session, case.id, case.round_id, user, now, settings, callable_only=True):
        session.expire(case)
        raise CallError(why_not_callable(locked_case(session, case_id), user, now, settings)
                        or "该样本现在不能领取，请稍后再试。")
    release_others(session, case, user)  # one case at a time, as 下一个 hands them out
    session.flush()
    return session.get(Case, case_id)


def release_others(session: Session, case: Case, user: User) -> None:
    """Put back every other case of the round the user holds without a call in progress."""
    session.execute(
        update(Case)
        .where(Case.round_id == case.round_id, Case.leased_by_id == user.id, Case.id != case.id,
               Case.status == "queued", ~Case.in_state("on_call"))
        .values(leased_by_id=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


def may_claim(session: Session, case: Case, user: User, now: datetime, settings: CallSettings) -> bool:
    """Whether 领取并拨打 would succeed now (the claim's own condition, read only)."""
    tiers = _tiers(user, now, settings, in_hours=settings.in_hours(now))
    return session.scalar(
        select(Case.id).where(Case.id == case.id, _base(case.round_id, user, now), or_(*[c for _, c in tiers]))
    ) is not None


def why_not_callable(case: Case, user: User, now: datetime, settings: CallSettings) -> str | None:
    """Why the queue's conditions refuse this case to this caller now, and when it may be
    called again (Chinese, for the caller). Explains the SQL of ``_tiers``/``_base``; it does
    not decide anything."""
    stamp = utc_naive(now)
    if case.status == "reserve":
        return "该样本是备用样本，尚未启用，不能拨打。"
    if case.status != "queued":
        return "该样本已结束拨打，不能再领取。"
    if case.attempt_count > 0 and case.last_outcome is None:
        return "该样本正在由其他调查员访问中。"
    if case.leased_by_id not in (None, user.id) and case.lease_expires_at is not None and case.lease_expires_at >= stamp:
        return f"该样本正在由其他调查员拨打（领取至 {when_label(case.lease_expires_at, now)}）。"
    if case.assigned_to_id not in (None, user.id):
        return "该样本已由督导分配给其他调查员。"
    if case.attempt_count >= settings.attempt_cap or (
        case.attempt_count >= settings.max_attempts and case.callback_at is None
    ):
        return "该样本的拨打次数已用完。"
    due = case.callback_at is not None and case.callback_at <= stamp
    if not settings.in_hours(now) and not (due and case.callback_by_id == user.id):
        return (f"现在不在拨打时段内（{settings.hours_label()}），只能拨打您本人约定的到期回访；"
                f"{when_label(settings.next_open(now), now)}起可拨。")
    if case.callback_at is not None and not due:
        return f"该样本约定 {when_label(case.callback_at, now)} 回访，届时再拨。"
    if case.last_attempt_at is not None and case.callback_at is None:
        again = case.last_attempt_at + settings.min_gap
        if again > stamp:
            minutes = int(settings.min_gap.total_seconds() // 60)
            return (f"距上次拨打（{when_label(case.last_attempt_at, now)}）不足 {minutes} 分钟，"
                    f"{when_label(settings.next_open(again), now)}后可再拨。")
        if (case.attempt_count >= settings.max_attempts - 1 and case.first_attempt_at is not None
                and case.first_attempt_at >= day_start(now)):
            tomorrow = local(now).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
            return f"最后一次拨打须与第一次不在同一天，{when_label(settings.next_open(tomorrow), now)}起可再拨。"
    return None


def when_label(moment: datetime, now: datetime) -> str:
    """A time for the caller: "14:30" today, else "11月25日 08:30"."""
    here = local(moment)
    return here.strftime("%H:%M") if here.date() == local(now).date() else f"{here.month}月{here.day}日 {here:%H:%M}"


def release(session: Session, case_id: int, user: User) -> bool:
    """Put a held case back in the queue without recording anything."""
    begin_write(session)
    result = session.execute(
        update(Case)
        .where(Case.id == case_id, Case.leased_by_id == user.id, Case.status == "queued", ~Case.in_state("on_call"))
        .values(leased_by_id=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return result.rowcount == 1


@dataclass
class QueueCounts:
    callable_now: int  # could be handed out now
    callbacks_due: int
    untried: int
    waiting: int  # queued but not callable yet (gap, callback later, next day, held by others)
    on_call: int  # an attempt open, or held under a lease
    done: int
    completes: int
    active: int  # queued + done + closed (primaries and activated backups)


def queue_counts(session: Session, round_id: int, user: User, now: datetime, settings: CallSettings) -> QueueCounts:
    now_u = utc_naive(now)
    tiers = _tiers(user, now, settings, in_hours=settings.in_hours(now))
    conds = {number: cond for number, cond in tiers}
    base = _base(round_id, user, now)
    row = session.execute(
        select(
            func.count().filter(base, or_(*conds.values())),
            func.count().filter(base, conds[1]),
            func.count().filter(base, conds.get(2, false())),
            func.count().filter(Case.status == "queued"),
            func.count().filter(Case.status == "queued", or_(Case.in_state("on_call"), Case.lease_expires_at >= now_u)),
            func.count().filter(Case.status.in_(("done", "closed"))),
            func.count().filter(Case.outcome == "complete"),
            func.count().filter(Case.status != "reserve"),
        ).where(Case.round_id == round_id)
    ).one()
    callable_now, due, untried, queued, busy, done, completes, active = row
    return QueueCounts(callable_now, due, untried, max(queued - callable_now - busy, 0), busy, done, completes, active)


def assign(session: Session, case_ids: list[int], caller: User | None, supervisor: User, round_: Round) -> int:
    """Assign (or, with ``caller`` None, unassign) queued cases of the round. A case someone
    is calling right now keeps its caller until the call ends."""
    if caller is not None and (caller.role != "caller" or caller.county_id != round_.county_id or not caller.is_enabled):
        raise CallError("只能分配给本县区启用状态的调查员。")
    result = session.execute(
        update(Case)
        .where(Case.id.in_(case_ids), Case.round_id == round_.id, Case.status == "queued")
        .values(assigned_to_id=caller.id if caller else None)
        .execution_options(synchronize_session=False)
    )
    audit(session, "assign_cases", supervisor, target=f"round:{round_.id}", county_id=round_.county_id,
          detail={"cases": case_ids, "caller": caller.username if caller else None})
    session.flush()
    return result.rowcount
