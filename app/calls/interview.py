"""The questionnaire asked during a call: starting it, saving answers, ending it (complete,
partial or break-off), the problem it raises, and ending open interviews at month end.
Flushes; the boundary commits."""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.calls import outcomes as oc
from app.core.locks import begin_write
from app.calls.rules import CallSettings
from app.core.clock import utc_naive, utcnow
from app.models import Attempt, Case, Problem, Response, Round, User
from app.questionnaires import Context, Questionnaire
from app.calls.guards import require_holder, locked_case, open_round, CallError
from app.calls.attempts import (apply_outcome, check_number, find_open_attempt, new_attempt, record_attempt,
                                return_backup, validate_callback)


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
    case = locked_case(session, case_id)
    round_ = open_round(session, case.round_id)
    require_holder(case, user, now)
    attempt = find_open_attempt(session, case)
    if attempt is None:
        check_number(case, expected_number)
        if case.attempt_count >= settings.attempt_cap:
            raise CallError("该样本的拨打次数已用完。")
        attempt = new_attempt(session, case, user, now, connected=True)
    response = session.scalar(select(Response).where(Response.attempt_id == attempt.id))
    if response is None:
        response = interrupted_response(session, case.id)
        if response is not None:  # resumed: the same answers, now carried by this attempt and
            # by the caller who goes on with it (the interview's time counts from here)
            response.attempt_id = attempt.id
            response.status = "in_progress"
            response.caller_id = user.id
            response.started_at = response.updated_at = utc_naive(now)
    if response is None:
        response = Response(attempt_id=attempt.id, case_id=case.id, round_id=case.round_id, caller_id=user.id,
                            questionnaire_version=round_.questionnaire_version, status="in_progress",
                            answers="{}", started_at=utc_naive(now), updated_at=utc_naive(now))
        session.add(response)
    case.lease_expires_at = utc_naive(now) + settings.lease
    session.flush()
    return response


def interrupted_response(session: Session, case_id: int) -> Response | None:
    """The case's interview that a dropped line interrupted, waiting to be resumed."""
    return session.scalar(
        select(Response).where(Response.case_id == case_id, Response.status == "interrupted").order_by(Response.id.desc())
    )


def interrupt_interview(
    session: Session,
    response_id: int,
    user: User,
    *,
    callback_at: datetime | None,
    note: str | None,
    now: datetime,
    settings: CallSettings,
) -> Attempt:
    """The line dropped, or the resident had to stop, with the interview begun: every answer
    is kept, the attempt ends as 通话中断，约定续访 (a contact) with the callback agreed, and
    when the case comes back the interview continues at the first unanswered item."""
    begin_write(session)
    response, case, attempt = _response_for_write(session, response_id, user, now)
    if case.attempt_count >= settings.attempt_cap:
        raise CallError(f"该样本已拨打 {case.attempt_count} 次，不能再约定续访：请尽量在本次通话中问完；"
                        "居民不愿继续时点“居民明确拒绝继续”。")
    round_ = session.get(Round, case.round_id)
    when = validate_callback(callback_at, now, settings, round_.month)
    note = (note or "").strip() or None
    if note and len(note) > 500:
        raise CallError("说明不能超过500字。", "note")
    response.status = "interrupted"
    response.updated_at = utc_naive(now)
    attempt.outcome, attempt.note, attempt.callback_at = "interrupted", note, when
    attempt.ended_at = utc_naive(now)
    apply_outcome(session, case, attempt, user, now, settings)
    session.flush()
    return attempt


def answers_of(response: Response) -> dict:
    return json.loads(response.answers or "{}")


