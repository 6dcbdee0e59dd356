"""Resident counts and key-population breakdown per unit, in two aggregate queries."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.models import Institution, PopulationLabel, Resident, Team, resident_labels


@dataclass
class UnitCounts:
    active: int = 0
    inactive: int = 0
    do_not_call: int = 0
    by_label: dict[str, int] = field(default_factory=dict)


def _group_column(level: str):
    return {"county": Institution.county_id, "institution": Team.institution_id, "team": Resident.team_id}[level]


def _parent_filter(level: str, parent_id: int | None):
    if parent_id is None:
        return None
    return {"institution": Institution.county_id, "team": Team.institution_id}[level] == parent_id


def roster_counts(session: Session, level: str, parent_id: int | None = None) -> dict[int, UnitCounts]:
    """Counts per county / institution / team (optionally within one parent unit)."""
    group = _group_column(level)
    where = _parent_filter(level, parent_id)

    base = select(group, Resident.active, func.count(), func.sum(case((Resident.do_not_call.is_(True), 1), else_=0)))
    base = base.select_from(Resident).join(Team, Team.id == Resident.team_id).join(Institution, Institution.id == Team.institution_id)
    if where is not None:
        base = base.where(where)
    counts: dict[int, UnitCounts] = defaultdict(UnitCounts)
    for unit_id, active, n, dnc in session.execute(base.group_by(group, Resident.active)):
        entry = counts[unit_id]
        if active:
            entry.active += n
            entry.do_not_call += int(dnc or 0)
        else:
            entry.inactive += n

    labels = (
        select(group, PopulationLabel.name, func.count())
        .select_from(resident_labels)
        .join(Resident, Resident.id == resident_labels.c.resident_id)
        .join(PopulationLabel, PopulationLabel.id == resident_labels.c.label_id)
        .join(Team, Team.id == Resident.team_id)
        .join(Institution, Institution.id == Team.institution_id)
        .where(Resident.active.is_(True))
    )
    if where is not None:
        labels = labels.where(where)
    for unit_id, label, n in session.execute(labels.group_by(group, PopulationLabel.name)):
        counts[unit_id].by_label[label] = n
    return counts


def label_names(session: Session) -> list[str]:
    return list(session.scalars(select(PopulationLabel.name).order_by(PopulationLabel.id)))
