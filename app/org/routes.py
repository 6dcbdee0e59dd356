from flask import abort, render_template, request
from flask_login import current_user, login_required
from sqlalchemy import func, or_, select

from app.auth.scope import county_filter, require_county
from app.extensions import db
from app.models import County, Institution, Resident, Team
from app.org import bp
from app.org.services import label_names, roster_counts


@bp.route("/")
@login_required
def counties():
    stmt = county_filter(current_user, select(County).order_by(County.code), County.id)
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
def county(county_id: int):
    county = require_county(current_user, db.session.get(County, county_id))
    institutions = db.session.scalars(
        select(Institution).where(Institution.county_id == county.id).order_by(Institution.name)
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
    )


@bp.route("/institutions/<int:institution_id>")
@login_required
def institution(institution_id: int):
    inst = db.session.get(Institution, institution_id) or abort(404)
    require_county(current_user, inst.county)
    counts = roster_counts(db.session, "team", inst.id)
    return render_template(
        "org/institution.html", inst=inst, teams=inst.teams, counts=counts, labels=label_names(db.session)
    )


@bp.route("/teams/<int:team_id>")
@login_required
def team(team_id: int):
    team = db.session.get(Team, team_id) or abort(404)
    require_county(current_user, team.institution.county)
    q = (request.args.get("q") or "").strip()[:50]
    stmt = select(Resident).where(Resident.team_id == team.id).order_by(Resident.active.desc(), Resident.name, Resident.id)
    if q:
        # a phone is searched by its last four digits only: a longer suffix would let a
        # search reveal the masked middle digits one by one
        by_phone = Resident.phone.endswith(q) if len(q) == 4 and q.isdigit() else None
        by_name = Resident.name.contains(q, autoescape=True)
        stmt = stmt.where(or_(by_name, by_phone) if by_phone is not None else by_name)
    page = db.paginate(stmt, per_page=50, error_out=False)
    return render_template("org/team.html", team=team, page=page, q=q)
