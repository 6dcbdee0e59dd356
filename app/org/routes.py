"""机构与团队: the organisation pages (county → institution → team) and their maintenance.

Reading is for the city administrator and a county supervisor, within their county: the team
page lists residents (masked). A caller works on cases, not on the roster: the county list
(counts only) still answers, every other page is 403. Maintenance is for the city
administrator (everything, counties included, and the sheet import) and a county supervisor
(the institutions and teams of their own county); a caller gets 403. A unit outside the
user's county answers 404. The rules live in app/org/maintenance.py: a view checks the form,
calls the service, commits once, and shows the service's Chinese message when it refuses.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

import pandas as pd
from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from app.core.ids import as_id
from app.auth.phone_search import LIMIT_MESSAGE, check_and_record
from app.auth.scope import county_filter, require_county, roles_required
from app.extensions import db
from app.models import audit, County, Institution, Resident, Team
from app.core.transactions import transaction
from app.core.clock import utcnow
from app.org import bp
from app.org.forms import (
    ConfirmForm,
    CountyEditForm,
    CountyForm,
    InstitutionEditForm,
    InstitutionForm,
    MergeForm,
    MoveForm,
    OrgUploadForm,
    ReasonForm,
    TeamEditForm,
    TeamForm,
)
from app.org.importer import ORG_SHEET, OrgImportFailed, import_organisation
from app.org.maintenance import (
    ACTIONS,
    KIND_LABELS,
    Actor,
    OrgError,
    create_county,
    create_institution,
    create_team,
    describe,
    edit_county,
    edit_institution,
    edit_team,
    former_names,
    history,
    merge_teams,
    move_team,
    set_active,
    team_residents,
)
from app.org.services import label_names, roster_counts
from app.core.sheets import SUPPORTED_SUFFIXES
from app.core.upload_guard import ReadLimits
from app.core.spreadsheets import write_xlsx
from app.core.masking import scrub_ids
from app.core.storage import save_private

MANAGERS = ("admin", "supervisor")
MODELS = {"county": County, "institution": Institution, "team": Team}
PLURAL = {"counties": "county", "institutions": "institution", "teams": "team"}
TAKEN = "名称或代码刚被占用，请换一个。"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _actor() -> Actor:
    return Actor.of(current_user._get_current_object())


def _manages() -> bool:
    return current_user.role in MANAGERS


def _county_of(kind: str, unit) -> County:
    return {"county": lambda u: u, "institution": lambda u: u.county, "team": lambda u: u.institution.county}[kind](unit)


def _unit(kind: str, unit_id: int, *, lock: bool = False):
    """The unit, within the user's county (else 404). ``lock``: read it afresh and hold its row
    (FOR UPDATE on PostgreSQL; on SQLite the write transaction begun by the caller) so a
    repeated POST waits for the first and then sees what it did."""
    options = {"with_for_update": True, "populate_existing": True} if lock else {}
    unit = db.session.get(MODELS[kind], unit_id, **options)
    if unit is None:
        abort(404)
    require_county(current_user, _county_of(kind, unit))
    return unit


def _unit_url(kind: str, unit) -> str:
    return {
        "county": lambda: url_for("org.county", county_id=unit.id),
        "institution": lambda: url_for("org.institution", institution_id=unit.id),
        "team": lambda: url_for("org.team", team_id=unit.id),
    }[kind]()


def _history(kind: str, unit_id: int) -> list[dict]:
    return [{"at": c.at, "actor": c.actor, "action": ACTIONS.get(c.action, c.action), "what": describe(c),
             "reason": c.reason or ""} for c in history(db.session, kind, unit_id)]


def _refused(template: str, message: str, **context):
    """A refused change: nothing written (the transaction was rolled back), the form again
    with what was typed and the reason."""
    flash(message, "error")
    return render_template(template, **context), 400


def _crumbs(kind: str, unit) -> list[tuple[str, str]]:
    """(label, url) from the county list down to ``unit`` (included)."""
    trail = [("县市区", url_for("org.counties"))]
    if kind == "institution":
        trail.append((unit.county.name, _unit_url("county", unit.county)))
    elif kind == "team":
        trail += _crumbs("institution", unit.institution)[1:]
    trail.append((unit.name, _unit_url(kind, unit)))
    return trail


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


@bp.route("/")
@login_required
def counties():
    stmt = county_filter(current_user, select(County).order_by(County.active.desc(), County.code), County.id)
    rows = db.session.scalars(stmt).all()
    counts = roster_counts(db.session, "county")
    inst_counts = dict(
        db.session.execute(select(Institution.county_id, func.count()).group_by(Institution.county_id)).all()
    )
    return render_template(
        "org/counties.html", counties=rows, counts=counts, inst_counts=inst_counts, labels=label_names(db.session)
    )


@bp.route("/counties/<int:county_id>")
@login_required
@roles_required(*MANAGERS)
def county(county_id: int):
    county = _unit("county", county_id)
    institutions = db.session.scalars(
        select(Institution).where(Institution.county_id == county.id).order_by(Institution.active.desc(), Institution.name)
    ).all()
    team_counts = dict(
        db.session.execute(
            select(Team.institution_id, func.count())
            .join(Institution, Institution.id == Team.institution_id)
            .where(Institution.county_id == county.id)
            .group_by(Team.institution_id)
        ).all()
    )
    counts = roster_counts(db.session, "institution", county.id)
    return render_template(
        "org/county.html",
        county=county,
        institutions=institutions,
        counts=counts,
        team_counts=team_counts,
        labels=label_names(db.session),
        manage=_manages(),
        changes=_history("county", county.id),
        former=former_names(db.session, "county", county.id),
    )


@bp.route("/institutions/<int:institution_id>")
@login_required
@roles_required(*MANAGERS)
def institution(institution_id: int):
    inst = _unit("institution", institution_id)
    teams = sorted(inst.teams, key=lambda t: (not t.active, t.name))
    counts = roster_counts(db.session, "team", inst.id)
    return render_template(
        "org/institution.html",
        inst=inst,
        teams=teams,
        counts=counts,
        labels=label_names(db.session),
        manage=_manages(),
        changes=_history("institution", inst.id),
        former=former_names(db.session, "institution", inst.id),
    )


@bp.route("/teams/<int:team_id>")
@login_required
@roles_required(*MANAGERS)
def team(team_id: int):
    team = _unit("team", team_id)
    q = (request.args.get("q") or "").strip()[:50]
    stmt = select(Resident).where(Resident.team_id == team.id).order_by(Resident.active.desc(), Resident.name, Resident.id)
    refused = False
    if q:
        # a phone is searched by its last four digits only: a longer suffix would let a
        # search reveal the masked middle digits one by one; each is limited and logged
        by_phone = None
        if len(q) == 4 and q.isascii() and q.isdigit():
            limit = current_app.config["CASE_SEARCH_MAX_PER_10_MIN"]
            with transaction(db.session):
                refused = check_and_record(db.session, current_user, q, target=f"team:{team.id}", now=utcnow(),
                                           limit=limit)
            if refused:
                flash(LIMIT_MESSAGE.format(limit=limit), "error")
            else:
                by_phone = Resident.phone.endswith(q)
        by_name = Resident.name.contains(q, autoescape=True)
        stmt = stmt.where(or_(by_name, by_phone) if by_phone is not None else by_name)
    page = db.paginate(stmt, per_page=50, error_out=False)
    merged_into = db.session.get(Team, team.merged_into_id) if team.merged_into_id else None
    return render_template(
        "org/team.html",
        team=team,
        page=page,
        q=q,
        manage=_manages(),
        merged_into=merged_into,
        changes=_history("team", team.id),
        former=former_names(db.session, "team", team.id),
    ), 429 if refused else 200


# ---------------------------------------------------------------------------
# Create and edit
# ---------------------------------------------------------------------------


def _form_page(form, *, title: str, crumbs, cancel: str, submit: str, status: int = 200):
    return render_template("org/unit_form.html", form=form, title=title, crumbs=crumbs, cancel=cancel,
                           submit=submit), status


def _save(form, work, *, page: dict, done: str):
    """Run ``work`` (a service call returning the unit to show) in one write transaction:
    commit and go to the unit, or show the form again with the refusal."""
    try:
        with transaction(db.session, write=True):
            kind, unit = work()
    except OrgError as exc:
        flash(str(exc), "error")
        return _form_page(form, status=400, **page)
    except IntegrityError:  # a unique name or code taken meanwhile by another request
        flash(TAKEN, "error")
        return _form_page(form, status=400, **page)
    flash(done.format(name=unit.name), "success")
    return redirect(_unit_url(kind, unit))


@bp.route("/counties/new", methods=["GET", "POST"])
@login_required
@roles_required("admin")
def county_new():
    form = CountyForm()
    page = {"title": "新建县区", "crumbs": [("县市区", url_for("org.counties"))], "cancel": url_for("org.counties"),
            "submit": "新建县区"}
    if not form.validate_on_submit():
        return _form_page(form, status=400 if request.method == "POST" else 200, **page)
    return _save(form, lambda: ("county", create_county(db.session, form.name.data, form.code.data, actor=_actor())),
                 page=page, done="已新建县区“{name}”。")


@bp.route("/counties/<int:county_id>/edit", methods=["GET", "POST"])
@login_required
@roles_required("admin")
def county_edit(county_id: int):
    county = _unit("county", county_id)
    form = CountyEditForm(obj=county)
    page = {"title": f"编辑县区 · {county.name}", "crumbs": _crumbs("county", county),
            "cancel": _unit_url("county", county), "submit": "保存"}
    if not form.validate_on_submit():
        return _form_page(form, status=400 if request.method == "POST" else 200, **page)

    def work():
        unit = _unit("county", county_id, lock=True)
        edit_county(db.session, unit, name=form.name.data, code=form.code.data, actor=_actor(), reason=form.reason.data)
        return "county", unit

    return _save(form, work, page=page, done="已保存县区“{name}”。")


@bp.route("/counties/<int:county_id>/institutions/new", methods=["GET", "POST"])
@login_required
@roles_required(*MANAGERS)
def institution_new(county_id: int):
    county = _unit("county", county_id)
    form = InstitutionForm()
    page = {"title": f"新建机构 · {county.name}", "crumbs": _crumbs("county", county),
            "cancel": _unit_url("county", county), "submit": "新建机构"}
    if not form.validate_on_submit():
        return _form_page(form, status=400 if request.method == "POST" else 200, **page)

    def work():
        unit = _unit("county", county_id, lock=True)
        return "institution", create_institution(db.session, unit, name=form.name.data, code=form.code.data,
                                                 type=form.type.data, actor=_actor())

    return _save(form, work, page=page, done="已新建机构“{name}”。")


@bp.route("/institutions/<int:institution_id>/edit", methods=["GET", "POST"])
@login_required
@roles_required(*MANAGERS)
def institution_edit(institution_id: int):
    inst = _unit("institution", institution_id)
    form = InstitutionEditForm(obj=inst)
    page = {"title": f"编辑机构 · {inst.name}", "crumbs": _crumbs("institution", inst),
            "cancel": _unit_url("institution", inst), "submit": "保存"}
    if not form.validate_on_submit():
        return _form_page(form, status=400 if request.method == "POST" else 200, **page)

    def work():
        unit = _unit("institution", institution_id, lock=True)
        edit_institution(db.session, unit, name=form.name.data, code=form.code.data, type=form.type.data,
                         actor=_actor(), reason=form.reason.data)
        return "institution", unit

    return _save(form, work, page=page, done="已保存机构“{name}”。")


@bp.route("/institutions/<int:institution_id>/teams/new", methods=["GET", "POST"])
@login_required
@roles_required(*MANAGERS)
def team_new(institution_id: int):
    inst = _unit("institution", institution_id)
    form = TeamForm()
    page = {"title": f"新建团队 · {inst.name}", "crumbs": _crumbs("institution", inst),
            "cancel": _unit_url("institution", inst), "submit": "新建团队"}
    if not form.validate_on_submit():
        return _form_page(form, status=400 if request.method == "POST" else 200, **page)

    def work():
        unit = _unit("institution", institution_id, lock=True)
        return "team", create_team(db.session, unit, name=form.name.data, leader_doctor=form.leader_doctor.data,
                                   doctor_phone=form.doctor_phone.data, actor=_actor())

    return _save(form, work, page=page, done="已新建团队“{name}”。")


@bp.route("/teams/<int:team_id>/edit", methods=["GET", "POST"])
@login_required
@roles_required(*MANAGERS)
def team_edit(team_id: int):
    team = _unit("team", team_id)
    form = TeamEditForm(obj=team)
    page = {"title": f"编辑团队 · {team.name}", "crumbs": _crumbs("team", team),
            "cancel": _unit_url("team", team), "submit": "保存"}
    if not form.validate_on_submit():
        return _form_page(form, status=400 if request.method == "POST" else 200, **page)

    def work():
        unit = _unit("team", team_id, lock=True)
        edit_team(db.session, unit, name=form.name.data, leader_doctor=form.leader_doctor.data,
                  doctor_phone=form.doctor_phone.data, actor=_actor(), reason=form.reason.data)
        return "team", unit

    return _save(form, work, page=page, done="已保存团队“{name}”。")


# ---------------------------------------------------------------------------
# Deactivate, reactivate
# ---------------------------------------------------------------------------


def _active_residents(kind: str, unit) -> int:
    if kind == "county":
        counts = roster_counts(db.session, "county").get(unit.id)
    elif kind == "institution":
        counts = roster_counts(db.session, "institution", unit.county_id).get(unit.id)
    else:
        counts = roster_counts(db.session, "team", unit.institution_id).get(unit.id)
    return counts.active if counts else 0


@bp.route("/<any(counties, institutions, teams):kinds>/<int:unit_id>/<any(deactivate, reactivate):action>",
          methods=["GET", "POST"])
@login_required
@roles_required(*MANAGERS)
def set_status(kinds: str, unit_id: int, action: str):
    kind = PLURAL[kinds]
    if kind == "county" and not current_user.is_admin:
        abort(403)  # a county is switched on and off by the city
    unit = _unit(kind, unit_id)
    active = action == "reactivate"
    form = ReasonForm()
    here = _unit_url(kind, unit)
    label = KIND_LABELS[kind]
    context = {"form": form, "kind": kind, "unit": unit, "label": label, "action": action,
               "crumbs": _crumbs(kind, unit), "cancel": here, "residents": _active_residents(kind, unit)}
    if not form.validate_on_submit():
        return render_template("org/status.html", **context), 400 if request.method == "POST" else 200
    try:
        with transaction(db.session, write=True):
            unit = _unit(kind, unit_id, lock=True)
            changed = set_active(db.session, kind, unit, active, reason=form.reason.data, actor=_actor())
    except OrgError as exc:
        return _refused("org/status.html", str(exc), **context)
    if not changed:  # a second click, a stale tab: it already was
        flash(f"{label}“{unit.name}”已经{'启用' if active else '停用'}，没有重复操作。", "info")
    elif active:
        flash(f"已启用{label}“{unit.name}”。", "success")
    else:
        flash(f"已停用{label}“{unit.name}”：从下一次抽样起不再抽取其居民，以往各月结果不变。", "success")
    return redirect(here)


# ---------------------------------------------------------------------------
# Move a team, merge a team into another
# ---------------------------------------------------------------------------


def _move_targets(team: Team) -> list[Institution]:
    return db.session.scalars(
        select(Institution)
        .where(Institution.county_id == team.institution.county_id, Institution.active.is_(True),
               Institution.id != team.institution_id)
        .order_by(Institution.name)
    ).all()


def _merge_targets(team: Team) -> list[Team]:
    return db.session.scalars(
        select(Team)
        .join(Institution, Institution.id == Team.institution_id)
        .where(Institution.county_id == team.institution.county_id, Institution.active.is_(True),
               Team.active.is_(True), Team.id != team.id)
        .order_by(Institution.name, Team.name)
    ).all()


def _chosen(targets: list, value: str | None):
    value = (value or "").strip()
    return next((t for t in targets if str(t.id) == value), None)


@bp.route("/teams/<int:team_id>/move", methods=["GET", "POST"])
@login_required
@roles_required(*MANAGERS)
def team_move(team_id: int):
    """GET: choose the institution (?to=id), then the confirmation; POST: move."""
    team = _unit("team", team_id)
    targets = _move_targets(team)
    form = MoveForm()
    chosen = _chosen(targets, form.target.data if request.method == "POST" else request.args.get("to"))
    context = {"form": form, "team": team, "targets": targets, "chosen": chosen, "crumbs": _crumbs("team", team),
               "residents": team_residents(db.session, team.id), "cancel": _unit_url("team", team)}
    if request.method == "GET":
        if request.args.get("to") and chosen is None:
            flash("请从列表中选择本县区一家在用的机构。", "error")
        return render_template("org/move.html", **context)
    if not form.validate_on_submit():
        return render_template("org/move.html", **context), 400
    if chosen is None:
        if team.institution_id == _int(form.target.data):
            flash(f"团队“{team.name}”已属于该机构，没有重复操作。", "info")
            return redirect(_unit_url("team", team))
        return _refused("org/move.html", "请从列表中选择本县区一家在用的机构。", **context)
    try:
        with transaction(db.session, write=True):
            team = _unit("team", team_id, lock=True)
            source = team.institution.name
            already = team.institution_id == chosen.id
            if not already:
                # FOR SHARE: the receiving institution cannot be deactivated while the team moves in
                target = db.session.get(Institution, chosen.id, with_for_update={"read": True}, populate_existing=True)
                move_team(db.session, team, target, reason=form.reason.data, actor=_actor())
    except OrgError as exc:
        return _refused("org/move.html", str(exc), **context)
    except IntegrityError:
        return _refused("org/move.html", f"“{chosen.name}”已有同名团队。", **context)
    if already:
        flash(f"团队“{team.name}”已属于“{chosen.name}”，没有重复操作。", "info")
        return redirect(_unit_url("team", team))
    flash(f"已把团队“{team.name}”从“{source}”调整到“{team.institution.name}”。", "success")
    return redirect(_unit_url("team", team))


@bp.route("/teams/<int:team_id>/merge", methods=["GET", "POST"])
@login_required
@roles_required(*MANAGERS)
def team_merge(team_id: int):
    """GET: choose the surviving team (?into=id), then the confirmation; POST: merge."""
    team = _unit("team", team_id)
    targets = _merge_targets(team)
    form = MergeForm()
    chosen = _chosen(targets, form.target.data if request.method == "POST" else request.args.get("into"))
    context = {"form": form, "team": team, "targets": targets, "chosen": chosen, "crumbs": _crumbs("team", team),
               "residents": team_residents(db.session, team.id), "cancel": _unit_url("team", team)}
    if request.method == "GET":
        if request.args.get("into") and chosen is None:
            flash("请从列表中选择本县区一个在用的团队。", "error")
        return render_template("org/merge.html", **context)
    if not form.validate_on_submit():
        return render_template("org/merge.html", **context), 400
    if not team.active:  # merged (or deactivated) already: a second click, a stale tab
        flash(f"团队“{team.name}”已停用或已合并，没有重复操作。", "info")
        return redirect(_unit_url("team", team))
    if chosen is None:
        return _refused("org/merge.html", "请从列表中选择本县区一个在用的团队。", **context)
    try:
        with transaction(db.session, write=True):
            # both rows, in id order (two merges in opposite directions must not deadlock)
            locked = {t.id: t for t in db.session.scalars(
                select(Team).where(Team.id.in_((team_id, chosen.id))).order_by(Team.id)
                .with_for_update().execution_options(populate_existing=True)
            )}
            absorbed, survivor = locked[team_id], locked[chosen.id]
            was_active = absorbed.active
            moved = merge_teams(db.session, absorbed, survivor, reason=form.reason.data, actor=_actor())
    except OrgError as exc:
        if not was_active:
            flash(f"{exc}没有重复操作。", "info")
            return redirect(_unit_url("team", team))
        return _refused("org/merge.html", str(exc), **context)
    flash(f"已把团队“{absorbed.name}”并入“{survivor.name}”，转入居民 {moved} 名；“{absorbed.name}”已停用。", "success")
    return redirect(_unit_url("team", survivor))


def _int(value) -> int | None:
    return as_id(value)


# ---------------------------------------------------------------------------
# Organisation import: upload → preview (nothing written) → confirm once → result
# ---------------------------------------------------------------------------

TOKEN = re.compile(r"^[0-9a-f]{32}$")
PREVIEW_ROWS = 200
TEMPLATE_EXAMPLE = ["岳阳县", "430621", "荣家湾镇卫生院", "I430621001", "乡镇卫生院", "张伟家庭医生团队", "张伟", "13800138000"]


def _uploads() -> Path:
    return Path(current_app.config["UPLOAD_DIR"])


def _reports_dir() -> Path:
    return Path(current_app.config["IMPORT_REPORTS_DIR"])


def _state_path(token: str) -> Path:
    if not TOKEN.match(token or ""):
        abort(404)
    return _uploads() / f"org-{token}.json"


def _source(token: str, state: dict) -> Path:
    return _uploads() / f"org-{token}{state['suffix']}"


def _load_state(token: str) -> dict:
    """One of this administrator's uploads; anything else is 404."""
    try:
        state = json.loads(_state_path(token).read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        abort(404)
    if state.get("actor_id") != current_user.id or state.get("suffix") not in SUPPORTED_SUFFIXES:
        abort(404)
    return state


def _save_state(token: str, state: dict) -> None:
    target = _state_path(token)
    tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(state, ensure_ascii=False), "utf-8")
    os.replace(tmp, target)


