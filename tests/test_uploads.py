"""Files the product keeps: every one it creates is readable by its own system user only
(0600), an upload is deleted when its batch is confirmed, cancelled or failed, and the
scheduler deletes whatever upload or error report is left after UPLOAD_RETENTION_HOURS."""
from __future__ import annotations

import os
import shutil
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text as sql

from app import create_app
from app.extensions import db
from app.models import AuditLog, ImportBatch, SchedulerRun
from app.roster import importer
from app.roster.batch import ImportFailed
from app.scheduler.jobs import run_job
from tests.draws_support import MONTH, NOW, add_residents
from tests.helpers import csrf_token, resident_count
from tests.rosters import write_csv
from tests.test_web_roster import admin, batch_id_from, confirm, flashes, roster_with_one_bad_row, text, upload

__all__ = ["admin"]  # the fixture, shared with the roster page tests


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask():
    """A process umask that would leave files world-readable: the modes below must not depend
    on the umask the application set at start-up."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture(autouse=True)
def empty_folders(app):
    """The session's app shares its folders between tests: start each with none of the files."""
    for key in ("UPLOAD_DIR", "IMPORT_REPORTS_DIR", "SAMPLE_LISTS_DIR"):
        folder = Path(app.config[key])
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)


def upload_dir(client) -> Path:
    return Path(client.application.config["UPLOAD_DIR"])


def uploads(client) -> list[str]:
    return sorted(p.name for p in upload_dir(client).rglob("*") if p.is_file())


# ---------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------


def test_the_application_sets_a_private_umask(make_app):
    os.umask(0o022)
    make_app()
    current = os.umask(0o077)
    assert current == 0o077


def test_sqlite_database_and_its_wal_files_are_private(tmp_path):
    os.umask(0o022)
    database = tmp_path / "instance" / "survey.db"
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
                      "IMPORT_REPORTS_DIR": str(tmp_path / "r"), "UPLOAD_DIR": str(tmp_path / "u"),
                      "SAMPLE_LISTS_DIR": str(tmp_path / "lists")})
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(sql("CREATE TABLE t (x INTEGER)"))
            conn.execute(sql("INSERT INTO t VALUES (1)"))
        files = [database, database.with_name("survey.db-wal"), database.with_name("survey.db-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        db.engine.dispose()
    for folder in ("r", "u", "lists"):
        assert mode(tmp_path / folder) == 0o700


def test_an_existing_world_readable_database_is_made_private(tmp_path):
    database = tmp_path / "old.db"
    database.touch()
    os.chmod(database, 0o644)
    create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
                "IMPORT_REPORTS_DIR": str(tmp_path / "r"), "UPLOAD_DIR": str(tmp_path / "u"),
                "SAMPLE_LISTS_DIR": str(tmp_path / "lists")})
    assert mode(database) == 0o600


def test_uploads_and_error_reports_are_private(client, admin, team, tmp_path, loose_umask):
    path, _ = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])
    preview = db.session.get(ImportBatch, preview_id)
    reports = Path(client.application.config["IMPORT_REPORTS_DIR"])
    written = [upload_dir(client) / preview.source_file, *sorted(reports.glob(f"{preview.error_report}.*"))]
    assert len(written) == 3
    assert {p.name: mode(p) for p in written} == {p.name: 0o600 for p in written}


def test_organisation_and_user_sheet_uploads_are_private(client, admin, tmp_path, loose_umask):
    org = write_csv(tmp_path / "org.csv", [["岳阳县", "430621", "新墙镇卫生院", "甲团队"]], ["县区", "县区代码", "机构", "团队"])
    page = text(client.get("/org/import"))
    client.post("/org/import", data={"csrf_token": csrf_token(page), "file": (org.open("rb"), "org.csv")},
                content_type="multipart/form-data")
    users = write_csv(tmp_path / "users.csv", [["zhang", "张三", "调查员", "岳阳县"]], ["用户名", "姓名", "角色", "县区"])
    page = text(client.get("/admin/users/import"))
    client.post("/admin/users/import", data={"csrf_token": csrf_token(page), "file": (users.open("rb"), "users.csv")},
                content_type="multipart/form-data")
    sources = [p for p in upload_dir(client).rglob("*") if p.is_file() and p.suffix == ".csv"]
    assert len(sources) == 2
    assert {p.name: mode(p) for p in sources} == {p.name: 0o600 for p in sources}


