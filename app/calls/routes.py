"""The caller's workspace: home (the queue), the case screen, the questionnaire, the case
list, supervisors' assignment and answer corrections. (The supervisors' progress board is a
report: app/reports/routes.py.)

Thin views: they check scope (another county's case is 404), validate the form, call
the services in app/calls (queue, attempts, interview, corrections) and redirect.
Every POST carries a CSRF token; GETs change nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from app.core.ids import as_id
from app.auth.scope import require_county, roles_required
from app.calls import bp
from app.calls import outcomes as oc
from app.calls.forms import ActionForm, AssignForm, AttemptForm, EditAnswerForm, FinishForm, InterruptForm
from app.calls.rules import CallSettings
from app.auth.phone_search import LIMIT_MESSAGE, check_and_record
from app.calls.search import conditions as search_conditions, parse as search_query
from app.core.transactions import transaction
from app.core.clock import clock_now, local, to_local, utc_naive, TZ
from app.calls.corrections import edit_answer
from app.calls.day import caller_day, payload
from app.calls.interview import (answers_of, context_for, finish_interview, interrupt_interview, record_outcome,
                                 save_answer, start_interview)
from app.calls.attempts import undo_attempt
from app.calls.queue import (assign, claim_case, claim_next, held_case, may_claim, queue_counts, release, renew,
                             why_not_callable)
from app.calls.guards import CallError, current_round
from app.extensions import db
from app.models import audit, CASE_STATE_LABELS, AnswerEdit, Attempt, Case, County, Response, Round, User
from app.questionnaires import FLAGS, opening
from app.questionnaires.forms import build_form

CALLERS = ("caller", "supervisor")
STAFF = ("admin", "supervisor")


def _settings() -> CallSettings:
    return current_app.extensions["call_settings"]


def _questionnaire(version: str):
    try:
        return current_app.extensions["questionnaires"][version]
    except KeyError:
        abort(500)


def _case_or_404(case_id: int) -> Case:
    case = db.get_or_404(Case, case_id)
    round_ = db.session.get(Round, case.round_id)
    require_county(current_user, round_.county)
    if current_user.role == "caller" and not _caller_works_on(case, round_):
        abort(404)  # as if it did not exist: a caller learns nothing of cases outside their work
    return case


def _caller_works_on(case: Case, round_: Round) -> bool:
    """Least privilege: a caller reads the cases of the queue they work from (an open round's
    cases, never a backup not yet activated) and, once the round is closed, only the cases
    they dialled or hold."""
    if case.status == "reserve":
        return False
    if round_.status == "open":
        return True
    if case.leased_by_id == current_user.id:
        return True
    return db.session.scalar(
        select(Attempt.id).where(Attempt.case_id == case.id, Attempt.caller_id == current_user.id).limit(1)
    ) is not None


def _response_or_404(response_id: int) -> Response:
    response = db.get_or_404(Response, response_id)
    _case_or_404(response.case_id)
    return response


def _fail(exc: CallError, target: str):
    flash(str(exc), "error")
    return redirect(target)


# ---------------------------------------------------------------------------
# Home: the queue
# ---------------------------------------------------------------------------


@bp.route("/")
@login_required
def home():
    if current_user.is_admin:
        return redirect(url_for("reports.board"))
    now = clock_now()
    round_ = current_round(db.session, current_user.county_id, now)
    counts = mine = None
    if round_ is not None:
        counts = queue_counts(db.session, round_.id, current_user, now, _settings())
        mine = held_case(db.session, round_.id, current_user, now)
    day = caller_day(db.session, current_user, round_, now)
    return render_template("calls/home.html", round=round_, counts=counts, mine=mine, day=day,
                           form=ActionForm(), settings=_settings(), in_hours=_settings().in_hours(now),
                           now=now)


@bp.route("/day.json")
@login_required
@roles_required(*CALLERS)
def day_json():
    """The home page's poller (app/static/day.js): the signed-in user's callbacks due today
    and their figures. Reads only; the user's own work in their county's current round."""
    now = clock_now()
    round_ = current_round(db.session, current_user.county_id, now)
    day = caller_day(db.session, current_user, round_, now)
    return jsonify(payload(day, lambda case_id: url_for("calls.case_screen", case_id=case_id), now))


@bp.route("/next", methods=["POST"])
@login_required
@roles_required(*CALLERS)
def next_case():
    if not ActionForm().validate_on_submit():
        abort(400)
    case = _claim_next()
    if case is None:
        return redirect(url_for("calls.home"), 303)
    return redirect(url_for("calls.case_screen", case_id=case.id), 303)


def _claim_next() -> Case | None:
    """The caller's next case from the queue (committed), or None with a message flashed."""
    now = clock_now()
    try:
        with transaction(db.session, write=True):
            case = _claim(now)
    except CallError as exc:
        flash(str(exc), "error")
        return None
    if case is None:
        _nothing_to_call(now)
    return case


