"""The month's progress per institution and county, for the supervisors' board."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Attempt, Case, Round, RoundInstitution


@dataclass
class Progress:
    name: str
    target: int = 0  # interviews wanted: the sample size per institution
    drawn: int = 0  # primaries drawn (less than the target when the roster fell short)
    completed: int = 0
    in_progress: int = 0  # dialled at least once, not ended
    untouched: int = 0  # active, never dialled
    remaining: int = 0  # target minus completed
    attempts: int = 0
    callbacks: int = 0  # callbacks pending
    replacements: int = 0  # backups activated
    no_backup: int = 0  # ended cases that needed a backup when none was left
    shortfall: int = 0  # draw shortfall plus replacements that found no backup
    ended: int = 0  # ended without an interview

    def add(self, other: Progress) -> None:
        for f in fields(self):
            if f.name != "name":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class RoundProgress:
    round: Round
    total: Progress
    institutions: list[Progress] = field(default_factory=list)


def board_rows(session: Session, round_ids: list[int], now: datetime) -> list[RoundProgress]:
    if not round_ids:
        return []
    per: dict[tuple[int, int], Progress] = {}
    for unit in session.scalars(select(RoundInstitution).where(RoundInstitution.round_id.in_(round_ids))):
        round_ = session.get(Round, unit.round_id)
        per[(unit.round_id, unit.institution_id)] = Progress(
            unit.institution_name, target=round_.sample_size, drawn=unit.primaries, shortfall=unit.shortfall
        )
    counts = session.execute(
        select(
            Case.round_id,
            Case.institution_id,
            func.count().filter(Case.outcome == "complete"),
            func.count().filter(Case.status == "queued", Case.attempt_count > 0),
            func.count().filter(Case.status == "queued", Case.attempt_count == 0),
            func.count().filter(Case.status == "queued", Case.callback_at.is_not(None)),
            func.count().filter(Case.replaces_case_id.is_not(None)),
            func.count().filter(Case.replacement_state == "none_left"),
            func.count().filter(Case.status.in_(("done", "closed")), Case.outcome != "complete"),
        )
        .where(Case.round_id.in_(round_ids))
        .group_by(Case.round_id, Case.institution_id)
    )
    for round_id, inst, completed, active, untouched, callbacks, replacements, none_left, ended in counts:
        row = per.get((round_id, inst))
        if row is None:
            continue
        row.completed, row.in_progress, row.untouched = completed, active, untouched
        row.callbacks, row.replacements, row.no_backup, row.ended = callbacks, replacements, none_left, ended
        row.shortfall += none_left
    for round_id, inst, attempts in session.execute(
        select(Attempt.round_id, Case.institution_id, func.count())
        .join(Case, Case.id == Attempt.case_id)
        .where(Attempt.round_id.in_(round_ids))
        .group_by(Attempt.round_id, Case.institution_id)
    ):
        if (round_id, inst) in per:
            per[(round_id, inst)].attempts = attempts
    grouped: dict[int, list[Progress]] = defaultdict(list)
    for (round_id, _inst), row in per.items():
        row.remaining = max(row.target - row.completed, 0)
        grouped[round_id].append(row)
    result = []
    for round_id in round_ids:
        rows = sorted(grouped.get(round_id, []), key=lambda r: r.name)
        total = Progress("合计")
        for row in rows:
            total.add(row)
        result.append(RoundProgress(session.get(Round, round_id), total, rows))
    return result
