"""The audit chain: every committed audit row is linked to the one before it, `flask audit
verify` finds the first row that was changed, deleted or slipped in, concurrent writers never
link to the same predecessor, and the monthly report carries the head."""
from __future__ import annotations

import json
import threading
import traceback
from datetime import datetime

import openpyxl
import pytest
from sqlalchemy import func, insert, select, text

from app.audit.chain import verify_chain
from app.extensions import db
from app.models import AuditChainHead, AuditLog, audit
from app.models.audit import GENESIS, detail_digest, record_hash
from app.reports.excel import build_monthly_report


def _write(*actions: str, actor="tester", **kwargs) -> list[int]:
    entries = [audit(db.session, action, actor, detail={"n": n}, **kwargs) for n, action in enumerate(actions)]
    db.session.commit()
    return [e.id for e in entries]


def _rows() -> list[AuditLog]:
    db.session.expire_all()
    return db.session.scalars(select(AuditLog).order_by(AuditLog.seq)).all()


def _verify(runner, *args):
    db.session.rollback()  # the test's own read transaction would hide the changes made beside it
    return runner.invoke(args=["audit", "verify", *args])


def test_rows_are_linked_in_commit_order_and_verify_passes(app, runner):
    first = _write("draw", "redraw")
    second = _write("export_rankings")
    rows = _rows()
    assert [r.id for r in rows] == first + second
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == GENESIS
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    head = db.session.get(AuditChainHead, 1)
    assert (head.seq, head.audit_id, head.hash) == (3, rows[-1].id, rows[-1].hash)

    result = _verify(runner)
    assert result.exit_code == 0, result.output
    assert "审计链完整" in result.output and "共 3 条" in result.output and f"#{rows[-1].id}" in result.output


def test_a_rolled_back_transaction_leaves_no_link(app, runner):
    _write("draw")
    audit(db.session, "redraw", "tester")
    db.session.flush()
    db.session.rollback()
    kept = _write("close_round")
    rows = _rows()
    assert [r.seq for r in rows] == [1, 2] and rows[-1].id == kept[0]
    assert _verify(runner).exit_code == 0


def test_changed_detail_is_named_by_verify(app, runner):
    ids = _write("draw", "answer_edit", "redraw")
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET detail = :d WHERE id = :id"), {"d": '{"n": 99}', "id": ids[1]})
    result = _verify(runner)
    assert result.exit_code != 0
    assert f"记录 #{ids[1]}" in result.output and "被改动" in result.output


def test_a_rewrite_that_recomputes_the_row_hash_breaks_at_the_next_row(app, runner):
    ids = _write("draw", "answer_edit", "redraw")
    row = db.session.get(AuditLog, ids[1])
    values = {c: getattr(row, c) for c in ("id", "seq", "at", "user_id", "county_id", "actor", "action", "target")}
    detail = '{"n": 99}'
    values["detail_sha256"] = detail_digest(detail)
    forged = record_hash(values, row.prev_hash)
    db.session.rollback()
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET detail = :d, detail_sha256 = :s, hash = :h WHERE id = :id"),
                     {"d": detail, "s": values["detail_sha256"], "h": forged, "id": ids[1]})
    result = _verify(runner)
    assert result.exit_code != 0 and f"记录 #{ids[2]}" in result.output


def test_a_changed_detail_digest_breaks_the_row(app, runner):
    ids = _write("draw", "answer_edit", "redraw")
    detail = '{"n": 99}'
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET detail = :d, detail_sha256 = :s WHERE id = :id"),
                     {"d": detail, "s": detail_digest(detail), "id": ids[1]})
    result = _verify(runner)
    assert result.exit_code != 0 and f"记录 #{ids[1]}" in result.output


def test_an_erased_detail_keeps_the_chain_whole(app, runner):
    """The retention period may blank a detail (marking it erased): the hash covers the
    detail's digest, so the chain still verifies; the same blanking unmarked is a break."""
    ids = _write("draw", "answer_edit", "redraw")
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET detail = '已按保存期限删除' WHERE id = :id"), {"id": ids[1]})
    assert _verify(runner).exit_code != 0
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET erased_at = :t WHERE id = :id"), {"t": datetime(2026, 1, 1), "id": ids[1]})
    result = _verify(runner)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("which", [1, 2])