def test_call_lists_are_private(runner, county, make_team, loose_umask, monkeypatch):
    monkeypatch.setattr("app.draws.cli.clock_now", lambda: NOW)
    add_residents(make_team(county, "新墙镇卫生院", "甲团队"), 12)
    assert runner.invoke(args=["draw", "--month", MONTH]).exit_code == 0
    result = runner.invoke(args=["export", "call-list", "--month", MONTH, "--county", "岳阳县"])
    db.session.rollback()
    assert result.exit_code == 0, result.output
    lists = sorted(Path(runner.app.config["SAMPLE_LISTS_DIR"]).rglob("*呼叫名单*"))
    assert [p.suffix for p in lists] == [".csv", ".xlsx"]
    assert {p.name: mode(p) for p in lists} == {p.name: 0o600 for p in lists}


# ---------------------------------------------------------------------------
# An upload lives as long as its batch needs it
# ---------------------------------------------------------------------------


def test_upload_is_deleted_when_its_preview_is_confirmed(client, admin, team, tmp_path):
    path, _ = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])
    assert len(uploads(client)) == 1

    response = confirm(client, preview_id)

    assert response.status_code == 302 and resident_count() == 3
    assert uploads(client) == []


def test_the_same_file_uploaded_twice_is_kept_for_each_preview(client, admin, team, tmp_path):
    path, _ = roster_with_one_bad_row(tmp_path)
    first = batch_id_from(upload(client, path).headers["Location"])
    second = batch_id_from(upload(client, path).headers["Location"])
    assert len(uploads(client)) == 2

    confirm(client, first)

    assert len(uploads(client)) == 1  # the other preview's copy
    assert "确认导入" in text(client.get(f"/roster/batches/{second}"))


def test_upload_is_deleted_when_its_preview_is_cancelled(client, admin, team, tmp_path):
    path, _ = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])
    page = text(client.get(f"/roster/batches/{preview_id}"))
    assert f'action="/roster/batches/{preview_id}/cancel"' in page

    response = client.post(f"/roster/batches/{preview_id}/cancel", data={"csrf_token": csrf_token(page)})

    assert response.status_code == 302 and response.headers["Location"] == f"/roster/batches/{preview_id}"
    assert uploads(client) == []
    page = text(client.get(f"/roster/batches/{preview_id}"))
    assert flashes(page) == ["已取消这次导入，上传的文件已删除。"]
    assert f'action="/roster/batches/{preview_id}/confirm"' not in page and "上传的文件已删除" in page
    db.session.rollback()
    cancelled = db.session.get(ImportBatch, preview_id)
    assert (cancelled.status, cancelled.source_file) == ("cancelled", None)
    assert "已取消" in text(client.get("/roster/batches"))
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.action == "roster.import.cancelled"))
    # a stale tab still offering 确认导入 gets a clear answer and imports nothing
    response = confirm(client, preview_id, csrf_token(page))
    assert response.headers["Location"] == f"/roster/batches/{preview_id}"
    assert flashes(text(client.get(response.headers["Location"]))) == ["该批次已取消，上传的文件已删除；如需导入请重新上传。"]
    assert resident_count() == 0


def test_cancel_without_csrf_token_or_of_an_applied_batch_is_refused(client, admin, team, tmp_path):
    path, _ = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])
    assert client.post(f"/roster/batches/{preview_id}/cancel").status_code == 400
    assert len(uploads(client)) == 1
    applied_id = batch_id_from(confirm(client, preview_id).headers["Location"])
    token = csrf_token(text(client.get(f"/roster/batches/{preview_id}")))
    assert client.post(f"/roster/batches/{applied_id}/cancel", data={"csrf_token": token}).status_code == 404
    response = client.post(f"/roster/batches/{preview_id}/cancel", data={"csrf_token": token})
    assert flashes(text(client.get(response.headers["Location"]))) == ["该批次已确认导入，不能取消。"]
    assert resident_count() == 3


def test_upload_is_deleted_when_its_preview_fails(client, admin, team, tmp_path):
    bad = tmp_path / "broken.xlsx"
    bad.write_bytes(b"not a workbook")

    response = upload(client, bad)

    assert response.status_code == 400
    assert db.session.scalar(select(ImportBatch.status)) == "failed"
    assert uploads(client) == []


def test_upload_is_deleted_when_its_confirmation_fails(client, admin, team, tmp_path, monkeypatch):
    path, _ = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])

    def failing(*_args, **_kwargs):
        raise ImportFailed("县区“岳阳县”不存在。")

    monkeypatch.setattr(importer, "_run", failing)
    response = confirm(client, preview_id)

    assert response.headers["Location"] == f"/roster/batches/{preview_id}"
    assert flashes(text(client.get(response.headers["Location"]))) == ["导入失败，数据库未作更改：县区“岳阳县”不存在。"]
    db.session.rollback()
    assert [b.status for b in db.session.scalars(select(ImportBatch).order_by(ImportBatch.id))] == ["preview", "failed"]
    assert uploads(client) == []


