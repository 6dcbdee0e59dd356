"""Helpers for draw tests: residents straight into the database, a pinned clock."""
from __future__ import annotations

import itertools
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select

from app.draws.services import DrawSettings
from app.extensions import db
from app.models import Case, PopulationLabel, Resident, Round, Team, resident_labels

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=TZ)
MONTH = "2026-11"
SETTINGS = DrawSettings()
_serial = itertools.count(1)


def add_residents(team: Team, count: int, labels: tuple[str, ...] = (), **overrides) -> list[int]:
    """``count`` eligible residents of ``team`` (unless overrides say otherwise); returns ids."""
    rows = []
    for _ in range(count):
        n = next(_serial)
        row = {
            "id_hash": f"{n:032x}",
            "id_masked": "*" * 14 + f"{n % 10000:04d}",
            "name": f"居民{n}",
            "sex": "M" if n % 2 else "F",
            "birth_date": date(1950 + n % 50, 1 + n % 12, 1 + n % 28),
            "phone": f"138{n:08d}",
            "team_id": team.id,
            "contract_start": date(2026, 1, 1),
            "contract_end": date(2026, 12, 31),
            "active": True,
            "do_not_call": False,
        }
        row.update(overrides)
        rows.append(row)
    ids = list(db.session.scalars(insert(Resident).returning(Resident.id), rows))
    if labels:
        label_ids = []
        for code in labels:
            label = db.session.scalar(select(PopulationLabel).where(PopulationLabel.code == code))
            if label is None:
                label = PopulationLabel(code=code, name={"general": "一般人群", "hypertension": "高血压",
                                                         "elderly": "65岁及以上老年人"}.get(code, code))
                db.session.add(label)
                db.session.flush()
            label_ids.append(label.id)
        db.session.execute(insert(resident_labels), [{"resident_id": r, "label_id": lid} for r in ids for lid in label_ids])
    db.session.commit()  # not flush: the boundaries tested next refuse uncommitted writes
    return ids


def past_round(county, month: str, completed: list[int], team: Team) -> Round:
    """A closed round of an earlier month in which ``completed`` residents finished an interview."""
    round_ = Round(
        county_id=county.id, month=month, status="closed", algorithm="lottery-v1", county_code=county.code,
        salt="x", seed="0" * 16, draw_date=date(int(month[:4]), int(month[5:]), 1), sample_size=10, backup_size=10,
        exclusion_months=6, questionnaire_version="v1", eligible_count=0, eligible_hash="", institutions=0,
        primaries=0, backups=0, shortfall_institutions=0, triggered_by="test",
    )
    db.session.add(round_)
    db.session.flush()
    for position, rid in enumerate(completed, start=1):
        res = db.session.get(Resident, rid)
        db.session.add(Case(
            round_id=round_.id, institution_id=team.institution_id, team_id=team.id, resident_id=rid,
            kind="primary", position=position, status="done", outcome="complete", name=res.name, sex=res.sex,
            age=50, phone=res.phone, institution_name="x", team_name=team.name,
            population_labels="", contract_start=res.contract_start, contract_end=res.contract_end,
        ))
    db.session.commit()  # not flush: the boundaries tested next refuse uncommitted writes
    return round_