def test_a_deleted_row_is_detected(app, runner, which):
    ids = _write("draw", "answer_edit", "redraw")
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": ids[which]})
    result = _verify(runner)
    assert result.exit_code != 0, result.output
    # a middle row: the next row is out of place; the last row: the head points past the chain
    assert f"#{ids[2]}" in result.output and "断开" in result.output


def test_a_row_slipped_in_by_sql_is_detected(app, runner):
    _write("draw")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_log (at, actor, action) VALUES ('2026-01-01 00:00:00', 'x', 'draw')"))
        slipped = conn.scalar(text("SELECT max(id) FROM audit_log"))
    result = _verify(runner)
    assert result.exit_code != 0 and f"记录 #{slipped}" in result.output


def test_core_inserts_and_savepoints_are_linked(app, runner):
    db.session.execute(insert(AuditLog), [{"actor": "bulk", "action": "draw", "detail": str(n)} for n in range(3)])
    with db.session.begin_nested():
        audit(db.session, "redraw", "tester")
    db.session.commit()
    rows = _rows()
    assert [r.seq for r in rows] == [1, 2, 3, 4] and all(r.hash for r in rows)
    assert _verify(runner).exit_code == 0


def test_verify_on_an_empty_log(app, runner):
    result = _verify(runner)
    assert result.exit_code == 0 and "还没有审计记录" in result.output


def test_the_county_is_the_actors_unless_given(app, county, make_county, make_user):
    other = make_county("华容县", "430623")
    supervisor = make_user("sup", "supervisor", county)
    admin = make_user("boss", "admin")
    ids = _write("draw", actor=supervisor) + _write("redraw", actor=admin) + _write("draw", actor=admin,
                                                                                    county_id=other.id)
    assert [db.session.get(AuditLog, i).county_id for i in ids] == [county.id, None, other.id]


def test_concurrent_writers_never_share_a_predecessor(make_app, app, runner, dialect):
    """Each worker commits transactions of several audit rows; on PostgreSQL every worker has
    inserted its first rows before any commits, so all of them want the head at once."""
    workers, rounds, per = 4, 5, 3
    db.session.remove()
    racing = make_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": workers + 2, "max_overflow": 0})
    barrier = threading.Barrier(workers)
    errors: list[str] = []

    def worker(n: int) -> None:
        try:
            with racing.app_context():
                for r in range(rounds):
                    for k in range(per):
                        audit(db.session, "answer_edit", f"w{n}", detail={"round": r, "k": k})
                    if r == 0 and dialect == "postgresql":
                        db.session.flush()  # rows inserted, ids taken, not yet linked
                        barrier.wait(timeout=60)
                    db.session.commit()
                db.session.remove()
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]
    rows = _rows()
    assert len(rows) == workers * rounds * per
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert len({r.prev_hash for r in rows}) == len(rows)
    # each transaction's rows are consecutive links
    for n in range(workers):
        for r in range(rounds):
            seqs = [row.seq for row in rows if row.actor == f"w{n}" and json.loads(row.detail)["round"] == r]
            assert seqs == list(range(seqs[0], seqs[0] + per))
    assert verify_chain(db.session).ok
    assert _verify(runner).exit_code == 0


def test_the_monthly_report_carries_the_chain_head(app, runner, tmp_path):
    _write("draw", "redraw")
    head = db.session.get(AuditChainHead, 1)
    path = build_monthly_report(db.session, "2026-11", None, tmp_path / "r.xlsx", config=app.config)
    sheet = openpyxl.load_workbook(path)["说明"]
    text_ = "\n".join(str(c.value) for row in sheet.iter_rows() for c in row if c.value)
    assert f"#{head.audit_id}" in text_ and head.hash in text_

    # the head on paper still matches
    assert _verify(runner, "--expect", f"{head.audit_id}:{head.hash}").exit_code == 0
    # a rewrite of the whole chain (every hash recomputed, the head too) contradicts it
    printed = (head.audit_id, head.hash)
    db.session.rollback()
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET detail = 'rewritten', seq = NULL, prev_hash = NULL, hash = NULL"))
        conn.execute(text("UPDATE audit_chain_head SET seq = 0, audit_id = NULL, hash = :g"), {"g": GENESIS})
    db.session.execute(text("UPDATE audit_log SET actor = actor"))  # a transaction that relinks the rows
    db.session.info["audit.pending"] = True
    db.session.commit()
    assert _verify(runner).exit_code == 0  # consistent by itself …
    result = _verify(runner, "--expect", f"{printed[0]}:{printed[1]}")
    assert result.exit_code != 0 and f"记录 #{printed[0]}" in result.output  # … but not with the paper