def _response_for_write(session: Session, response_id: int, user: User, now: datetime) -> tuple[Response, Case, Attempt]:
    response = session.get(Response, response_id)
    if response is None:
        raise CallError("找不到该问卷。")
    case = locked_case(session, response.case_id)  # first the lock, then what it protects
    response = session.get(Response, response_id, populate_existing=True)
    open_round(session, case.round_id)
    attempt = session.get(Attempt, response.attempt_id, populate_existing=True)
    if response.status != "in_progress" or attempt.outcome is not None:
        raise CallError("该问卷已结束，不能再修改。")
    require_holder(case, user, now)
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
    response, case, attempt = _response_for_write(session, response_id, user, now)
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
        apply_outcome(session, case, attempt, user, now, settings)
    session.flush()
    return response


def derive_into(response: Response, questionnaire: Questionnaire, context: Context, answers: dict) -> None:
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
    if response.status in ("complete", "partial", "breakoff") and response.caller_id == user.id:
        session.flush()
        return response  # a repeated submit: already recorded
    response, case, attempt = _response_for_write(session, response_id, user, now)
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
    derive_into(response, questionnaire, context, answers_of(response))
    attempt.outcome = status
    attempt.ended_at = stamp
    apply_outcome(session, case, attempt, user, now, settings)
    session.flush()
    sync_problem(session, response)


def _end_waiting(session: Session, response: Response, status: str, questionnaire: Questionnaire, context: Context,
                 now: datetime) -> None:
    """An interrupted interview that will not be resumed ends with what was asked."""
    stamp = utc_naive(now)
    response.status, response.completed_at, response.updated_at = status, stamp, stamp
    response.current_item = None
    derive_into(response, questionnaire, context, answers_of(response))
    session.flush()
    sync_problem(session, response)


def record_outcome(session: Session, case_id: int, user: User, *, questionnaire: Questionnaire, context: Context,
                   now: datetime, **kwargs) -> Attempt:
    """An outcome chosen on the dialling panel (``record_attempt``). When it ends the case
    while an interrupted interview waits (a later final outcome, or the attempts used up),
    that interview ends as it would at the month's close: partial when the satisfaction item
    was answered, and then the interview is the case's disposition and no backup replaces
    it; break-off otherwise, and the outcome just recorded stands."""
    attempt = record_attempt(session, case_id, user, now=now, **kwargs)
    case = session.get(Case, case_id)
    waiting = interrupted_response(session, case_id) if case.status == "done" else None
    if waiting is None:
        return attempt
    status = questionnaire.breakoff_status(answers_of(waiting))
    _end_waiting(session, waiting, status, questionnaire, context, now)
    if status == "partial":
        case.outcome = "partial"
        if case.replacement_state == "replaced":
            return_backup(session, case, user, now)  # activated in this transaction: untouched
        case.replacement_state = None
    session.flush()
    return attempt


def finalize_open_interviews(session: Session, round_id: int, now: datetime, questionnaires, vocabulary) -> int:
    """At the month's close: interviews left open, and interrupted ones never resumed, end as
    partial or break-off with what was asked. An interrupted interview's attempt keeps its
    outcome (通话中断); the response and the case's disposition take the closing status, unless
    the case already ended otherwise (a later refusal stays a refusal). Runs inside the
    caller's transaction (the close)."""
    count = 0
    for response in session.scalars(
        select(Response).where(Response.round_id == round_id, Response.status.in_(("in_progress", "interrupted")))
        .order_by(Response.id)
    ).all():
        case = session.get(Case, response.case_id)
        attempt = session.get(Attempt, response.attempt_id)
        questionnaire = questionnaires[response.questionnaire_version]
        status = questionnaire.breakoff_status(answers_of(response))
        context = context_for(case, vocabulary)
        if response.status == "in_progress":
            system = session.get(User, attempt.caller_id)
            _finish(session, response, case, attempt, status, questionnaire, context, system, now,
                    CallSettings(hours=()))
        else:
            case.outcome = oc.merge(case.outcome, status)
            if case.status == "queued":
                case.status = "done"
                case.leased_by_id = case.lease_expires_at = None
                case.callback_at = case.callback_by_id = None
            _end_waiting(session, response, status, questionnaire, context, now)
        count += 1
    return count
