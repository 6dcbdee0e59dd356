"""Six 确认导入 clicks on one preview at the same moment: one applies it, the other five get
the batch page saying it was confirmed already — never a 500, never a failed batch. The
check that the preview is still unconfirmed is made under the lock the import writes under
(SQLite's write lock, the preview row's lock on PostgreSQL)."""
from __future__ import annotations

import threading
import traceback

import pytest
from sqlalchemy import select, text as text_sql

from app.extensions import db
from app.models import ImportBatch
from app.roster import importer
from app.roster.batch import ImportBusy
from tests.helpers import csrf_token, resident_count
from tests.test_web_roster import admin, batch_id_from, confirm, flashes, roster_with_one_bad_row, text, upload

__all__ = ["admin"]  # the fixture, shared with the roster page tests

CLICKS = 6


def test_parallel_confirmations_apply_once_and_tell_the_others(make_app, app, admin, client, team, tmp_path):
    path, _ = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])
    cookie = client.get_cookie("session")
    db.session.remove()
    racing = make_app(IMPORT_REPORTS_DIR=app.config["IMPORT_REPORTS_DIR"], UPLOAD_DIR=app.config["UPLOAD_DIR"],
                      SQLALCHEMY_ENGINE_OPTIONS={"pool_size": CLICKS + 2, "max_overflow": 0, "pool_pre_ping": True})
    clients = []
    for _ in range(CLICKS):  # the same signed-in browser, several tabs
        tab = racing.test_client()
        tab.set_cookie("session", cookie.value)
        clients.append((tab, csrf_token(text(tab.get(f"/roster/batches/{preview_id}")))))
    barrier = threading.Barrier(CLICKS)
    answers: list[tuple[int, str, list[str]]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def click(tab, token) -> None:
        try:
            barrier.wait(timeout=60)
            response = tab.post(f"/roster/batches/{preview_id}/confirm", data={"csrf_token": token})
            location = response.headers.get("Location", "")
            shown = flashes(text(tab.get(location))) if response.status_code == 302 else []
            with lock:
                answers.append((response.status_code, location, shown))
        except BaseException:
            with lock:
                errors.append(traceback.format_exc())

    threads = [threading.Thread(target=click, args=pair) for pair in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    with racing.app_context():
        db.engine.dispose()
    assert not errors, errors[0]

    assert sorted(status for status, _, _ in answers) == [302] * CLICKS
    batches = db.session.scalars(select(ImportBatch).order_by(ImportBatch.id)).all()
    assert [(b.status, b.preview_of_id) for b in batches] == [("preview", None), ("applied", preview_id)]
    applied_id = batches[1].id
    winners = [a for a in answers if a[1] == f"/roster/batches/{applied_id}"]
    losers = [a for a in answers if a[1] == f"/roster/batches/{preview_id}"]
    assert len(winners) == 1 and winners[0][2] == ["导入完成：读取 4 行，新增 3，更新 0，未变 0，拒绝 1"]
    assert [shown for _, _, shown in losers] == [["该批次已确认导入。"]] * (CLICKS - 1)
    assert resident_count() == 3


def test_a_confirmation_that_waits_too_long_for_the_lock_says_so(client, admin, team, tmp_path, monkeypatch):
    path, _ = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])

    def busy(_session, _preview_id):
        raise ImportBusy()

    monkeypatch.setattr("app.roster.routes.lock_preview", busy)
    response = confirm(client, preview_id)

    assert response.headers["Location"] == f"/roster/batches/{preview_id}"
    shown = flashes(text(client.get(response.headers["Location"])))
    assert shown == [str(ImportBusy())] and "数据库正忙" in shown[0]
    assert resident_count() == 0
    assert [b.status for b in db.session.scalars(select(ImportBatch))] == ["preview"]


def test_a_locked_database_during_the_import_is_a_clear_message(client, admin, team, tmp_path, monkeypatch):
    from sqlalchemy.exc import OperationalError

    path, _ = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])

    def locked(*_args, **_kwargs):
        raise OperationalError("INSERT ...", {}, Exception("database is locked"))

    monkeypatch.setattr(importer, "_run", locked)
    response = confirm(client, preview_id)

    assert response.status_code == 302
    assert flashes(text(client.get(response.headers["Location"]))) == [str(ImportBusy())]
    db.session.rollback()
    assert [b.status for b in db.session.scalars(select(ImportBatch))] == ["preview"]
    assert resident_count() == 0


def test_on_postgresql_a_confirmation_waits_for_the_row_no_longer_than_its_timeout(
        app, client, admin, team, tmp_path, monkeypatch, dialect):
    """Another transaction holding the preview's row (a confirmation still importing): the
    second waits CONFIRM_LOCK_TIMEOUT, then gets ImportBusy, not a request hanging until the
    server's own timeout. The timeout covers the wait for the row only."""
    if dialect != "postgresql":
        pytest.skip("SQLite waits by its busy timeout")
    path, _ = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])
    monkeypatch.setattr(importer, "CONFIRM_LOCK_TIMEOUT", "300ms")
    with db.engine.connect() as holder:
        holder.execute(select(ImportBatch.id).where(ImportBatch.id == preview_id).with_for_update())
        with pytest.raises(ImportBusy):
            importer.lock_preview(db.session, preview_id)
        holder.rollback()
    assert importer.lock_preview(db.session, preview_id) is None  # free again: the row is taken
    assert db.session.execute(text_sql("SHOW lock_timeout")).scalar() == "0"  # and the wait is unbounded again
    db.session.rollback()