def _claim(now: datetime) -> Case | None:
    """Inside the caller's write transaction: the next case of the county's current round."""
    round_ = current_round(db.session, current_user.county_id, now)
    if round_ is None:
        return None
    return claim_next(db.session, round_.id, current_user, now, _settings())


def _nothing_to_call(now: datetime) -> None:
    if current_round(db.session, current_user.county_id, now) is None:
        flash("本县区本月尚未抽样，暂无拨打任务。", "info")
    elif not _settings().in_hours(now):
        flash(f"现在不在拨打时段内（{_settings().hours_label()}），没有到期的本人约定回访。", "info")
    else:
        flash("当前没有可拨打的样本（其余样本在等待间隔、约定的回访时间或他人拨打中）。", "info")


@dataclass
class Recorded:
    """What the caller just recorded, shown above the next case's panel (with an undo)."""

    text: str
    undo_attempt_id: int | None = None
    case_id: int | None = None
    number: int | None = None


def _record_and_next(record: Callable[[], Recorded]):
    """Record-and-next: ``record`` (a service call, raising CallError when refused) and the
    claim of the caller's next case run in one write transaction, with the audit of the phone
    its panel shows; the answer is that panel (one request from one panel to the next), or the
    home page when the caller asked to stop or nothing is left to call."""
    now = clock_now()
    stop = request.form.get("then") == "home"
    plain = db.session()
    plain.expire_on_commit = False  # the panel below shows what this transaction wrote: no reloads
    try:
        with transaction(db.session, write=True):
            recorded = record()
            case = None if stop else _claim(now)
            if case is not None:
                _phone_shown(case, in_transaction=True)
    finally:
        plain.expire_on_commit = True
    if case is None:
        flash(recorded.text, "success")
        if not stop:
            _nothing_to_call(now)
        return redirect(url_for("calls.home"), 303)
    return _panel(case, recorded=recorded)


# ---------------------------------------------------------------------------
# The case screen: the dialling panel
# ---------------------------------------------------------------------------


def _history(case: Case) -> list[Attempt]:
    return db.session.scalars(select(Attempt).where(Attempt.case_id == case.id).order_by(Attempt.number)).all()


def _holding(case: Case, now: datetime) -> bool:
    """The full phone only to the caller whose lease runs (or whose interview is open)."""
    return (case.leased_by_id == current_user.id and case.status == "queued"
            and ((case.lease_expires_at is not None and case.lease_expires_at >= utc_naive(now))
                 or case.state == "on_call"))


def _panel(case: Case, *, form: AttemptForm | None = None, error: CallError | None = None,
           recorded: Recorded | None = None, status: int = 200):
    """The case screen. Re-rendered with what the caller typed and the error beside its field
    when the server refuses an outcome."""
    round_ = db.session.get(Round, case.round_id)
    now = clock_now()
    holding = _holding(case, now)
    responses = db.session.scalars(select(Response).where(Response.case_id == case.id).order_by(Response.id)).all()
    # the interview of the attempt in progress (one at most), else one interrupted to resume
    response = next((r for r in responses if r.status == "in_progress"), None) \
        if case.attempt_count and case.last_outcome is None else None
    resume = next((r for r in reversed(responses) if r.status == "interrupted"), None) if response is None else None
    q = _questionnaire(round_.questionnaire_version)
    script = opening(q, resident=case.name, bureau=f"{round_.county.name}卫生健康局", caller=current_user.display_name,
                     institution=case.institution_name, team=case.team_name, doctor=case.doctor_name or "")
    replaced = db.session.get(Case, case.replaces_case_id) if case.replaces_case_id else None
    refusal = None
    if not holding and case.status == "queued" and current_user.role in CALLERS:
        if not may_claim(db.session, case, current_user, now, _settings()):
            refusal = why_not_callable(case, current_user, now, _settings()) or "该样本现在不能领取。"
    errors = {}
    if error is not None:
        errors[error.field if error.field in ("note", "callback") else ""] = str(error)
    if form is not None:
        for name, messages in form.errors.items():
            if name != "csrf_token" and messages:
                errors.setdefault(name if name in ("note",) else ("callback" if name.startswith("callback") else ""),
                                  "；".join(messages))
    page = render_template(
        "calls/case.html", case=case, round=round_, holding=holding, history=_history(case), response=response,
        responses=responses, script=script, connected=oc.choices(True), not_connected=oc.choices(False),
        form=form or AttemptForm(formdata=None), action=ActionForm(), label=oc.label, settings=_settings(),
        replaced=replaced, today=local(now).date().isoformat(), questionnaire=q, refusal=refusal, errors=errors,
        recorded=recorded, resume=resume, resume_answered=len(q.display(answers_of(resume))) if resume else 0,
        undo_seconds=int(_settings().undo.total_seconds()),
    )
    if holding:
        _phone_shown(case)
    return page, status


