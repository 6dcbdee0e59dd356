"""Hand-built survey results for report tests: completed interviews with chosen answers,
straight into the database (no calling), so a test can work out the expected figures."""
from __future__ import annotations

import json
from datetime import date, datetime

from sqlalchemy import select

from app.extensions import db
from app.models import Attempt, Case, Institution, Resident, Response, Round, RoundInstitution, Team, User
from tests.draws_support import add_residents

DEFAULTS = {
    "aware": True, "knows_doctor": True, "service_count": 2, "expected_services": 1, "effect": 4,
    "satisfaction": 5, "renew": True, "renew_answered": True, "flags": None, "proxy": False,
    "wants_contact": False, "services": "follow_up",
}


def round_for(county, month: str, status: str = "closed") -> Round:
    round_ = db.session.scalar(select(Round).where(Round.county_id == county.id, Round.month == month))
    if round_ is None:
        round_ = Round(county_id=county.id, month=month, status=status, algorithm="lottery-v1",
                       county_code=county.code, salt="t", seed="0" * 16, draw_date=date(int(month[:4]), int(month[5:]), 1),
                       sample_size=10, backup_size=0, exclusion_months=6, questionnaire_version="v1",
                       eligible_count=0, eligible_hash="", institutions=0, primaries=0, backups=0,
                       shortfall_institutions=0, triggered_by="test")
        db.session.add(round_)
        db.session.flush()
    return round_


def add_results(county, team: Team, month: str, answers: list[dict], *, caller: User | None = None,
                outcomes: list[str] | None = None, status: str = "closed") -> Round:
    """One completed interview per dict in ``answers`` (keys as Response's derived columns,
    missing ones from DEFAULTS), plus one ended case per code in ``outcomes`` (no interview),
    all in ``team`` in the county's round of ``month``."""
    round_ = round_for(county, month, status)
    unit = db.session.scalar(select(RoundInstitution).where(RoundInstitution.round_id == round_.id,
                                                            RoundInstitution.institution_id == team.institution_id))
    total = len(answers) + len(outcomes or [])
    institution = db.session.get(Institution, team.institution_id)
    if unit is None:
        unit = RoundInstitution(round_id=round_.id, institution_id=team.institution_id, institution_name=institution.name, teams=1,
                                eligible_count=total, eligible_hash="", eligible_data=b"", primaries=0, backups=0,
                                shortfall=0)
        db.session.add(unit)
    unit.primaries += total
    if caller is None:
        caller = db.session.scalar(select(User).where(User.username == "report-caller"))
        if caller is None:
            caller = User(username="report-caller", role="caller", county_id=county.id)
            caller.set_password("x" * 12)
            db.session.add(caller)
            db.session.flush()
    resident_ids = add_residents(team, total)
    position = db.session.scalar(select(db.func.count()).select_from(Case).where(
        Case.round_id == round_.id, Case.institution_id == team.institution_id)) or 0
    stamp = datetime(int(month[:4]), int(month[5:]), 10, 2, 0)
    plan = [("complete", a) for a in answers] + [(code, None) for code in (outcomes or [])]
    for (outcome, values), rid in zip(plan, resident_ids):
        position += 1
        resident = db.session.get(Resident, rid)
        case = Case(round_id=round_.id, institution_id=team.institution_id, team_id=team.id, resident_id=rid,
                    kind="primary", position=position, status="done", outcome=outcome, attempt_count=1,
                    last_outcome=outcome, first_attempt_at=stamp, last_attempt_at=stamp, name=resident.name,
                    sex=resident.sex, age=60, phone=resident.phone,
                    institution_name=institution.name, team_name=team.name, population_labels="高血压", key_population=True,
                    contract_start=resident.contract_start, contract_end=resident.contract_end)
        db.session.add(case)
        db.session.flush()
        attempt = Attempt(case_id=case.id, round_id=round_.id, number=1, caller_id=caller.id, started_at=stamp,
                          ended_at=stamp, outcome=outcome, connected=values is not None)
        db.session.add(attempt)
        db.session.flush()
        if values is not None:
            row = {**DEFAULTS, **values}
            db.session.add(Response(attempt_id=attempt.id, case_id=case.id, round_id=round_.id, caller_id=caller.id,
                                    questionnaire_version="v1", status="complete", answers=json.dumps({}),
                                    started_at=stamp, updated_at=stamp, completed_at=stamp, **row))
    round_.primaries = (round_.primaries or 0) + total
    db.session.commit()  # not flush: the boundaries tested next refuse uncommitted writes
    return round_