def test_verify_refuses_a_malformed_expectation(app, runner):
    result = _verify(runner, "--expect", "abc")
    assert result.exit_code != 0 and "格式" in result.output
    assert db.session.scalar(select(func.count()).select_from(AuditLog)) == 0


def test_the_migration_links_existing_rows_in_id_order(tmp_path):
    from flask_migrate import upgrade

    from app import create_app
    from tests.helpers import fresh_database

    with fresh_database(tmp_path) as url:
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "IMPORT_REPORTS_DIR": str(tmp_path / "r"),
                          "UPLOAD_DIR": str(tmp_path / "u"), "SAMPLE_LISTS_DIR": str(tmp_path / "s")})
        with app.app_context():
            upgrade(revision="0006")
            with db.engine.begin() as conn:
                run = lambda sql, **params: conn.execute(text(sql), params)  # noqa: E731
                run("INSERT INTO counties (id, name, code, created_at, active) "
                    "VALUES (1, '岳阳县', '430621', '2026-01-01 00:00:00', :yes)", yes=True)
                run("INSERT INTO users (id, username, username_key, password_hash, role, county_id, is_enabled, "
                    "created_at, must_change_password) VALUES (1, 'sup', 'sup', 'x', 'supervisor', 1, :yes, "
                    "'2026-01-01 00:00:00', :no)", yes=True, no=False)
                for n, user in ((3, 1), (1, None), (2, 1)):
                    run("INSERT INTO audit_log (id, at, user_id, actor, action, detail) "
                        "VALUES (:id, '2026-01-02 03:04:05.123456', :u, 'sup', 'draw', :d)", id=n, u=user, d=f"第{n}条")
                if conn.dialect.name == "postgresql":
                    run("SELECT setval(pg_get_serial_sequence('audit_log', 'id'), 3)")
            upgrade()
            rows = db.session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
            assert [(r.id, r.seq, r.county_id) for r in rows] == [(1, 1, None), (2, 2, 1), (3, 3, 1)]
            assert verify_chain(db.session).ok
            audit(db.session, "redraw", "tester")
            db.session.commit()
            report = verify_chain(db.session)
            assert report.ok and report.records == 4
            db.session.remove()
            db.engine.dispose()


@pytest.mark.parametrize("how", ["delete", "move back"])
def test_a_head_deleted_or_moved_back_is_detected(app, runner, how):
    ids = _write("draw", "answer_edit", "redraw")
    with db.engine.begin() as conn:
        if how == "delete":
            conn.execute(text("DELETE FROM audit_chain_head"))
        else:
            conn.execute(text("UPDATE audit_chain_head SET seq = 1, audit_id = :id, hash = "
                              "(SELECT hash FROM audit_log WHERE id = :id)"), {"id": ids[0]})
    result = _verify(runner)
    assert result.exit_code != 0, result.output
    # the first row the head no longer covers
    assert f"记录 #{ids[0] if how == 'delete' else ids[1]}" in result.output and "链头" in result.output


def test_a_head_deleted_under_linked_rows_is_not_silently_restarted(app):
    _write("draw")
    db.session.rollback()  # end the read transaction _write's ids opened
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_chain_head"))
    audit(db.session, "redraw", "cli:test")
    with pytest.raises(RuntimeError, match="audit_chain_head"):
        db.session.commit()
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(AuditChainHead)) == 0


def test_a_savepoint_does_not_take_the_head(app):
    """Rows written inside a savepoint are linked when the outer transaction commits, not when
    the savepoint is released (which would hold the head for the rest of the transaction)."""
    with db.session.begin_nested():
        entry = audit(db.session, "org_create", "cli:test")
    db.session.flush()
    assert db.session.scalar(select(AuditLog.seq).where(AuditLog.id == entry.id)) is None
    head = db.session.execute(text("SELECT seq FROM audit_chain_head")).scalar()
    assert head == 0
    db.session.commit()
    assert db.session.scalar(select(AuditLog.seq).where(AuditLog.id == entry.id)) == 1
