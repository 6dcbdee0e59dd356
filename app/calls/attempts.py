"""Call attempts: recording the outcome the caller chose, callbacks, and a backup replacing a
case that ended without an interview. Flushes; the boundary commits."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import case as sql_case, select, update
from sqlalchemy.orm import Session

from app.calls import outcomes as oc
from app.core.locks import begin_write
from app.calls.rules import CallSettings
from app.core.clock import current_month, utc_naive
from app.models import audit, Attempt, Case, Response, User
from app.questionnaires import Questionnaire
from app.calls.guards import require_holder, is_postgresql, locked_case, open_round, CallError
from app.calls.queue import release_others


def validate_callback(value: datetime | None, now: datetime, settings: CallSettings, month: str) -> datetime:
    if value is None:
        raise CallError("约定回访必须填写回访日期和时间。", "callback")
    if utc_naive(value) <= utc_naive(now):
        raise CallError("约定回访时间必须晚于现在。", "callback")
    if not settings.in_hours(value):
        raise CallError(f"约定回访时间必须在拨打时段内（{settings.hours_label()}）。", "callback")
    if current_month(value) != month:
        raise CallError("约定回访时间必须在本月调查期内。", "callback")
    return utc_naive(value)


def check_number(case: Case, expected: int | None) -> None:
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
        raise CallError(f"选择“{rule.label}”时必须填写说明。", "note")
    if note and len(note) > 500:
        raise CallError("说明不能超过500字。", "note")
    begin_write(session)
    case = locked_case(session, case_id)
    round_ = open_round(session, case.round_id)
    require_holder(case, user, now)
    when = None
    if rule.callback:
        when = validate_callback(callback_at, now, settings, round_.month)
    open_attempt = find_open_attempt(session, case)
    if open_attempt is None:
        check_number(case, expected_number)
        if case.attempt_count >= settings.attempt_cap:
            raise CallError("该样本的拨打次数已用完。")
        attempt = new_attempt(session, case, user, now, connected=rule.connected)
    else:
        # the questionnaire of this call is open: its page records how the call ended (a stale
        # panel must not end it, least of all a resumed one with earlier answers)
        if session.scalar(select(Response.id).where(Response.attempt_id == open_attempt.id)) is not None:
            raise CallError("本次通话已开始问卷，请在问卷页继续，或记录“通话中断，约定续访”“居民明确拒绝继续”。")
        attempt = open_attempt
        if not rule.connected:
            raise CallError("本次通话已接通，请选择接通后的结果。")
        if expected_number is not None and expected_number != attempt.number:
            raise CallError("该样本的拨打记录已更新（可能是重复提交），请查看最新记录。")
    attempt.outcome, attempt.note, attempt.callback_at = outcome, note, when
    attempt.connected = attempt.connected or rule.connected
    attempt.ended_at = utc_naive(now)
    apply_outcome(session, case, attempt, user, now, settings)
    session.flush()
    return attempt


def find_open_attempt(session: Session, case: Case) -> Attempt | None:
    if case.attempt_count == 0 or case.last_outcome is not None:
        return None
    return session.scalar(select(Attempt).where(Attempt.case_id == case.id, Attempt.number == case.attempt_count))


def new_attempt(session: Session, case: Case, user: User, now: datetime, *, connected: bool) -> Attempt:
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


def apply_outcome(session: Session, case: Case, attempt: Attempt, user: User, now: datetime, settings: CallSettings) -> None:
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
    if is_postgresql(session):
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


def undo_attempt(
    session: Session, attempt_id: int, user: User, *, now: datetime, settings: CallSettings, window: timedelta,
    expected: tuple[int, int] | None = None,
) -> Case:
    """Take back the outcome a caller just recorded (a slip of the key), within ``window``:
    the attempt is deleted, the case is as it was before it and held by the caller again, and
    a backup the outcome put in the queue goes back to reserve. Refused once anything has
    built on the record: a later attempt, a backup someone else has taken or dialled, an
    interview. The undo is audit-logged with what was taken back."""
    begin_write(session)
    attempt = session.get(Attempt, attempt_id, populate_existing=True)
    if attempt is None or attempt.caller_id != user.id or attempt.outcome is None or (
        expected is not None and (attempt.case_id, attempt.number) != expected
    ):  # ``expected``: the (case, number) the undo form was made for (an id may be reused)
        raise CallError("找不到可撤销的拨打记录。")
    case = locked_case(session, attempt.case_id)
    open_round(session, case.round_id)
    rule = oc.outcome(attempt.outcome)
    seconds = int(window.total_seconds())
    if attempt.number != case.attempt_count:
        raise CallError("该样本之后已有新的拨打记录，不能撤销。")
    finished = select(Response.id).where(Response.case_id == case.id, Response.status != "interrupted").limit(1)
    if rule.by_questionnaire or session.scalar(finished) is not None:
        raise CallError("有问卷记录的样本不能撤销，如记录有误请联系督导。")
    if attempt.ended_at is None or attempt.ended_at < utc_naive(now) - window:
        raise CallError(f"已超过撤销时限（{seconds} 秒）。如记录有误，请联系督导。")
    if case.leased_by_id not in (None, user.id):
        raise CallError("该样本已被其他调查员领取，不能撤销。")
    stamp = utc_naive(now)
    backup = return_backup(session, case, user, now) if case.replacement_state == "replaced" else None
    if backup is False:
        raise CallError("替换它的备用样本已被领取或拨打，不能撤销。如记录有误，请联系督导。")
    undone = {"case": case.id, "number": attempt.number, "outcome": attempt.outcome,
              "backup": backup.id if backup else None}
    session.delete(attempt)
    session.flush()
    earlier = session.scalars(select(Attempt).where(Attempt.case_id == case.id).order_by(Attempt.number)).all()
    case.attempt_count = len(earlier)
    case.first_attempt_at = earlier[0].started_at if earlier else None
    case.last_attempt_at = earlier[-1].started_at if earlier else None
    case.last_outcome = earlier[-1].outcome if earlier else None
    case.outcome = oc.disposition([a.outcome for a in earlier])
    last = earlier[-1] if earlier else None
    if last is not None and last.outcome and oc.outcome(last.outcome).callback and last.callback_at:
        case.callback_at, case.callback_by_id = last.callback_at, last.caller_id
    else:
        case.callback_at = case.callback_by_id = None
    case.status = "queued"
    case.replacement_state = None
    release_others(session, case, user)  # the caller holds this case again, and only it
    case.leased_by_id, case.lease_expires_at = user.id, stamp + settings.lease
    audit(session, "undo_attempt", user, target=f"case:{case.id}", detail=undone)
    session.flush()
    return case


def return_backup(session: Session, case: Case, user: User, now: datetime) -> Case | bool | None:
    """Put the backup that replaced ``case`` back in reserve, as if it had never been needed.
    Returns it, None when there is none, and False when it can no longer go back: dialled
    already, or held by another caller."""
    found = session.scalar(select(Case.id).where(Case.replaces_case_id == case.id, Case.round_id == case.round_id))
    if found is None:
        return None
    backup = locked_case(session, found)
    stamp = utc_naive(now)
    held_by_other = (backup.leased_by_id not in (None, user.id) and backup.lease_expires_at is not None
                     and backup.lease_expires_at >= stamp)
    if backup.attempt_count > 0 or held_by_other or backup.status != "queued":
        return False
    backup.status = "reserve"
    backup.activated_at = backup.replaces_case_id = backup.replacement_reason = None
    backup.activated_by_id = backup.leased_by_id = backup.lease_expires_at = None
    case.replacement_state = None
    return backup