def _outcome(result) -> dict:
    return {
        "summary": result.summary_zh(),
        "read": result.read,
        "rejected": result.rejected,
        "created": result.created,
        "updated": result.updated,
        "rejections": [{"sheet": r.sheet, "row": r.row, "column": r.column, "value": scrub_ids(r.value),
                        "reason": r.reason} for r in result.rejections[:PREVIEW_ROWS]],
        "error_report": result.error_report.stem if result.error_report else None,
    }


@bp.route("/import", methods=["GET", "POST"])
@login_required
@roles_required("admin")
def org_import():
    form = OrgUploadForm()
    if not form.validate_on_submit():
        return render_template("org/import.html", form=form, sheet=ORG_SHEET), 400 if request.method == "POST" else 200
    upload = form.file.data
    filename = Path(upload.filename or "机构与团队").name[:200]
    suffix = Path(filename).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        flash("只支持 .xlsx、.xls、.csv 文件。", "error")
        return render_template("org/import.html", form=form, sheet=ORG_SHEET), 400
    token = uuid.uuid4().hex
    path = _uploads() / f"org-{token}{suffix}"
    save_private(upload.stream, path)
    try:
        with transaction(db.session, commit=False):  # a preview writes nothing
            result = import_organisation(db.session, path, actor=_actor(), reports_dir=_reports_dir(),
                                             limits=ReadLimits.from_config(current_app.config))
    except OrgImportFailed as exc:
        path.unlink(missing_ok=True)
        flash(f"文件无法导入：{exc}", "error")
        return render_template("org/import.html", form=form, sheet=ORG_SHEET), 400
    _save_state(token, {"status": "preview", "filename": filename, "suffix": suffix, "actor_id": current_user.id,
                        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                        "uploaded_at": utcnow().isoformat(timespec="seconds"), "preview": _outcome(result)})
    return redirect(url_for("org.org_import_view", token=token))


