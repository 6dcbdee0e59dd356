"""The shared layer: the unit of work and its locks, the clock, the audit helper, and the one
definition of a case's state (its Python and SQL forms must agree)."""
from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import func, select, update

from app.core import locks
from app.core.clock import current_month, local_date, month_bounds, months_of, shift_month, to_local, utc_naive
from app.core.locks import LockOrderError, begin_write, has_writes
from app.core.transactions import transaction
from app.extensions import db
from app.models import CASE_STATE_LABELS, AuditLog, Case, County, audit
from tests.calls_support import drawn_round


def _counties() -> set[str]:
    return set(db.session.scalars(select(County.name)))


# ---------------------------------------------------------------------------
# transaction()
# ---------------------------------------------------------------------------


def test_transaction_commits_what_the_block_did(app):
    with transaction(db.session):
        db.session.add(County(name="甲县", code="430001"))
    db.session.rollback()  # nothing pending: the commit already happened
    assert "甲县" in _counties()


def test_transaction_rolls_back_when_the_block_raises(app):
    with pytest.raises(ValueError):
        with transaction(db.session):
            db.session.add(County(name="乙县", code="430002"))
            db.session.flush()
            raise ValueError("refused")
    assert "乙县" not in _counties()


def test_a_rehearsal_is_rolled_back_even_when_it_succeeds(app):
    with transaction(db.session, commit=False):
        db.session.add(County(name="丙县", code="430003"))
        db.session.flush()
        assert "丙县" in _counties()  # visible inside the block
    assert "丙县" not in _counties()


# ---------------------------------------------------------------------------
# Locks never commit behind the caller's back
# ---------------------------------------------------------------------------


def test_a_transaction_that_only_read_may_take_a_lock(app):
    db.session.scalar(select(func.count()).select_from(County))
    assert db.session().in_transaction() and not has_writes(db.session)
    with transaction(db.session, write=True):
        db.session.add(County(name="丁县", code="430004"))
    assert "丁县" in _counties()


@pytest.mark.parametrize("how", ["pending", "flushed", "statement"])
def test_a_lock_is_refused_where_the_transaction_holds_writes(app, how):
    with transaction(db.session):
        db.session.add(County(name="戊县", code="430005"))
    db.session.add(County(name="己县", code="430006"))
    if how in ("flushed", "statement"):
        db.session.flush()
    if how == "statement":
        db.session.expunge_all()
        db.session.info.clear()  # forget the flush: only the UPDATE below tells
        db.session.rollback()
        db.session.execute(update(County).where(County.name == "戊县").values(code="430015"))
    assert has_writes(db.session)
    with pytest.raises(LockOrderError):
        begin_write(db.session)
    with pytest.raises(LockOrderError):
        locks.begin_locked(db.session, locks.DRAW, 1)
    db.session.rollback()
    assert "己县" not in _counties()


def test_an_attribute_set_to_its_own_value_is_not_a_write(app):
    with transaction(db.session):
        db.session.add(County(name="庚县", code="430007"))
    county = db.session.scalar(select(County).where(County.name == "庚县"))
    county.code = county.code
    assert not has_writes(db.session)
    begin_write(db.session)  # no error
    db.session.rollback()


def test_begin_write_inside_a_write_transaction_keeps_it(app, dialect):
    with transaction(db.session, write=True):
        db.session.add(County(name="辛县", code="430008"))
        db.session.flush()
        begin_write(db.session)  # a service asking for what the boundary already holds
    assert "辛县" in _counties()


# ---------------------------------------------------------------------------
# The clock: naive values are UTC everywhere, months are Asia/Shanghai's
# ---------------------------------------------------------------------------


def test_naive_times_are_utc_in_every_helper():
    naive = datetime(2026, 11, 30, 17, 0)  # 01:00 on 1 December in Asia/Shanghai
    aware = naive.replace(tzinfo=timezone.utc)
    assert local_date(naive) == local_date(aware) == date(2026, 12, 1)
    assert current_month(naive) == current_month(aware) == "2026-12"
    assert utc_naive(aware) == utc_naive(naive) == naive
    assert to_local(naive) == to_local(aware) == "2026-12-01 01:00"


def test_months():
    assert shift_month("2026-01", -1) == "2025-12" and shift_month("2026-12", 1) == "2027-01"
    assert months_of("2026-02", 3) == ["2025-12", "2026-01", "2026-02"]
    start, end = month_bounds("2026-12")
    assert (start.isoformat(), end.isoformat()) == ("2026-12-01T00:00:00+08:00", "2027-01-01T00:00:00+08:00")


# ---------------------------------------------------------------------------
# audit()
# ---------------------------------------------------------------------------


def test_audit_records_a_person_or_a_process(app, make_user, county):
    user = make_user("wang", "supervisor", county)
    with transaction(db.session):
        audit(db.session, "export_x", user, target="t" * 300, detail={"月份": "2026-11", "n": 3})
        audit(db.session, "draw", "scheduler", user_id=user.id, detail="plain")
    rows = db.session.scalars(select(AuditLog).order_by(AuditLog.id)).all()[-2:]
    assert (rows[0].actor, rows[0].user_id, len(rows[0].target)) == ("wang", user.id, 255)
    assert json.loads(rows[0].detail) == {"月份": "2026-11", "n": 3} and "月份" in rows[0].detail
    assert (rows[1].actor, rows[1].user_id, rows[1].detail) == ("scheduler", user.id, "plain")


# ---------------------------------------------------------------------------
# A case's state: the property and the SQL agree on every combination
# ---------------------------------------------------------------------------


def test_case_state_property_and_sql_agree(app, county, make_team, make_user):
    setup = drawn_round(county, make_team, make_user)
    ids = list(db.session.scalars(select(Case.id).where(Case.round_id == setup.round.id).order_by(Case.id)))
    combos = list(itertools.product(("queued", "reserve", "done", "closed"), (0, 2), (None, "busy")))
    assert len(ids) >= len(combos)
    with transaction(db.session):
        for case_id, (status, attempts, last) in zip(ids, combos):
            db.session.execute(update(Case).where(Case.id == case_id)
                               .values(status=status, attempt_count=attempts, last_outcome=last))
    cases = {c.id: c for c in db.session.scalars(select(Case).where(Case.id.in_(ids[:len(combos)])))}
    for state in CASE_STATE_LABELS:
        in_sql = set(db.session.scalars(select(Case.id).where(Case.id.in_(cases), Case.in_state(state))))
        in_python = {case_id for case_id, case in cases.items() if case.state == state}
        assert in_sql == in_python, state
    seen = {case.state for case in cases.values()}
    assert seen == set(CASE_STATE_LABELS)  # every state was exercised
    queued_dialled = next(c for c in cases.values() if c.status == "queued" and c.attempt_count and c.last_outcome)
    assert queued_dialled.state_label == "待再拨"
    with pytest.raises(ValueError):
        Case.in_state("in_progress")
