"""The caller's work: the queue, claiming a case under a lease, recording attempts and the
questionnaire, replacing ended cases by backups.

Every function takes the session, the acting user and ``now`` (tests pin the clock) and leaves
committing to the boundary. A function that reads and then writes a case begins the write
transaction (``begin_write``: SQLite's write lock from the start) unless the boundary already
has (``transaction(session, write=True)``).

Who holds a case is decided by the database, never by a check in Python alone: a claim is a
conditional UPDATE of a row chosen with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (each
concurrent claimer gets a different row) and under SQLite's single write lock (``BEGIN
IMMEDIATE``) on SQLite. A write to a case checks, in the same statement or under the row lock,
that the writer still holds it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case as sql_case, false, func, or_, select, update
from sqlalchemy.orm import Session

from app.calls import outcomes as oc
from app.core.locks import begin_write
from app.calls.rules import CallSettings
from app.core.clock import current_month, day_start, half_day_start, utc_naive, utcnow
from app.models import audit, AnswerEdit, Attempt, Case, Problem, Response, Round, RoundInstitution, User
from app.questionnaires import Context, Questionnaire


class CallError(ValueError):
    """A request the rules refuse; the message is for the caller (Chinese)."""


# ---------------------------------------------------------------------------
# Transactions and locks
# ---------------------------------------------------------------------------


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _open_round(session: Session, round_id: int) -> Round:
    """The round, locked FOR SHARE on PostgreSQL so a redraw (FOR UPDATE) or the month's
    close cannot run between this check and the write that follows."""
    stmt = select(Round).where(Round.id == round_id)
    if _is_pg(session):
        stmt = stmt.with_for_update(read=True)
    round_ = session.scalar(stmt)
    if round_ is None:
        raise CallError("找不到该调查轮次。")
    if round_.status != "open":
        raise CallError("本月调查已结束（月末已关闭），不能再记录拨打结果。")
    return round_


def _locked_case(session: Session, case_id: int) -> Case:
    stmt = select(Case).where(Case.id == case_id).execution_options(populate_existing=True)
    if _is_pg(session):
        stmt = stmt.with_for_update()
    case = session.scalar(stmt)
    if case is None:
        raise CallError("找不到该样本。")
    return case


def _held(case: Case, user: User) -> None:
    if case.status != "queued":
        raise CallError("该样本已结束拨打，不能再记录。")
    if case.leased_by_id != user.id:
        raise CallError("该样本已被其他调查员领取（或您的领取已超时被他人接手），请返回队列领取下一个。")


# ---------------------------------------------------------------------------
# Rounds and the queue
# ---------------------------------------------------------------------------


def current_round(session: Session, county_id: int, now: datetime) -> Round | None:
    """The county's round of the current month (Asia/Shanghai)."""
    month = current_month(now)
    return session.scalar(select(Round).where(Round.county_id == county_id, Round.month == month))


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


def _candidates(session: Session, round_id: int, user: User, now: datetime, settings: CallSettings):
    tiers = _tiers(user, now, settings, in_hours=settings.in_hours(now))
    tier = sql_case(*[(cond, number) for number, cond in tiers], else_=None)
    deficits = institution_deficits(session, round_id)
    deficit = sql_case(deficits, value=Case.institution_id, else_=0) if deficits else 0
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
    _open_round(session, round_id)
    mine = held_case(session, round_id, user, now)
    if mine is not None:
        _lease(session, mine.id, user, now, settings)
        session.flush()
        return mine
    stmt = _candidates(session, round_id, user, now, settings).limit(1)
    if _is_pg(session):
        stmt = stmt.with_for_update(of=Case, skip_locked=True)
    for _ in range(5):  # the conditional UPDATE decides; a lost race tries the next row
        case_id = session.scalar(stmt)
        if case_id is None:
            session.flush()
            return None
        if _take(session, case_id, round_id, user, now, settings):
            session.flush()
            return session.get(Case, case_id)
    session.flush()
    return None