@bp.route("/import/template.xlsx")
@login_required
@roles_required("admin")
def org_import_template():
    frame = pd.DataFrame([TEMPLATE_EXAMPLE], columns=[ORG_SHEET.labels[f] for f in ORG_SHEET.aliases])
    with tempfile.TemporaryDirectory() as folder:
        path = write_xlsx(Path(folder) / "template.xlsx", {"机构与团队": frame},
                          {"机构": 24, "团队": 24, "机构类型": 16, "机构代码": 14, "联系电话": 16})
        data = path.read_bytes()
    return send_file(io.BytesIO(data), as_attachment=True, download_name="机构与团队导入模板.xlsx",
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@bp.route("/import/<token>")
@login_required
@roles_required("admin")
def org_import_view(token: str):
    state = _load_state(token)
    confirmed_at = datetime.fromisoformat(state["confirmed_at"]) if state.get("confirmed_at") else None
    return render_template("org/import_preview.html", state=state, token=token, confirm_form=ConfirmForm(),
                           outcome=state.get("result") or state["preview"], preview_rows=PREVIEW_ROWS,
                           confirmed_at=confirmed_at)


@bp.route("/import/<token>/confirm", methods=["POST"])
@login_required
@roles_required("admin")
def org_import_confirm(token: str):
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    state = _load_state(token)
    here = url_for("org.org_import_view", token=token)
    source = _source(token, state)
    claimed = source.with_name(f"org-{token}-importing{state['suffix']}")  # the reader goes by the suffix
    try:
        # the file is claimed by renaming it: only one confirmation can, however many arrive
        os.replace(source, claimed)
    except FileNotFoundError:
        if state["status"] == "done" or claimed.exists():
            flash("这份文件已经确认导入过，没有重复导入。", "info")
            return redirect(here)
        flash("预览时上传的文件已不存在，请重新上传。", "error")
        return redirect(url_for("org.org_import"))
    try:
        with transaction(db.session, write=True):
            result = import_organisation(db.session, claimed, actor=_actor(), reports_dir=_reports_dir(),
                                             limits=ReadLimits.from_config(current_app.config))
    except (OrgImportFailed, IntegrityError) as exc:
        os.replace(claimed, source)  # nothing written: the preview can be confirmed again
        message = str(exc) if isinstance(exc, OrgImportFailed) else "有机构或团队刚被他人修改，请重新上传预览。"
        flash(f"导入失败，数据库未作更改：{message}", "error")
        return redirect(here)
    except BaseException:
        os.replace(claimed, source)
        raise
    state.update(status="done", result=_outcome(result), confirmed_at=utcnow().isoformat(timespec="seconds"))
    _save_state(token, state)
    claimed.unlink(missing_ok=True)
    flash("导入完成：" + result.summary_zh(), "success")
    return redirect(here)


@bp.route("/import/<token>/report.<fmt>")
@login_required
@roles_required("admin")
def org_import_report(token: str, fmt: str):
    state = _load_state(token)
    stem = (state.get("result") or state["preview"]).get("error_report")
    if fmt not in ("xlsx", "csv") or not stem:
        abort(404)
    reports = _reports_dir().resolve()
    path = (reports / f"{stem}.{fmt}").resolve()
    # only a report written into IMPORT_REPORTS_DIR by this import, whatever the state file says
    if path.parent != reports or path.name != f"{stem}.{fmt}" or not path.is_file():
        abort(404)
    with transaction(db.session):
        audit(db.session, "export.import_errors", current_user, target=f"org_import:{token[:12]} {state['filename']}",
              detail=path.name)
    return send_file(path, as_attachment=True, download_name=f"机构与团队导入错误报告.{fmt}")
