"""The rectification list's views (/reports/problems…): the list, one problem's page and its
actions. Supervisors see their own county, admins every county; callers get 403; another
county's problem is 404. The work is done by app/reports/problems.py."""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import case as sql_case
from sqlalchemy import func, select

from app.core.transactions import transaction
from app.auth.scope import can_see_county, roles_required
from app.core.clock import clock_now, local
from app.extensions import db
from app.models import PROBLEM_STATUSES, County, Institution, Problem, User
from app.questionnaires import FLAGS
from app.reports import bp
from app.reports.forms import CloseProblemForm, ProblemActionForm, ReopenProblemForm
from app.reports.problems import NOTE_MAX_LENGTH, REASON_MAX_LENGTH, ProblemError, ProblemFilters, assign_problem, close_problem, filter_choices, problem_history, problem_rows, reopen_problem
from app.models import PROBLEM_STATUS_LABELS

PER_PAGE = 50
STAFF = ("admin", "supervisor")


def _rows(problem_ids: list[int]):
    return problem_rows(db.session, current_app.extensions["questionnaires"], problem_ids)


# ---------------------------------------------------------------------------
# The list
# ---------------------------------------------------------------------------


@bp.route("/reports/problems")
@login_required
@roles_required(*STAFF)
def problem_list():
    f = ProblemFilters.from_args(request.args, current_user, local(clock_now()).strftime("%Y-%m"))
    status_rank = sql_case((Problem.status == "open", 0), (Problem.status == "assigned", 1), else_=2)
    stmt = (
        f.apply(select(Problem.id), current_user)
        .join(County, County.id == Problem.county_id)
        .join(Institution, Institution.id == Problem.institution_id)
        .order_by(status_rank, Problem.month.desc(), County.code, Institution.name, Problem.id)
    )
    page = db.paginate(stmt, per_page=PER_PAGE, error_out=False)
    totals = dict.fromkeys(PROBLEM_STATUSES, 0)
    totals.update(db.session.execute(
        f.apply(select(Problem.status, func.count()), current_user, with_status=False).group_by(Problem.status)
    ).all())
    counties, months, institutions, teams = filter_choices(db.session, current_user, f)
    return render_template(
        "reports/problems.html", page=page, rows=_rows(list(page.items)), f=f, totals=totals, counties=counties,
        months=months, institutions=institutions, teams=teams, flags=FLAGS, statuses=PROBLEM_STATUS_LABELS,
    )


# ---------------------------------------------------------------------------
# One problem: its page and the actions
# ---------------------------------------------------------------------------


def _problem_or_404(problem_id: int) -> Problem:
    problem = db.get_or_404(Problem, problem_id)
    if not can_see_county(current_user, problem.county_id):
        abort(404)
    return problem


def _render_page(problem: Problem, *, close_form: CloseProblemForm | None = None,
                 reopen_form: ReopenProblemForm | None = None, code: int = 200):
    row = _rows([problem.id])[0]
    users = {u.id: u.display_name for u in db.session.scalars(
        select(User).where(User.id.in_([i for i in (problem.assigned_by_id, problem.closed_by_id) if i]))
    )}
    return render_template(
        "reports/problem.html", row=row, problem=problem, history=problem_history(db.session, problem), users=users,
        action_form=ProblemActionForm(), close_form=close_form or CloseProblemForm(formdata=None),
        reopen_form=reopen_form or ReopenProblemForm(formdata=None), note_max=NOTE_MAX_LENGTH,
        reason_max=REASON_MAX_LENGTH,
    ), code


@bp.route("/reports/problems/<int:problem_id>")
@login_required
@roles_required(*STAFF)
def problem_view(problem_id: int):
    return _render_page(_problem_or_404(problem_id))


def _done(problem: Problem, message: str):
    flash(message, "success")
    return redirect(url_for("reports.problem_view", problem_id=problem.id))


def _refused(problem_id: int, exc: ProblemError):
    flash(str(exc), "error")
    return redirect(url_for("reports.problem_view", problem_id=problem_id))


@bp.route("/reports/problems/<int:problem_id>/assign", methods=["POST"])
@login_required
@roles_required(*STAFF)
def problem_assign(problem_id: int):
    problem = _problem_or_404(problem_id)
    if not ProblemActionForm().validate_on_submit():
        abort(400)
    try:
        with transaction(db.session):
            assign_problem(db.session, problem, current_user, clock_now())
    except ProblemError as exc:
        return _refused(problem_id, exc)
    return _done(problem, "已交办机构。")


@bp.route("/reports/problems/<int:problem_id>/close", methods=["POST"])
@login_required
@roles_required(*STAFF)
def problem_close(problem_id: int):
    problem = _problem_or_404(problem_id)
    form = CloseProblemForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        return _render_page(problem, close_form=form, code=400)
    try:
        with transaction(db.session):
            close_problem(db.session, problem, current_user, clock_now(), form.note.data)
    except ProblemError as exc:
        return _refused(problem_id, exc)
    return _done(problem, "已记录整改情况，问题已关闭。")


@bp.route("/reports/problems/<int:problem_id>/reopen", methods=["POST"])
@login_required
@roles_required(*STAFF)
def problem_reopen(problem_id: int):
    problem = _problem_or_404(problem_id)
    form = ReopenProblemForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        return _render_page(problem, reopen_form=form, code=400)
    try:
        with transaction(db.session):
            reopen_problem(db.session, problem, current_user, clock_now(), form.reason.data)
    except ProblemError as exc:
        return _refused(problem_id, exc)
    return _done(problem, "问题已重新打开，重新交办机构整改。")