@bp.route("/case/<int:case_id>")
@login_required
def case_screen(case_id: int):
    return _panel(_case_or_404(case_id))


PHONES_SHOWN = "phones_shown"


def _phone_shown(case: Case, *, in_transaction: bool = False) -> None:
    """Audit the full phone shown on the case screen: one row when the caller opens the case
    for an attempt, not one per refresh of the same attempt in the same browser session.
    ``in_transaction``: written in the caller's transaction (record-and-next's)."""
    mark = f"{case.id}:{case.attempt_count}"
    shown = session.get(PHONES_SHOWN) or []
    if mark in shown:
        return
    case_id, round_id, attempt = case.id, case.round_id, case.attempt_count + 1
    if in_transaction:
        audit(db.session, "view_phone", current_user, target=f"case:{case_id}",
              detail={"round": round_id, "attempt": attempt})
    else:
        with transaction(db.session, write=True):  # SQLite: a write after this request's reads
            audit(db.session, "view_phone", current_user, target=f"case:{case_id}",
                  detail={"round": round_id, "attempt": attempt})
    session[PHONES_SHOWN] = (shown + [mark])[-20:]


@bp.route("/case/<int:case_id>/claim", methods=["POST"])
@login_required
@roles_required(*CALLERS)
def claim(case_id: int):
    case = _case_or_404(case_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        with transaction(db.session, write=True):
            claim_case(db.session, case.id, current_user, clock_now(), _settings())
    except CallError as exc:
        db.session.expire_all()
        return _panel(db.session.get(Case, case_id), error=exc, status=409)
    return redirect(url_for("calls.case_screen", case_id=case_id), 303)


@bp.route("/case/<int:case_id>/release", methods=["POST"])
@login_required
@roles_required(*CALLERS)
def release_case(case_id: int):
    _case_or_404(case_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    with transaction(db.session, write=True):
        released = release(db.session, case_id, current_user)
    if released:
        flash("已放回队列。", "info")
    return redirect(url_for("calls.home"), 303)


@bp.route("/case/<int:case_id>/renew", methods=["POST"])
@login_required
@roles_required(*CALLERS)
def renew_lease(case_id: int):
    _case_or_404(case_id)
    with transaction(db.session, write=True):
        ok = renew(db.session, case_id, current_user, clock_now(), _settings())
    return jsonify({"ok": ok})


def _callback_time(form) -> datetime | None:
    day, clock = (form.callback_date.data or "").strip(), (form.callback_time.data or "").strip()
    if not day and not clock:
        return None
    if not clock:
        raise CallError("请填写回访时间（例如 09:30）。", "callback")
    if not day:
        raise CallError("请填写回访日期。", "callback")
    try:
        moment = datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M").replace(tzinfo=TZ)
    except ValueError:
        moment = None
    if moment is None or not 2000 <= moment.year <= 2099:
        raise CallError("回访日期或时间格式不正确（例如 2026-11-24 和 09:30）。", "callback")
    return moment


def _number(value) -> int | None:
    text = str(value or "")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 6 else None


def _recorded_text(name: str, attempt: Attempt) -> str:
    text = f"已记录：{name} · {oc.label(attempt.outcome)}（第 {attempt.number} 次）"
    if attempt.callback_at is not None:
        text += f"，约定 {to_local(attempt.callback_at, fmt='%m月%d日 %H:%M')} 回访"
    return text + "。"


@bp.route("/case/<int:case_id>/attempt", methods=["POST"])
@login_required
@roles_required(*CALLERS)
def attempt(case_id: int):
    case = _case_or_404(case_id)
    form = AttemptForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        return _panel(case, form=form, status=400)
    name = case.name
    q = _questionnaire(db.session.get(Round, case.round_id).questionnaire_version)
    context = context_for(case, current_app.extensions["vocabulary"])

    def record() -> Recorded:
        rule = oc.OUTCOMES.get(form.outcome.data)
        if rule is None or rule.by_questionnaire:
            raise CallError("请选择有效的拨打结果。", "outcome")
        callback_at = _callback_time(form) if rule.callback else None
        attempt_ = record_outcome(db.session, case_id, current_user, questionnaire=q, context=context,
                                  outcome=form.outcome.data, now=clock_now(), settings=_settings(),
                                  note=form.note.data, callback_at=callback_at,
                                  expected_number=_number(form.number.data))
        return Recorded(_recorded_text(name, attempt_), attempt_.id if _settings().undo else None,
                        attempt_.case_id, attempt_.number)

    try:
        return _record_and_next(record)
    except CallError as exc:
        db.session.expire_all()
        repeated = _repeated(case_id, _number(form.number.data))
        if repeated is not None:
            return repeated
        return _panel(db.session.get(Case, case_id), form=form, error=exc, status=400 if exc.field else 409)


def _repeated(case_id: int, number: int | None):
    """A double press: the form's attempt was recorded a moment ago by this caller. Answer
    with the case they now hold (the next one), as the first press did, recording nothing."""
    if number is None:
        return None
    done = db.session.scalar(select(Attempt).where(Attempt.case_id == case_id, Attempt.number == number,
                                                   Attempt.caller_id == current_user.id,
                                                   Attempt.outcome.is_not(None)))
    if done is None:
        return None
    now = clock_now()
    round_ = current_round(db.session, current_user.county_id, now)
    held = held_case(db.session, round_.id, current_user, now) if round_ is not None else None
    if held is None:
        return redirect(url_for("calls.home"), 303)
    name = db.session.get(Case, case_id).name
    return _panel(held, recorded=Recorded(f"已记录：{name} · {oc.label(done.outcome)}（第 {number} 次；重复提交，未重复记录）。"))


@bp.route("/attempt/<int:attempt_id>/undo", methods=["POST"])
@login_required
@roles_required(*CALLERS)
def undo(attempt_id: int):
    attempt_ = db.get_or_404(Attempt, attempt_id)
    case = _case_or_404(attempt_.case_id)
    if not ActionForm().validate_on_submit():
        abort(400)
    label_, number = oc.label(attempt_.outcome), attempt_.number
    case_of_form, number_of_form = as_id(request.form.get("case")), as_id(request.form.get("number"))
    expected = (case_of_form, number_of_form) if case_of_form and number_of_form else None
    try:
        with transaction(db.session, write=True):
            undo_attempt(db.session, attempt_id, current_user, now=clock_now(), settings=_settings(),
                         window=_settings().undo, expected=expected)
    except CallError as exc:
        flash(str(exc), "error")
        return redirect(url_for("calls.home"), 303)
    flash(f"已撤销：{case.name} · {label_}（第 {number} 次）。请重新选择结果。", "info")
    return redirect(url_for("calls.case_screen", case_id=case.id), 303)


@bp.route("/case/<int:case_id>/start", methods=["POST"])
@login_required
@roles_required(*CALLERS)
def start(case_id: int):
    case = _case_or_404(case_id)
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        with transaction(db.session, write=True):
            response = start_interview(db.session, case.id, current_user, now=clock_now(), settings=_settings(),
                                       expected_number=_number(form.number.data))
    except CallError as exc:
        db.session.expire_all()
        return _panel(db.session.get(Case, case_id), error=exc, status=409)
    return _resume(response)


def _resume(response: Response):
    """To the first unanswered item (a resumed interview continues where it stopped)."""
    q = _questionnaire(response.questionnaire_version)
    code = q.current(answers_of(response))
    if code is None:
        return redirect(url_for("calls.review", response_id=response.id), 303)
    return redirect(url_for("calls.question", response_id=response.id, code=code), 303)


# ---------------------------------------------------------------------------
# The questionnaire
# ---------------------------------------------------------------------------


def _interview_parts(response: Response):
    case = db.session.get(Case, response.case_id)
    q = _questionnaire(response.questionnaire_version)
    context = context_for(case, current_app.extensions["vocabulary"])
    return case, q, context


@bp.route("/response/<int:response_id>")
@login_required
def interview(response_id: int):
    response = _response_or_404(response_id)
    if response.status != "in_progress":
        return redirect(url_for("calls.response_view", response_id=response.id))
    return _resume(response)


def _question_page(response: Response, case: Case, q, code: str, form, *, stop_form=None, stop_error=None,
                   status: int = 200):
    answers = answers_of(response)
    path = q.path(answers)
    position = path.index(code)
    previous = path[position - 1] if position else None
    # skips only jump forward, so the questionnaire's last item is the last of every path
    last = code == q.items[-1].code
    closing = q.render(q.closing_script, name=case.name, institution=case.institution_name, team=case.team_name,
                       doctor=case.doctor_name or "") if last else None
    stop_form = stop_form or InterruptForm(formdata=None)
    return render_template("calls/question.html", response=response, case=case, q=q, item=q.item(code), form=form,
                           number=position + 1, previous=previous, finish=FinishForm(), last=last, closing=closing,
                           stop=stop_form, stop_error=stop_error, today=local(clock_now()).date().isoformat(),
                           settings=_settings(), can_interrupt=case.attempt_count < _settings().attempt_cap), status


@bp.route("/response/<int:response_id>/q/<code>", methods=["GET", "POST"])
@login_required
@roles_required(*CALLERS)
def question(response_id: int, code: str):
    response = _response_or_404(response_id)
    case, q, context = _interview_parts(response)
    answers = answers_of(response)
    if code not in q.path(answers):
        abort(404)
    if response.status != "in_progress":
        return redirect(url_for("calls.response_view", response_id=response.id))
    form = build_form(q, q.item(code), context, answers=answers)
    if form.validate_on_submit():
        try:
            with transaction(db.session, write=True):
                response = save_answer(db.session, response.id, current_user, form.cleaned, questionnaire=q,
                                       now=clock_now(), settings=_settings())
        except CallError as exc:
            return _fail(exc, url_for("calls.case_screen", case_id=case.id))
        if response.status == "ended":
            name = case.name
            return _record_and_next(
                lambda: Recorded(f"已记录：{name} · 身份核实未通过，已礼貌结束通话，记为“本人不在”，可择时再拨。"))
        nxt = q.current(answers_of(response))
        if nxt is None and request.form.get("finish") == "1":
            return _finish(response.id, breakoff=False)
        if nxt is None:
            return redirect(url_for("calls.review", response_id=response.id), 303)
        return redirect(url_for("calls.question", response_id=response.id, code=nxt), 303)
    if request.method == "POST" and form.csrf_token.errors:
        abort(400)
    return _question_page(response, case, q, code, form, status=400 if request.method == "POST" else 200)


@bp.route("/response/<int:response_id>/review")
@login_required
@roles_required(*CALLERS)
def review(response_id: int):
    response = _response_or_404(response_id)
    case, q, context = _interview_parts(response)
    if response.status != "in_progress":
        return redirect(url_for("calls.response_view", response_id=response.id))
    answers = answers_of(response)
    return render_template("calls/review.html", response=response, case=case, q=q, rows=q.display(answers),
                           complete=q.is_complete(answers), finish=FinishForm(),
                           closing=q.render(q.closing_script, name=case.name, institution=case.institution_name,
                                            team=case.team_name, doctor=case.doctor_name or ""))


@bp.route("/response/<int:response_id>/finish", methods=["POST"])
@login_required
@roles_required(*CALLERS)
def finish(response_id: int):
    _response_or_404(response_id)
    form = FinishForm()
    if not form.validate_on_submit():
        abort(400)
    return _finish(response_id, breakoff=form.breakoff.data == "1")


def _finish(response_id: int, *, breakoff: bool):
    response = db.session.get(Response, response_id)
    case, q, context = _interview_parts(response)
    name = case.name

    def record() -> Recorded:
        finished = finish_interview(db.session, response_id, current_user, questionnaire=q, context=context,
                                    now=clock_now(), settings=_settings(), breakoff=breakoff)
        return Recorded(f"已记录：{name} · {oc.label(finished.status)}。")

    try:
        return _record_and_next(record)
    except CallError as exc:
        return _fail(exc, url_for("calls.interview", response_id=response_id))


@bp.route("/response/<int:response_id>/interrupt", methods=["POST"])
@login_required
@roles_required(*CALLERS)
def interrupt(response_id: int):
    """The line dropped mid-interview: keep the answers, agree a time to call back."""
    response = _response_or_404(response_id)
    case, q, context = _interview_parts(response)
    form = InterruptForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        return _stopped_page(response, case, q, context, form, None)
    name, case_id = case.name, case.id

    def record() -> Recorded:
        attempt_ = interrupt_interview(db.session, response_id, current_user, callback_at=_callback_time(form),
                                       note=form.note.data, now=clock_now(), settings=_settings())
        return Recorded(_recorded_text(name, attempt_))

    try:
        return _record_and_next(record)
    except CallError as exc:
        if exc.field is None:
            return _fail(exc, url_for("calls.case_screen", case_id=case_id))
        db.session.expire_all()
        response = db.session.get(Response, response_id)
        return _stopped_page(response, db.session.get(Case, case_id), q, context, form, exc)


def _stopped_page(response, case, q, context, form, error):
    """The question the caller was on, with the interruption form as they filled it and the
    error beside it."""
    answers = answers_of(response)
    code = q.current(answers) or q.path(answers)[-1]
    answer_form = build_form(q, q.item(code), context, answers=answers, formdata=None)
    message = str(error) if error else "；".join(m for name, ms in form.errors.items() if name != "csrf_token" for m in ms)
    return _question_page(response, case, q, code, answer_form, stop_form=form, stop_error=message, status=400)


@bp.route("/response/<int:response_id>/view")
@login_required
def response_view(response_id: int):
    response = _response_or_404(response_id)
    case, q, _ = _interview_parts(response)
    edits = db.session.scalars(
        select(AnswerEdit).where(AnswerEdit.response_id == response.id).order_by(AnswerEdit.at)
    ).all()
    return render_template("calls/response.html", response=response, case=case, q=q,
                           rows=q.display(answers_of(response)), edits=edits,
                           flags=(response.flags or "").split(",") if response.flags else [], flag_labels=FLAGS,
                           can_edit=current_user.role in STAFF and response.status in ("complete", "partial"))


@bp.route("/response/<int:response_id>/edit/<code>", methods=["GET", "POST"])
@login_required
@roles_required(*STAFF)
def edit(response_id: int, code: str):
    response = _response_or_404(response_id)
    case, q, context = _interview_parts(response)
    answers = answers_of(response)
    if code not in answers:
        abort(404)
    item = q.item(code)
    form = build_form(q, item, context, answers=answers)
    reason_form = EditAnswerForm()
    if request.method == "POST":
        if form.validate_on_submit() and reason_form.validate():
            try:
                with transaction(db.session):
                    edit_answer(db.session, response.id, current_user, form.cleaned, item=code,
                                reason=reason_form.reason.data, questionnaire=q, context=context, now=clock_now())
            except CallError as exc:
                flash(str(exc), "error")
            else:
                flash("答案已修改，修改记录已保存。", "success")
                return redirect(url_for("calls.response_view", response_id=response.id))
        elif form.csrf_token.errors:
            abort(400)
    return render_template("calls/edit.html", response=response, case=case, q=q, item=item, form=form,
                           reason_form=reason_form)


# ---------------------------------------------------------------------------
# Case list, assignment
# ---------------------------------------------------------------------------


STATUS_FILTERS = {
    "": "全部（不含备用未启用的样本）",
    "queued": "待拨打",
    "callback": "约定回访",
    "on_call": CASE_STATE_LABELS["on_call"],
    "done": "已结束",
    "complete": "已完成访问",
    "reserve": CASE_STATE_LABELS["reserve"],
}


def _round_for_list() -> Round | None:
    now = clock_now()
    round_id = as_id(request.args.get("round"))
    if round_id:
        round_ = db.get_or_404(Round, round_id)
        require_county(current_user, round_.county)
        if current_user.role == "caller" and round_.status != "open":
            abort(404)  # a caller lists the queue they work from, not past months
        return round_
    if current_user.is_admin:
        county_id = as_id(request.args.get("county"))
        return current_round(db.session, county_id, now) if county_id else None
    round_ = current_round(db.session, current_user.county_id, now)
    if round_ is not None and current_user.role == "caller" and round_.status != "open":
        return None
    return round_


@bp.route("/cases")
@login_required
def cases():
    round_ = _round_for_list()
    search = (request.args.get("q") or "").strip()[:50]
    status = request.args.get("status", "")
    if status == "in_progress":  # the filter's former name, in bookmarks
        status = "on_call"
    filters = STATUS_FILTERS
    if current_user.role == "caller":  # backups not yet activated are no caller's work
        filters = {value: text for value, text in STATUS_FILTERS.items() if value != "reserve"}
    if status not in filters:
        status = ""
    page = None
    query = search_query(search)
    refused = False
    if round_ is not None and query.is_phone:
        now = utc_naive(clock_now())
        limit = current_app.config["CASE_SEARCH_MAX_PER_10_MIN"]
        with transaction(db.session):
            refused = check_and_record(db.session, current_user, query.digits, target=f"round:{round_.id}",
                                       now=now, limit=limit)
        if refused:
            flash(LIMIT_MESSAGE.format(limit=limit), "error")
    if round_ is not None and not refused:
        stmt = select(Case).where(Case.round_id == round_.id)
        if status == "queued":
            stmt = stmt.where(Case.status == "queued")
        elif status == "callback":
            stmt = stmt.where(Case.status == "queued", Case.callback_at.is_not(None))
        elif status == "on_call":
            stmt = stmt.where(Case.in_state("on_call"))
        elif status == "done":
            stmt = stmt.where(Case.status.in_(("done", "closed")))
        elif status == "complete":
            stmt = stmt.where(Case.outcome == "complete")
        elif status == "reserve":
            stmt = stmt.where(Case.in_state("reserve"))
        else:
            stmt = stmt.where(~Case.in_state("reserve"))
        if search:
            stmt = stmt.where(search_conditions(query))
        stmt = stmt.order_by(Case.institution_name, Case.kind.desc(), Case.position)
        page = db.paginate(stmt, per_page=50, error_out=False)
    callers = []
    if round_ is not None and current_user.role in STAFF:
        callers = db.session.scalars(
            select(User).where(User.role == "caller", User.county_id == round_.county_id, User.is_enabled)
            .order_by(User.real_name, User.username)
        ).all()
    form = AssignForm()
    form.caller.choices = [("", "取消分配")] + [(str(u.id), _person(u)) for u in callers]
    counties = []
    if current_user.is_admin:
        counties = db.session.scalars(select(County).order_by(County.code)).all()
    return render_template("calls/cases.html", round=round_, page=page, search=search, status=status, filters=filters,
                           form=form, callers=callers, label=oc.label, action=ActionForm(), counties=counties,
                           staff=current_user.role in STAFF), 429 if refused else 200


def _person(user: User) -> str:
    """A caller as a supervisor picks them: the real name, with the user name when there is one
    (two callers may share a name)."""
    return f"{user.real_name}（{user.username}）" if user.real_name else user.username


@bp.route("/assign/<int:round_id>", methods=["POST"])
@login_required
@roles_required(*STAFF)
def assign_cases(round_id: int):
    round_ = db.get_or_404(Round, round_id)
    require_county(current_user, round_.county)
    form = AssignForm()
    form.caller.choices = [("", "")] + [
        (str(u.id), _person(u))
        for u in db.session.scalars(select(User).where(User.role == "caller", User.county_id == round_.county_id))
    ]
    if not form.validate_on_submit():
        abort(400)
    ids = [case_id for case_id in map(as_id, request.form.getlist("case")) if case_id is not None]
    if not ids:
        flash("请先勾选要分配的样本。", "error")
        return redirect(url_for("calls.cases", round=round_.id))
    caller = db.session.get(User, int(form.caller.data)) if form.caller.data else None
    try:
        with transaction(db.session):
            changed = assign(db.session, ids, caller, current_user, round_)
    except CallError as exc:
        return _fail(exc, url_for("calls.cases", round=round_.id))
    who = caller.display_name if caller else "（不指定）"
    flash(f"已将 {changed} 个样本分配给 {who}。", "success")
    return redirect(url_for("calls.cases", round=round_.id))