# ---------------------------------------------------------------------------
# The scheduler deletes what is left after UPLOAD_RETENTION_HOURS
# ---------------------------------------------------------------------------


def _aged(path: Path, now: datetime, hours: float, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    stamp = (now - timedelta(hours=hours)).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def test_the_scheduler_deletes_old_uploads_and_reports_and_keeps_recent_ones(app):
    now = datetime.now(timezone.utc)  # the files' times are the real clock's
    utc_now = now.replace(tzinfo=None)  # the jobs' clock: naive UTC
    uploads_dir, reports = Path(app.config["UPLOAD_DIR"]), Path(app.config["IMPORT_REPORTS_DIR"])
    old = [_aged(uploads_dir / "a1b2-old.xlsx", now, 25), _aged(uploads_dir / "org-old.json", now, 30),
           _aged(uploads_dir / "users" / ("f" * 32) / "source.csv", now, 48),
           _aged(reports / "20261101-old-错误报告.csv", now, 26)]
    os.utime(uploads_dir / "users" / ("f" * 32), ((now - timedelta(hours=48)).timestamp(),) * 2)
    recent = [_aged(uploads_dir / "c3d4-new.xlsx", now, 23), _aged(uploads_dir / "users" / ("e" * 32) / "source.csv", now, 1),
              _aged(reports / "20261123-new-错误报告.xlsx", now, 2)]

    run = run_job(app, "uploads", now=utc_now)

    assert run.status == "success" and "4" in run.result
    assert [p for p in old if p.exists()] == []
    assert all(p.exists() for p in recent)
    assert not (uploads_dir / "users" / ("f" * 32)).exists()  # its folder too, once empty
    assert uploads_dir.is_dir() and reports.is_dir()
    assert db.session.scalar(select(SchedulerRun.job)) == "uploads"
    # nothing more to do: no history row
    assert run_job(app, "uploads", now=utc_now) is None
    assert len(db.session.scalars(select(SchedulerRun)).all()) == 1


def test_a_preview_whose_upload_expired_cannot_be_confirmed(client, admin, team, tmp_path):
    path, _ = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])
    for folder in ("UPLOAD_DIR", "IMPORT_REPORTS_DIR"):
        for file in Path(client.application.config[folder]).iterdir():
            os.utime(file, (0, 0))

    run_job(client.application, "uploads", now=NOW)

    page = text(client.get(f"/roster/batches/{preview_id}"))
    assert f'action="/roster/batches/{preview_id}/confirm"' not in page
    assert "已超过 24 小时的保留期限" in page and "错误报告已超过 24 小时的保留期限，已删除。" in page
    assert client.get(f"/roster/batches/{preview_id}/report.csv").status_code == 404


def test_retention_must_be_at_least_an_hour(make_app):
    from app.config import ConfigError

    with pytest.raises(ConfigError, match="UPLOAD_RETENTION_HOURS"):
        make_app(UPLOAD_RETENTION_HOURS=0)


def test_a_command_line_preview_has_no_upload_to_confirm(client, admin, team, tmp_path):
    from app.roster.batch import ImportOptions
    from app.roster.context import import_context
    from app.roster.importer import import_and_commit

    path, _ = roster_with_one_bad_row(tmp_path)
    result = import_and_commit(db.session, path, ImportOptions(dry_run=True), import_context(client.application, "cli"))

    page = text(client.get(f"/roster/batches/{result.batch_id}"))

    assert f'action="/roster/batches/{result.batch_id}/confirm"' not in page and "命令行" in page
    assert path.exists()  # the command's own file is never deleted


def test_cleanup_never_follows_or_deletes_links(tmp_path):
    from app.core.storage import remove_older_than

    now = datetime.now(timezone.utc)
    outside = _aged(tmp_path / "outside" / "keep.xlsx", now, 100)
    folder = tmp_path / "uploads"
    folder.mkdir()
    (folder / "link.xlsx").symlink_to(outside)
    (folder / "linked-folder").symlink_to(outside.parent, target_is_directory=True)
    old = _aged(folder / "old.csv", now, 100)

    removed = remove_older_than(folder, now.replace(tzinfo=None), 24)

    assert removed == [old] and outside.exists()
    assert (folder / "link.xlsx").is_symlink() and (folder / "linked-folder").is_symlink()