def _take(session, case_id: int, round_id: int, user: User, now: datetime, settings: CallSettings) -> bool:
    now = utc_naive(now)
    result = session.execute(
        update(Case)
        .where(Case.id == case_id, _base(round_id, user, now))
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
    """A case the caller picked from the list. The queue's rules that protect residents still apply: calling hours (except a due
    callback this caller set), the attempt limit and the two-day spread."""
    begin_write(session)
    case = _locked_case(session, case_id)
    _open_round(session, case.round_id)
    if case.status != "queued":
        raise CallError("该样本已结束拨打或尚未启用（备用样本），不能领取。")
    if case.leased_by_id == user.id:
        _lease(session, case.id, user, now, settings)
        session.flush()
        return case
    if case.assigned_to_id not in (None, user.id):
        raise CallError("该样本已由督导分配给其他调查员。")
    if case.attempt_count > 0 and case.last_outcome is None:
        raise CallError("该样本正在由其他调查员访问中。")
    callback_due = case.callback_at is not None and case.callback_at <= utc_naive(now)
    if not settings.in_hours(now) and not (callback_due and case.callback_by_id == user.id):
        raise CallError(f"现在不在拨打时段内（{settings.hours_label()}），只能拨打您本人约定的到期回访。")
    if case.attempt_count >= settings.attempt_cap or (
        case.attempt_count >= settings.max_attempts and case.callback_at is None
    ):
        raise CallError("该样本的拨打次数已用完。")
    if (
        case.attempt_count >= settings.max_attempts - 1
        and case.first_attempt_at is not None
        and case.first_attempt_at >= day_start(now)
        and not callback_due
    ):
        raise CallError("最后一次拨打须与前几次不在同一天，请明天再拨。")
    if not _take(session, case.id, case.round_id, user, now, settings):
        raise CallError("该样本已被其他调查员领取。")
    session.flush()
    return session.get(Case, case_id)


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


# ---------------------------------------------------------------------------
# Attempts
# ---------------------------------------------------------------------------


def validate_callback(value: datetime | None, now: datetime, settings: CallSettings, month: str) -> datetime:
    if value is None:
        raise CallError("约定回访必须填写回访日期和时间。")
    if utc_naive(value) <= utc_naive(now):
        raise CallError("约定回访时间必须晚于现在。")
    if not settings.in_hours(value):
        raise CallError(f"约定回访时间必须在拨打时段内（{settings.hours_label()}）。")
    if current_month(value) != month:
        raise CallError("约定回访时间必须在本月调查期内。")
    return utc_naive(value)


def _check_number(case: Case, expected: int | None) -> None:
    """``expected`` is the attempt number the form was showing: a stale or repeated form
    must not record a second attempt."""
    if expected is not None and expected != case.attempt_count + 1:
        raise CallError("该样本的拨打记录已更新（可能是重复提交），请查看最新记录。")


def record_attempt(
    session: Session,
    case_id: int,
    user: User,
    *,
    outcome: str,
    now: datetime,
    settings: CallSettings,
    note: str | None = None,
    callback_at: datetime | None = None,
    expected_number: int | None = None,
    questionnaire: Questionnaire | None = None,
) -> Attempt:
    """Record the outcome the caller chose. When the questionnaire was started in this call
    (an open attempt), the outcome ends that attempt instead of adding one."""
    try:
        rule = oc.outcome(outcome)
    except ValueError as exc:
        raise CallError(str(exc)) from None
    if rule.by_questionnaire:
        raise CallError(f"“{rule.label}”由问卷记录，不能直接选择。")
    note = (note or "").strip() or None
    if rule.note_required and not note:
        raise CallError(f"选择“{rule.label}”时必须填写说明。")
    if note and len(note) > 500:
        raise CallError("说明不能超过500字。")
    begin_write(session)
    case = _locked_case(session, case_id)
    round_ = _open_round(session, case.round_id)
    _held(case, user)
    when = None
    if rule.callback:
        when = validate_callback(callback_at, now, settings, round_.month)
    open_attempt = _open_attempt(session, case)
    if open_attempt is None:
        _check_number(case, expected_number)
        if case.attempt_count >= settings.attempt_cap:
            raise CallError("该样本的拨打次数已用完。")
        attempt = _new_attempt(session, case, user, now, connected=rule.connected)
    else:
        attempt = open_attempt
        if not rule.connected:
            raise CallError("本次通话已接通并开始问卷，请选择接通后的结果，或点“中途挂断”。")
        if expected_number is not None and expected_number != attempt.number:
            raise CallError("该样本的拨打记录已更新（可能是重复提交），请查看最新记录。")
        response = session.scalar(select(Response).where(Response.attempt_id == attempt.id))
        if response is not None and response.status == "in_progress":
            response.status = "ended"
            response.updated_at = utc_naive(now)
    attempt.outcome, attempt.note, attempt.callback_at = outcome, note, when
    attempt.connected = attempt.connected or rule.connected
    attempt.ended_at = utc_naive(now)
    _apply(session, case, attempt, user, now, settings)
    session.flush()
    return attempt


def _open_attempt(session: Session, case: Case) -> Attempt | None:
    if case.attempt_count == 0 or case.last_outcome is not None:
        return None
    return session.scalar(select(Attempt).where(Attempt.case_id == case.id, Attempt.number == case.attempt_count))


def _new_attempt(session: Session, case: Case, user: User, now: datetime, *, connected: bool) -> Attempt:
    stamp = utc_naive(now)
    attempt = Attempt(case_id=case.id, round_id=case.round_id, number=case.attempt_count + 1,
                      caller_id=user.id, started_at=stamp, connected=connected)
    session.add(attempt)
    case.attempt_count += 1
    case.last_attempt_at = stamp
    case.first_attempt_at = case.first_attempt_at or stamp
    case.last_outcome = None
    case.callback_at = None
    case.callback_by_id = None
    session.flush()  # the unique (case, number) refuses a second attempt of the same number
    return attempt


def _apply(session: Session, case: Case, attempt: Attempt, user: User, now: datetime, settings: CallSettings) -> None:
    """The case after an attempt ended: its disposition, callback, lease, and, when it ends
    without an interview in a way that allows it, the backup that replaces it."""
    rule = oc.outcome(attempt.outcome)
    case.last_outcome = attempt.outcome
    case.outcome = oc.merge(case.outcome, attempt.outcome)
    case.leased_by_id = None
    case.lease_expires_at = None
    if rule.callback:
        case.callback_at, case.callback_by_id = attempt.callback_at, user.id
    reason = None
    if rule.final:
        case.status = "done"
        if rule.replace:
            reason = rule.label
    else:
        exhausted = case.attempt_count >= settings.attempt_cap or (
            case.attempt_count >= settings.max_attempts and not rule.callback
        )
        if exhausted:
            case.status = "done"
            reason = f"{case.attempt_count}次拨打未能完成（{oc.label(case.outcome)}）"
    if reason:
        activate_backup(session, case, reason, user.id, now)


def activate_backup(session: Session, case: Case, reason: str, user_id: int | None, now: datetime) -> Case | None:
    """Put the next backup of the same team, else of the same institution, in the queue in
    place of ``case``; record who replaced whom and why. None when no backup is left."""
    team_first = sql_case((Case.team_id == case.team_id, 0), else_=1)
    stmt = (
        select(Case.id)
        .where(Case.round_id == case.round_id, Case.institution_id == case.institution_id,
               Case.kind == "backup", Case.status == "reserve")
        .order_by(team_first, Case.position)
    )
    if _is_pg(session):
        stmt = stmt.with_for_update(skip_locked=True)
    for backup_id in session.scalars(stmt).all():
        result = session.execute(
            update(Case)
            .where(Case.id == backup_id, Case.status == "reserve")
            .values(status="queued", activated_at=utc_naive(now), replaces_case_id=case.id,
                    replacement_reason=reason[:100], activated_by_id=user_id)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            case.replacement_state = "replaced"
            return session.get(Case, backup_id)
    case.replacement_state = "none_left"
    return None


# ---------------------------------------------------------------------------
# The questionnaire
# ---------------------------------------------------------------------------


def context_for(case: Case, vocabulary) -> Context:
    codes = []
    by_name = {name: code for code, name in vocabulary.names.items()}
    for name in (case.population_labels or "").split("、"):
        if name in by_name:
            codes.append(by_name[name])
    return Context(age=case.age, population_codes=tuple(codes), annual_standards=dict(vocabulary.annual_services))


def start_interview(
    session: Session,
    case_id: int,
    user: User,
    *,
    now: datetime,
    settings: CallSettings,
    expected_number: int | None = None,
) -> Response:
    """The resident answered and the caller starts the questionnaire: an attempt in progress
    and its response. Repeating the request returns the same response."""
    begin_write(session)
    case = _locked_case(session, case_id)
    round_ = _open_round(session, case.round_id)
    _held(case, user)
    attempt = _open_attempt(session, case)
    if attempt is None:
        _check_number(case, expected_number)
        if case.attempt_count >= settings.attempt_cap:
            raise CallError("该样本的拨打次数已用完。")
        attempt = _new_attempt(session, case, user, now, connected=True)
    response = session.scalar(select(Response).where(Response.attempt_id == attempt.id))
    if response is None:
        response = Response(attempt_id=attempt.id, case_id=case.id, round_id=case.round_id, caller_id=user.id,
                            questionnaire_version=round_.questionnaire_version, status="in_progress",
                            answers="{}", started_at=utc_naive(now), updated_at=utc_naive(now))
        session.add(response)
    case.lease_expires_at = utc_naive(now) + settings.lease
    session.flush()
    return response


def answers_of(response: Response) -> dict:
    return json.loads(response.answers or "{}")


def _response_for_write(session: Session, response_id: int, user: User) -> tuple[Response, Case, Attempt]:
    response = session.get(Response, response_id, populate_existing=True)
    if response is None:
        raise CallError("找不到该问卷。")
    case = _locked_case(session, response.case_id)
    _open_round(session, case.round_id)
    attempt = session.get(Attempt, response.attempt_id)
    if response.status != "in_progress" or attempt.outcome is not None:
        raise CallError("该问卷已结束，不能再修改。")
    _held(case, user)
    return response, case, attempt


def save_answer(
    session: Session,
    response_id: int,
    user: User,
    cleaned: dict,
    *,
    questionnaire: Questionnaire,
    now: datetime,
    settings: CallSettings,
) -> Response:
    """Store one item's answer as soon as it is given and renew the lease. An identity check
    that fails ends the call as 本人不在 (the resident may be reached later)."""
    begin_write(session)
    response, case, attempt = _response_for_write(session, response_id, user)
    # only answers on the path the answers lead along: a changed branch drops the other's
    answers = questionnaire.prune({**answers_of(response), **cleaned})
    response.answers = json.dumps(answers, ensure_ascii=False)
    response.current_item = questionnaire.current(answers)
    response.updated_at = utc_naive(now)
    case.lease_expires_at = utc_naive(now) + settings.lease
    if questionnaire.ended_politely(answers):
        response.status = "ended"
        attempt.outcome, attempt.ended_at = "not_available", utc_naive(now)
        attempt.note = attempt.note or "身份核实未通过（非本人且不能代答）"
        _apply(session, case, attempt, user, now, settings)
    session.flush()
    return response


def _derive_into(response: Response, questionnaire: Questionnaire, context: Context, answers: dict) -> None:
    derived = questionnaire.derive(answers, context)
    response.proxy = derived.proxy
    response.aware = derived.aware
    response.knows_doctor = derived.knows_doctor
    response.services = ",".join(derived.services) if derived.services is not None else None
    response.service_count = derived.service_count
    response.effect = derived.effect
    response.satisfaction = derived.satisfaction
    response.renew = derived.renew
    response.wants_contact = derived.wants_contact
    response.flags = ",".join(derived.flags) or None
    response.expected_services = questionnaire.expected_services(context)
    renew_item = questionnaire.role_item("renew")
    response.renew_answered = renew_item is not None and answers.get(renew_item.code) is not None


def sync_problem(session: Session, response: Response) -> Problem | None:
    """Keep the rectification list in step with a finished response's flags: a flagged
    response has its problem row; an open one whose flags were all corrected away goes; a
    closed one that a correction gives a flag it did not have opens again (its earlier
    rectification note stays, for the record)."""
    problem = session.scalar(select(Problem).where(Problem.response_id == response.id))
    flagged = response.flags and response.status in ("complete", "partial")
    if not flagged:
        if problem is not None and problem.status == "open":
            session.delete(problem)
            return None
        if problem is not None:
            problem.flags = ""
        return problem
    if problem is None:
        case = session.get(Case, response.case_id)
        round_ = session.get(Round, response.round_id)
        problem = Problem(response_id=response.id, round_id=response.round_id, county_id=round_.county_id,
                          institution_id=case.institution_id, team_id=case.team_id, month=round_.month,
                          flags=response.flags, status="open", created_at=response.completed_at or utcnow())
        session.add(problem)
    else:
        raised = set(response.flags.split(",")) - set((problem.flags or "").split(","))
        if problem.status == "closed" and raised:
            problem.status = "open"
            problem.closed_at = None
            problem.closed_by_id = None
        problem.flags = response.flags
    return problem


def finish_interview(
    session: Session,
    response_id: int,
    user: User,
    *,
    questionnaire: Questionnaire,
    context: Context,
    now: datetime,
    settings: CallSettings,
    breakoff: bool = False,
) -> Response:
    """End the interview: complete when every item on the path is answered, or, when the
    call dropped (``breakoff``), partial if the satisfaction item was answered and break-off
    otherwise. Repeating it changes nothing."""
    begin_write(session)
    response = session.get(Response, response_id, populate_existing=True)
    if response is None:
        raise CallError("找不到该问卷。")
    if response.status in ("complete", "partial", "breakoff"):
        session.flush()
        return response  # a repeated submit: already recorded
    response, case, attempt = _response_for_write(session, response_id, user)
    answers = answers_of(response)
    if breakoff:
        status = questionnaire.breakoff_status(answers)
    else:
        if not questionnaire.is_complete(answers):
            raise CallError("还有未回答的题目，不能提交。")
        status = "complete"
    _finish(session, response, case, attempt, status, questionnaire, context, user, now, settings)
    session.flush()
    return response


def _finish(session, response, case, attempt, status, questionnaire, context, user, now, settings) -> None:
    stamp = utc_naive(now)
    response.status = status
    response.completed_at = stamp
    response.updated_at = stamp
    response.current_item = None
    _derive_into(response, questionnaire, context, answers_of(response))
    attempt.outcome = status
    attempt.ended_at = stamp
    _apply(session, case, attempt, user, now, settings)
    session.flush()
    sync_problem(session, response)


def finalize_open_interviews(session: Session, round_id: int, now: datetime, questionnaires, vocabulary) -> int:
    """At the month's close: interviews left open end as partial or break-off with what was
    asked. Runs inside the caller's transaction (the close)."""
    count = 0
    for response in session.scalars(
        select(Response).where(Response.round_id == round_id, Response.status == "in_progress")
    ).all():
        case = session.get(Case, response.case_id)
        attempt = session.get(Attempt, response.attempt_id)
        questionnaire = questionnaires[response.questionnaire_version]
        status = questionnaire.breakoff_status(answers_of(response))
        system = session.get(User, attempt.caller_id)
        _finish(session, response, case, attempt, status, questionnaire, context_for(case, vocabulary), system,
                now, CallSettings(hours=()))
        count += 1
    return count


def edit_answer(
    session: Session,
    response_id: int,
    user: User,
    cleaned: dict,
    *,
    item: str,
    reason: str,
    questionnaire: Questionnaire,
    context: Context,
    now: datetime,
) -> AnswerEdit:
    """A supervisor corrects a completed response: the old and new value, the reason, who
    and when are kept, the indicators and flags are derived again. Items that decide the
    questionnaire's path cannot be edited (the answers after them would not fit)."""
    reason = (reason or "").strip()
    if not reason:
        raise CallError("修改答案必须填写原因。")
    response = session.get(Response, response_id)
    if response is None or response.status not in ("complete", "partial"):
        raise CallError("只能修改已完成或部分完成的问卷。")
    answers = answers_of(response)
    if item not in questionnaire.path(answers) or item not in answers:
        raise CallError("该题不在此问卷的作答路径上，不能修改。")
    changed = {**answers, **cleaned}
    if questionnaire.path(changed) != questionnaire.path(answers):
        raise CallError("该题的答案决定问卷的跳转，修改后后续题目不再适用；请如实说明情况后重新安排访问。")
    old = {k: v for k, v in answers.items() if k.split(".", 1)[0] == item}
    new = {k: v for k, v in changed.items() if k.split(".", 1)[0] == item}
    if old == new:
        raise CallError("新答案与原答案相同。")
    edit = AnswerEdit(response_id=response.id, item=item, old_value=json.dumps(old, ensure_ascii=False),
                      new_value=json.dumps(new, ensure_ascii=False), reason=reason[:500], user_id=user.id,
                      at=utc_naive(now))
    session.add(edit)
    response.answers = json.dumps(changed, ensure_ascii=False)
    response.updated_at = utc_naive(now)
    _derive_into(response, questionnaire, context, changed)
    sync_problem(session, response)
    audit(session, "answer_edit", user, target=f"response:{response.id}",
          detail={"item": item, "old": old, "new": new, "reason": reason})
    session.flush()
    return edit


# ---------------------------------------------------------------------------
# Supervisors
# ---------------------------------------------------------------------------


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
    audit(session, "assign_cases", supervisor, target=f"round:{round_.id}",
          detail={"cases": case_ids, "caller": caller.username if caller else None})
    session.flush()
    return result.rowcount
