"""The month-end close: each open round of a past month is closed once, its open interviews
ended with what was asked and its figures frozen."""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.calls.interview import finalize_open_interviews
from app.core import locks
from app.core.clock import utc_naive
from app.core.populations import Vocabulary
from app.models import audit, OUTCOME_OPEN_AT_CLOSE, Case, Round


def close_round(
    session: Session, round_id: int, *, now: datetime, actor: str, questionnaires: dict, vocabulary: Vocabulary
) -> bool:
    """Close one round: cases still queued get the closing disposition, unused backups stay
    in reserve, the month's figures are frozen in the round's summary. Begins the
    transaction holding the round's close lock; the boundary commits. Returns False when it
    was closed already."""
    locks.begin_locked(session, locks.CLOSE, round_id)
    round_ = session.scalar(select(Round).where(Round.id == round_id).with_for_update())
    if round_ is None or round_.status == "closed":
        return False
    stamp = utc_naive(now)
    # interviews left open end with what was asked (partial or break-off); a case dialled
    # keeps the disposition of its attempts, one never dialled is "open at close"
    finalize_open_interviews(session, round_id, now, questionnaires, vocabulary)
    session.execute(
        update(Case)
        .where(Case.round_id == round_id, Case.status == "queued", Case.attempt_count == 0)
        .values(outcome=OUTCOME_OPEN_AT_CLOSE)
    )
    session.execute(
        update(Case)
        .where(Case.round_id == round_id, Case.status == "queued")
        .values(status="closed", closed_at=stamp, leased_by_id=None, lease_expires_at=None)
    )
    figures = defaultdict(lambda: defaultdict(int))
    for inst, kind, status, outcome, count in session.execute(
        select(Case.institution_name, Case.kind, Case.status, Case.outcome, func.count())
        .where(Case.round_id == round_id)
        .group_by(Case.institution_name, Case.kind, Case.status, Case.outcome)
    ):
        figures[inst][f"{kind}:{status}:{outcome or '-'}"] += count
    round_.summary = json.dumps({k: dict(v) for k, v in sorted(figures.items())}, ensure_ascii=False)
    round_.status = "closed"
    round_.closed_at = stamp
    round_.closed_by = actor
    audit(session, "close_round", actor, target=f"{round_.county.name} {round_.month}", detail={"round_id": round_id},
          county_id=round_.county_id)
    session.flush()
    return True


def rounds_to_close(session: Session, month_closed_before: str) -> list[int]:
    """Open rounds of months before ``month_closed_before``."""
    return list(
        session.scalars(
            select(Round.id).where(Round.status == "open", Round.month < month_closed_before).order_by(Round.month, Round.id)
        )
    )
