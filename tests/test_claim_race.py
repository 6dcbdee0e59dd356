"""Two callers can never hold the same case: many threads claim at once, each finishing the
case it got before claiming the next. Every case must be handed out exactly once. On
PostgreSQL the claim picks a row with FOR UPDATE SKIP LOCKED and takes it with a conditional
UPDATE; on SQLite BEGIN IMMEDIATE serialises the claims."""
from __future__ import annotations

import threading
import traceback
from collections import Counter
from datetime import date

import pytest
from sqlalchemy import func, insert, select

from app.calls.attempts import record_attempt
from app.calls.queue import claim_next
from app.extensions import db
from app.models import Attempt, Case, Round, RoundInstitution, User
from tests.calls_support import CALLS, at, committed
from tests.draws_support import MONTH, add_residents

pytestmark = pytest.mark.slow


def _round_with_cases(county, team, count: int) -> int:
    resident_ids = add_residents(team, count)
    round_ = Round(county_id=county.id, month=MONTH, status="open", algorithm="lottery-v1", county_code=county.code,
                   salt="race", seed="0" * 16, draw_date=date(2026, 11, 1), sample_size=10, backup_size=0,
                   exclusion_months=6, questionnaire_version="v1", eligible_count=count, eligible_hash="",
                   institutions=1, primaries=count, backups=0, shortfall_institutions=0, triggered_by="test")
    db.session.add(round_)
    db.session.flush()
    db.session.add(RoundInstitution(round_id=round_.id, institution_id=team.institution_id, institution_name="x",
                                    teams=1, eligible_count=count, eligible_hash="", eligible_data=b"",
                                    primaries=count, backups=0, shortfall=0))
    db.session.execute(insert(Case), [
        {"round_id": round_.id, "institution_id": team.institution_id, "team_id": team.id, "resident_id": rid,
         "kind": "primary", "position": n, "status": "queued", "attempt_count": 0, "name": f"居民{n}", "sex": "M",
         "age": 66, "phone": "13800000000", "institution_name": "x",
         "team_name": team.name, "population_labels": "一般人群", "key_population": False,
         "contract_start": date(2026, 1, 1), "contract_end": date(2026, 12, 31)}
        for n, rid in enumerate(resident_ids, start=1)
    ])
    db.session.commit()
    return round_.id


def _race(make_app, app, county, team, make_user, claimers: int, claims: int):
    round_id = _round_with_cases(county, team, claimers * claims)
    users = [make_user(f"race{i}", "caller", county).id for i in range(claimers)]
    db.session.remove()
    racing = make_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": claimers + 2, "max_overflow": 0,
                                                 "pool_pre_ping": True})
    barrier = threading.Barrier(claimers)
    got: list[tuple[int, int]] = []
    errors: list[str] = []
    lock = threading.Lock()
    now = at(23, 9, 30)

    def worker(user_id: int) -> None:
        try:
            with racing.app_context():
                user = db.session.get(User, user_id)
                mine = []
                barrier.wait(timeout=60)
                for _ in range(claims):
                    case = committed(claim_next, round_id, user, now, CALLS)
                    if case is None:
                        break
                    mine.append((case.id, user_id))
                    # a final outcome ends the case: a second hand-out would be a duplicate
                    committed(record_attempt, case.id, user, outcome="refusal", now=now, settings=CALLS)
                db.session.remove()
                with lock:
                    got.extend(mine)
        except BaseException:
            with lock:
                errors.append(traceback.format_exc())

    threads = [threading.Thread(target=worker, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    with racing.app_context():
        db.engine.dispose()
    assert not errors, errors[0]

    handed = Counter(case_id for case_id, _ in got)
    duplicates = [case_id for case_id, n in handed.items() if n > 1]
    assert duplicates == []
    assert len(got) == claimers * claims  # nobody ran dry while cases were left
    assert db.session.scalar(select(func.count()).select_from(Attempt)) == claimers * claims
    per_case = db.session.execute(select(Attempt.case_id, func.count()).group_by(Attempt.case_id)).all()
    assert all(n == 1 for _, n in per_case)
    assert db.session.scalar(select(func.count()).select_from(Case).where(Case.status == "queued")) == 0
    # every attempt was recorded by the caller the case was handed to
    owner = dict(got)
    for case_id, caller_id in db.session.execute(select(Attempt.case_id, Attempt.caller_id)):
        assert owner[case_id] == caller_id


def test_concurrent_claimers_never_share_a_case(make_app, app, county, team, make_user, dialect):
    if dialect == "postgresql":
        _race(make_app, app, county, team, make_user, claimers=20, claims=500)
    else:  # one writer at a time: fewer claims keep the test short, the guarantee is the same
        _race(make_app, app, county, team, make_user, claimers=8, claims=40)
