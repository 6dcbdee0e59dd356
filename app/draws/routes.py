from flask import abort, current_app, flash, redirect, render_template, send_file, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from app.auth.scope import county_filter, require_county, roles_required
from app.draws import bp
from app.draws.calllists import ordered_cases, sample_label, write_call_list
from app.draws.context import call_list_writer, draw_settings
from app.core.transactions import transaction
from app.core.clock import clock_now, current_month
from app.draws.forms import DrawForm, RedrawForm
from app.draws.services import DrawError, draw_month_and_commit, redraw_round
from app.extensions import db
from app.models import audit, Case, County, Round

STAFF = ("admin", "supervisor")


def _round_or_404(round_id: int) -> Round:
    round_ = db.get_or_404(Round, round_id)
    require_county(current_user, round_.county)
    return round_


def _log(action: str, round_: Round, detail: str | None = None) -> None:
    with transaction(db.session):
        audit(db.session, action, current_user, target=f"round:{round_.id} {round_.county.name} {round_.month}",
              detail=detail, county_id=round_.county_id)


def _draw_form() -> DrawForm:
    form = DrawForm()
    if current_user.is_admin:
        counties = db.session.scalars(select(County).order_by(County.code)).all()
        form.county.choices = [("", "全部县市区")] + [(str(c.id), c.name) for c in counties]
    else:
        form.county.choices = [(str(current_user.county_id), current_user.county.name)]
    return form


@bp.route("/")
@login_required
@roles_required(*STAFF)
def rounds():
    stmt = county_filter(current_user, select(Round).join(County), Round.county_id).order_by(
        Round.month.desc(), County.code
    )
    page = db.paginate(stmt, per_page=50, error_out=False)
    month = current_month(clock_now())
    return render_template("draws/rounds.html", page=page, form=_draw_form(), month=month)


@bp.route("/draw", methods=["POST"])
@login_required
@roles_required(*STAFF)
def draw():
    form = _draw_form()
    if not form.validate_on_submit():
        abort(400)
    choice = form.county.data
    valid = {value for value, _ in form.county.choices}
    if choice not in valid:
        abort(400)
    county_ids = [int(choice)] if choice else None
    now = clock_now()
    try:
        outcomes = draw_month_and_commit(
            db.session, current_month(now), now=now, settings=draw_settings(current_app),
            actor=current_user.username, user_id=current_user.id, county_ids=county_ids,
            after_draw=call_list_writer(current_app, db.session),
        )
    except DrawError as exc:
        flash(str(exc), "error")
        return redirect(url_for("draws.rounds"))
    for outcome in outcomes:
        flash(outcome.message.split("\n")[0], "error" if outcome.status == "failed" else "success")
    if len(outcomes) == 1 and outcomes[0].round_id:
        return redirect(url_for("draws.round_detail", round_id=outcomes[0].round_id))
    return redirect(url_for("draws.rounds"))


@bp.route("/<int:round_id>")
@login_required
@roles_required(*STAFF)
def round_detail(round_id: int):
    round_ = _round_or_404(round_id)
    called = db.session.scalar(
        select(func.count()).select_from(Case).where(
            Case.round_id == round_.id, (Case.attempt_count > 0) | (Case.status == "done")
        )
    )
    return render_template("draws/round.html", round=round_, units=round_.units, called=called,
                           redraw_form=RedrawForm())


@bp.route("/<int:round_id>/redraw", methods=["POST"])
@login_required
@roles_required("admin")
def redraw(round_id: int):
    round_ = _round_or_404(round_id)
    form = RedrawForm()
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
        return redirect(url_for("draws.round_detail", round_id=round_.id))
    try:
        with transaction(db.session):
            outcome = redraw_round(db.session, round_.id, now=clock_now(), settings=draw_settings(current_app),
                                   actor=current_user.username, user_id=current_user.id, reason=form.reason.data)
    except DrawError as exc:
        flash(str(exc), "error")
        return redirect(url_for("draws.round_detail", round_id=round_id))
    write_call_list(db.session, round_id, current_app.config["SAMPLE_LISTS_DIR"])
    flash(outcome.message, "success")
    return redirect(url_for("draws.round_detail", round_id=round_id))


@bp.route("/<int:round_id>/call-list.<fmt>")
@login_required
@roles_required(*STAFF)
def call_list(round_id: int, fmt: str):
    round_ = _round_or_404(round_id)
    if fmt not in ("xlsx", "csv"):
        abort(404)
    paths = write_call_list(db.session, round_.id, current_app.config["SAMPLE_LISTS_DIR"])
    path = paths[0] if fmt == "xlsx" else paths[1]
    _log("export.call_list", round_, path.name)
    return send_file(path, as_attachment=True, download_name=path.name)


@bp.route("/<int:round_id>/print")
@login_required
@roles_required(*STAFF)
def print_list(round_id: int):
    round_ = _round_or_404(round_id)
    groups: dict[str, list[Case]] = {}
    for case in ordered_cases(db.session, round_.id):
        groups.setdefault(case.institution_name, []).append(case)
    _log("export.call_list_print", round_)
    return render_template("draws/print.html", round=round_, groups=groups, sample_label=sample_label)
