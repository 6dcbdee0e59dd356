"""deploy/: backup.sh and restore.sh bring a real database back row for row, with the call
lists and import error reports; restore refuses a database that has data and a backup that
was changed; the shipped systemd units and nginx site are checked (systemd-analyze verify and
nginx -t where the tools exist, and always by reading them).

On SQLite by default; on PostgreSQL when TEST_DATABASE_URL is set (the source and every
target are databases of their own on that server, dropped afterwards)."""
from __future__ import annotations

import configparser
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask_migrate import upgrade
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.orm import Session

from app import create_app
from app.config import load_config
from app.extensions import db
from app.models import County, Resident, User
from tests.helpers import fresh_database
from tests.rosters import Person, bad_check_digit, make_id, people, rows_of, write_csv

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BACKUP = DEPLOY / "backup.sh"
RESTORE = DEPLOY / "restore.sh"
ON_PG = os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql")
ID_HASH_KEY = "test-id-hash-key-0123456789"
CALL_LIST = "岳阳县/2026-11-呼叫名单.csv"
CALL_LIST_BYTES = "\ufeff序号,机构,团队,姓名\r\n1,新墙镇卫生院,张伟家庭医生团队,居民一\r\n".encode()
CHINESE = re.compile(r"[\u4e00-\u9fff]")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _need_tools() -> None:
    if ON_PG:
        missing = [tool for tool in ("pg_dump", "pg_restore", "psql") if shutil.which(tool) is None]
        if missing:
            pytest.skip("PostgreSQL 客户端工具缺失（postgresql-client）：" + ", ".join(missing))
        # pg_dump refuses a server newer than itself: the client must be at least the server's major
        dump = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True, check=True).stdout
        engine = create_engine(os.environ["TEST_DATABASE_URL"])
        try:
            with engine.connect() as conn:
                server = conn.execute(text("SELECT version()")).scalar_one()
        finally:
            engine.dispose()
        dump_major = int(re.search(r"(\d+)\.", dump).group(1))
        server_major = int(re.search(r"PostgreSQL (\d+)", server).group(1))
        assert dump_major >= server_major, f"{dump.strip()} cannot dump {server}: install postgresql-client-{server_major}"


@contextmanager
def _database(folder: Path):
    """(URL for the scripts, URL to read it back): a new PostgreSQL database, or a SQLite file
    given by a *relative* URL (resolved against the scripts' working directory, as the app does)."""
    if ON_PG:
        with fresh_database(folder) as url:
            yield url, url
    else:
        folder.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{folder.name}/survey.db", f"sqlite:///{folder / 'survey.db'}"


def _run(script: Path, *args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(script), *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=600
    )


def _env(database_url: str, sample_lists: Path, reports: Path, **extra: str) -> dict:
    return {
        "DATABASE_URL": database_url,
        "SAMPLE_LISTS_DIR": str(sample_lists),
        "IMPORT_REPORTS_DIR": str(reports),
        "ID_HASH_KEY": ID_HASH_KEY,
        **extra,
    }


def _plain(value):
    return bytes(value) if isinstance(value, memoryview) else value


def snapshot(url: str) -> dict[str, tuple[int, str]]:
    """Every table: its row count and a SHA-256 of all its rows (sorted, so order-free)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            out = {}
            for table in sorted(inspect(conn).get_table_names()):
                rows = sorted(repr(tuple(_plain(v) for v in row)) for row in conn.execute(text(f'SELECT * FROM "{table}"')))
                out[table] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
            return out
    finally:
        engine.dispose()


def residents_checksum(url: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM residents ORDER BY id")).all()
        return hashlib.sha256("\n".join(repr(tuple(_plain(v) for v in r)) for r in rows).encode()).hexdigest()
    finally:
        engine.dispose()


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _app(url: str, folder: Path):
    return create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "test-secret-key-0123456789",
            "ID_HASH_KEY": ID_HASH_KEY,
            "IMPORT_REPORTS_DIR": str(folder / "import_reports"),
            "UPLOAD_DIR": str(folder / "uploads"),
            "SAMPLE_LISTS_DIR": str(folder / "sample_lists"),
            "IMPORT_WORKERS": 0,
        }
    )


def _fill(url: str, folder: Path) -> None:
    """A database built the way production builds it (the Alembic revisions), filled through
    the application: a county, a roster import that creates two institutions with their teams,
    60 residents with their labels and one rejected row (so an error report is written), a user."""
    app = _app(url, folder)
    with app.app_context():
        try:
            upgrade()
            db.session.add(County(name="岳阳县", code="430621"))
            db.session.commit()
            persons = people(40) + people(20, first_seq=300, institution="荣家湾镇卫生院", team="李娜家庭医生团队")
            persons.append(Person(name="错号码", id=bad_check_digit(make_id("19700101", "555"))))
            roster = write_csv(folder / "花名册.csv", rows_of(persons))
            runner = app.test_cli_runner()
            result = runner.invoke(args=["roster", "import", str(roster), "--county", "岳阳县", "--create-missing"])
            assert result.exit_code == 0, result.output
            assert "imported=60" in result.output and "rejected=1" in result.output, result.output
            county = db.session.scalar(select(County).where(County.name == "岳阳县"))
            caller = User(username="yyx_caller", real_name="钱七", role="caller", county_id=county.id,
                          must_change_password=True)
            caller.set_password("caller-password-1")
            db.session.add(caller)
            db.session.commit()
        finally:
            db.session.remove()
            db.engine.dispose()


# ---------------------------------------------------------------------------
# one source database and its backup, shared by the tests below
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    _need_tools()
    base = tmp_path_factory.mktemp("deploy")
    source_dir = base / "source"
    source_dir.mkdir()
    with fresh_database(source_dir) as source_url:
        _fill(source_url, source_dir)
        sample_lists, reports = source_dir / "sample_lists", source_dir / "import_reports"
        (sample_lists / CALL_LIST).parent.mkdir(parents=True, exist_ok=True)
        (sample_lists / CALL_LIST).write_bytes(CALL_LIST_BYTES)
        assert list(reports.glob("*错误报告*")), "the import wrote no error report"

        dest = base / "backups"
        dest.mkdir()
        old = dest / "survey-20200101-000000"  # a backup 40 days old: pruned with KEEP_DAYS=30
        other = dest / "notes"  # not a backup folder: never touched
        for folder in (old, other):
            folder.mkdir()
            (folder / "x").write_text("x")
            ago = os.stat(folder).st_mtime - 40 * 86400
            os.utime(folder, (ago, ago))

        live = None
        if not ON_PG:
            # an online backup: a connection stays open with a committed row still only in the
            # write-ahead log (no checkpoint), as while the services run; the copy must have it
            live = sqlite3.connect(source_url[len("sqlite:///"):])
            live.execute("PRAGMA wal_autocheckpoint=0")
            live.execute("INSERT INTO counties (name, code, active, created_at) "
                         "VALUES ('临湘市', '430682', 1, '2026-11-01 00:00:00.000000')")
            live.commit()
            assert Path(source_url[len("sqlite:///"):] + "-wal").stat().st_size > 0
        try:
            result = _run(BACKUP, str(dest), cwd=base, env=_env(source_url, sample_lists, reports, KEEP_DAYS="30"))
        finally:
            if live is not None:
                live.close()
        assert result.returncode == 0, result.stdout + result.stderr
        made = sorted(p for p in dest.iterdir() if p.name.startswith("survey-"))
        assert len(made) == 1 and made[0] != old, made
        yield SimpleNamespace(
            base=base,
            source_url=source_url,
            backup=made[0],
            dest=dest,
            stdout=result.stdout,
            other=other,
            sample_lists=files_of(sample_lists),
            reports=files_of(reports),
            snapshot=snapshot(source_url),
            residents=residents_checksum(source_url),
        )


def test_backup_writes_a_checksummed_private_folder_and_prunes_old_ones(backed_up):
    backup = backed_up.backup
    assert f"备份完成：{backup}" in backed_up.stdout
    assert re.fullmatch(r"survey-\d{8}-\d{6}", backup.name)
    names = {p.name for p in backup.iterdir()}
    db_file = "database.dump" if ON_PG else "survey.sqlite3"
    assert {db_file, "sample_lists.tar.gz", "import_reports.tar.gz", "backup-info.txt", "SHA256SUMS"} <= names
    listed = {line.split()[1] for line in (backup / "SHA256SUMS").read_text().splitlines()}
    assert listed == names - {"SHA256SUMS"}
    for name in names - {"SHA256SUMS"}:
        digest = hashlib.sha256((backup / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in (backup / "SHA256SUMS").read_text()
    assert os.stat(backup).st_mode & 0o777 == 0o700
    assert {os.stat(backup / n).st_mode & 0o777 for n in names} == {0o600}
    info = (backup / "backup-info.txt").read_text()
    assert f"kind={'postgresql' if ON_PG else 'sqlite'}" in info
    # retention: the 40-day-old backup folder is gone, the unrelated folder stays
    assert not (backed_up.dest / "survey-20200101-000000").exists()
    assert backed_up.other.exists()
    assert not list(backed_up.dest.glob(".survey-*"))  # no half-written folder left


def test_restore_into_a_fresh_database_gives_back_every_row_and_file(backed_up, tmp_path):
    sample_lists, reports = tmp_path / "lists", tmp_path / "reports"
    with _database(tmp_path / "restored") as (url, read_url):
        result = _run(RESTORE, str(backed_up.backup), cwd=tmp_path, env=_env(url, sample_lists, reports))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "恢复完成" in result.stdout

        restored = snapshot(read_url)
        assert restored == backed_up.snapshot  # same tables, same counts, same rows
        counts = {table: n for table, (n, _) in restored.items()}
        assert counts["residents"] == 60 and counts["resident_labels"] >= 60
        assert counts["counties"] == (1 if ON_PG else 2) and counts["institutions"] == 2 and counts["teams"] == 2
        assert counts["users"] == 1 and counts["import_batches"] >= 1 and counts["alembic_version"] == 1
        assert residents_checksum(read_url) == backed_up.residents

        assert files_of(sample_lists) == backed_up.sample_lists
        assert files_of(sample_lists)[CALL_LIST] == CALL_LIST_BYTES
        assert files_of(reports) == backed_up.reports

        # the application works on it, and new rows get fresh ids (PostgreSQL: sequences restored)
        engine = create_engine(read_url)
        try:
            with Session(engine) as session:
                top = session.scalar(select(func.max(County.id)))
                county = County(name="华容县", code="430623")
                session.add(county)
                session.commit()
                assert county.id > top
                assert session.scalar(select(func.count()).select_from(Resident)) == 60
        finally:
            engine.dispose()


def test_restore_accepts_a_database_with_the_schema_but_no_rows(backed_up, tmp_path):
    """A fresh install that already ran `flask db upgrade` holds tables but no data: that
    counts as empty, and the restore replaces the schema with the backup's."""
    with _database(tmp_path / "upgraded") as (url, read_url):
        app = _app(read_url, tmp_path)
        with app.app_context():
            try:
                upgrade()
            finally:
                db.engine.dispose()
        assert snapshot(read_url)["residents"][0] == 0
        result = _run(RESTORE, str(backed_up.backup), cwd=tmp_path,
                      env=_env(url, tmp_path / "lists", tmp_path / "reports"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert snapshot(read_url) == backed_up.snapshot


def test_restore_refuses_a_database_that_has_data_unless_forced(backed_up, tmp_path):
    sample_lists, reports = tmp_path / "lists", tmp_path / "reports"
    env = _env(backed_up.source_url, sample_lists, reports)
    refused = _run(RESTORE, str(backed_up.backup), cwd=tmp_path, env=env)
    assert refused.returncode != 0
    assert "目标数据库不是空的" in refused.stderr and "--force" in refused.stderr, refused.stderr
    assert snapshot(backed_up.source_url) == backed_up.snapshot
    assert not sample_lists.exists()  # nothing restored at all

    # another ID_HASH_KEY than the backup's: refused too (residents would not be recognised)
    with _database(tmp_path / "empty") as (url, _read):
        other_key = _run(RESTORE, str(backed_up.backup), cwd=tmp_path,
                         env=_env(url, sample_lists, reports, ID_HASH_KEY="another-key-0123456789"))
    assert other_key.returncode != 0 and "ID_HASH_KEY" in other_key.stderr, other_key.stderr

    forced = _run(RESTORE, "--force", str(backed_up.backup), cwd=tmp_path, env=env)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert snapshot(backed_up.source_url) == backed_up.snapshot
    assert files_of(sample_lists)[CALL_LIST] == CALL_LIST_BYTES


@pytest.mark.parametrize("damage", ["one byte changed", "line removed from SHA256SUMS"])
def test_restore_refuses_a_changed_backup(backed_up, tmp_path, damage):
    copy = tmp_path / backed_up.backup.name
    shutil.copytree(backed_up.backup, copy)
    db_file = copy / ("database.dump" if ON_PG else "survey.sqlite3")
    if damage == "one byte changed":
        data = bytearray(db_file.read_bytes())
        data[len(data) // 2] ^= 0x01
        db_file.write_bytes(bytes(data))
        expected = "SHA256SUMS 不符"
    else:
        sums = copy / "SHA256SUMS"
        sums.write_text("".join(line for line in sums.read_text().splitlines(True) if db_file.name not in line))
        expected = "不在 SHA256SUMS 中"
    sample_lists = tmp_path / "lists"
    with _database(tmp_path / "target") as (url, read_url):
        result = _run(RESTORE, str(copy), cwd=tmp_path, env=_env(url, sample_lists, tmp_path / "reports"))
        assert result.returncode != 0
        assert "校验失败" in result.stderr and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert snapshot(read_url) == {}  # the target was not touched
    assert not sample_lists.exists()


# ---------------------------------------------------------------------------
# the shipped units, nginx site, environment example and scripts
# ---------------------------------------------------------------------------

UNITS = ("survey-web.service", "survey-scheduler.service")


def parse_unit(content: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(content)
    return parser


def unit_problems(name: str, content: str) -> list[str]:
    """What is wrong with a unit, read as systemd would: [] when it is sound."""
    try:
        unit = parse_unit(content)
    except configparser.Error as exc:
        return [f"unparsable: {exc}"]
    problems = []
    required = {
        "Unit": ["Description"],
        "Service": ["ExecStart", "User", "EnvironmentFile", "Restart", "WorkingDirectory", "KillSignal", "TimeoutStopSec"],
        "Install": ["WantedBy"],
    }
    for section, keys in required.items():
        for key in keys:
            if not unit.has_option(section, key) or not unit.get(section, key).strip():
                problems.append(f"[{section}] {key} missing")
    service = unit["Service"] if unit.has_section("Service") else {}
    expect = {
        "User": "survey",
        "EnvironmentFile": "/etc/survey/survey.env",
        "WorkingDirectory": "/opt/survey",
        "KillSignal": "SIGTERM",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
    }
    for key, value in expect.items():
        if service.get(key) != value:
            problems.append(f"{key}={service.get(key)!r}, expected {value!r}")
    if service.get("ProtectSystem") not in ("full", "strict"):
        problems.append("ProtectSystem must be full or strict")
    writable = [p.lstrip("-") for p in service.get("ReadWritePaths", "").split()]
    # the data folders of the environment example, and the defaults when they are not set
    for path in ("/var/lib/survey", "/opt/survey/instance", "/opt/survey/sample_lists"):
        if path not in writable:
            problems.append(f"ReadWritePaths lacks {path}")
    if not re.fullmatch(r"\d+(s|min)?", service.get("TimeoutStopSec", "")):
        problems.append("TimeoutStopSec is not a duration")
    if unit.get("Install", "WantedBy", fallback="") != "multi-user.target":
        problems.append("WantedBy should be multi-user.target")
    exec_start = service.get("ExecStart", "")
    if "$(" in exec_start or "`" in exec_start:
        problems.append("ExecStart uses shell syntax systemd does not run")
    if name == "survey-web.service":
        if not exec_start.startswith("/opt/survey/.venv/bin/gunicorn ") or not exec_start.endswith(" wsgi:app"):
            problems.append("web ExecStart should be /opt/survey/.venv/bin/gunicorn … wsgi:app")
        binds = re.findall(r"(?:--bind|-b)[ =](\S+)", exec_start)
        if binds != ["127.0.0.1:8000"]:
            problems.append(f"gunicorn must bind 127.0.0.1:8000 only, binds {binds}")
        if not re.search(r"--workers[ =][1-9]\d*(\s|$)", exec_start):
            problems.append("--workers must be a fixed number")
        if not re.search(r"--timeout[ =]300(\s|$)", exec_start):
            problems.append("--timeout 300 missing")
        if service.get("Restart") not in ("on-failure", "always"):
            problems.append("web Restart should be on-failure")
    if name == "survey-scheduler.service":
        if exec_start != "/opt/survey/.venv/bin/flask --app wsgi scheduler run":
            problems.append(f"scheduler ExecStart is {exec_start!r}")
        if service.get("Restart") != "always":
            problems.append("scheduler Restart must be always")
    return problems


def backup_unit_problems(service_content: str, timer_content: str) -> list[str]:
    """The nightly backup: a oneshot service running deploy/backup.sh as survey, and its timer."""
    try:
        service, timer = parse_unit(service_content), parse_unit(timer_content)
    except configparser.Error as exc:
        return [f"unparsable: {exc}"]
    problems = []
    for unit, section, key in [
        (service, "Unit", "Description"), (service, "Service", "ExecStart"), (service, "Service", "User"),
        (service, "Service", "EnvironmentFile"), (timer, "Unit", "Description"), (timer, "Timer", "OnCalendar"),
        (timer, "Install", "WantedBy"),
    ]:
        if not unit.has_option(section, key) or not unit.get(section, key).strip():
            problems.append(f"[{section}] {key} missing")
    if problems:
        return problems
    svc = service["Service"]
    if svc.get("Type") != "oneshot":
        problems.append("backup Type must be oneshot")
    if svc.get("User") != "survey" or svc.get("EnvironmentFile") != "/etc/survey/survey.env":
        problems.append("backup must run as survey with /etc/survey/survey.env")
    args = svc.get("ExecStart").split()
    if args[0] != "/opt/survey/deploy/backup.sh" or len(args) != 2 or not args[1].startswith("/"):
        problems.append(f"backup ExecStart is {svc.get('ExecStart')!r}")
    elif args[1] not in [p.lstrip("-") for p in svc.get("ReadWritePaths", "").split()]:
        problems.append(f"the backup folder {args[1]} is not in ReadWritePaths")
    if not re.fullmatch(r"(\*-\*-\*|daily) ?(\d\d:\d\d(:\d\d)?)?", timer.get("Timer", "OnCalendar").strip()):
        problems.append(f"OnCalendar {timer.get('Timer', 'OnCalendar')!r} is not nightly")
    if timer.get("Timer", "Unit", fallback="survey-backup.service") != "survey-backup.service":
        problems.append("the timer does not start survey-backup.service")
    if timer.get("Timer", "Persistent", fallback="") != "true":
        problems.append("Persistent=true missing (a backup missed while off is not caught up)")
    if timer.get("Install", "WantedBy") != "timers.target":
        problems.append("timer WantedBy should be timers.target")
    return problems


def nginx_problems(content: str, max_mb: int) -> list[str]:
    conf = re.sub(r"#[^\n]*", "", content)
    problems = []
    checks = {
        "proxy_pass to gunicorn": r"proxy_pass\s+http://127\.0\.0\.1:8000;",
        "TLS listener": r"listen\s+443\s+ssl",
        "ssl_certificate": r"ssl_certificate\s+\S+;",
        "ssl_certificate_key": r"ssl_certificate_key\s+\S+;",
        "HTTP to HTTPS redirect": r"return\s+301\s+https://",
        "X-Forwarded-For": r"proxy_set_header\s+X-Forwarded-For\s+\$(proxy_add_x_forwarded_for|remote_addr);",
        "X-Forwarded-Proto": r"proxy_set_header\s+X-Forwarded-Proto\s+\$scheme;",
        "proxy_read_timeout 300s": r"proxy_read_timeout\s+300s;",
        "server_tokens off": r"server_tokens\s+off;",
    }
    for what, pattern in checks.items():
        if not re.search(pattern, conf):
            problems.append(f"{what} missing")
    size = re.search(r"client_max_body_size\s+(\d+)m;", conf)
    if not size or int(size.group(1)) != max_mb:
        problems.append(f"client_max_body_size should be {max_mb}m (MAX_UPLOAD_MB)")
    if conf.count("{") != conf.count("}"):
        problems.append("unbalanced braces")
    return problems


def _env_example() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "survey.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def test_units_and_nginx_site_read_as_intended(monkeypatch):
    monkeypatch.delenv("MAX_UPLOAD_MB", raising=False)
    max_mb = load_config()["MAX_CONTENT_LENGTH"] // (1024 * 1024)  # the application's default
    assert int(_env_example()["MAX_UPLOAD_MB"]) == max_mb

    for name in UNITS:
        content = (DEPLOY / name).read_text()
        assert unit_problems(name, content) == [], name
    backup_service = (DEPLOY / "survey-backup.service").read_text()
    backup_timer = (DEPLOY / "survey-backup.timer").read_text()
    assert backup_unit_problems(backup_service, backup_timer) == []
    assert "[Timer] OnCalendar missing" in backup_unit_problems(
        backup_service, re.sub(r"\nOnCalendar=[^\n]*", "", backup_timer))
    assert any("OnCalendar" in p for p in backup_unit_problems(
        backup_service, re.sub(r"OnCalendar=[^\n]*", "OnCalendar=monthly", backup_timer)))
    assert any("ReadWritePaths" in p for p in backup_unit_problems(
        backup_service.replace("ExecStart=/opt/survey/deploy/backup.sh /var/backups/survey",
                               "ExecStart=/opt/survey/deploy/backup.sh /srv/elsewhere"), backup_timer))
    web = (DEPLOY / "survey-web.service").read_text()
    # the checks can fail: each of these breaks one thing
    assert any("127.0.0.1:8000" in p for p in unit_problems("survey-web.service", web.replace("127.0.0.1:8000", "0.0.0.0:8000")))
    assert any("--workers" in p for p in unit_problems("survey-web.service", re.sub(r"--workers \d+", "--workers $(( $(nproc) + 1 ))", web)))
    assert "[Service] User missing" in unit_problems("survey-web.service", re.sub(r"\nUser=survey\n", "\n", web))
    scheduler = (DEPLOY / "survey-scheduler.service").read_text()
    assert "scheduler Restart must be always" in unit_problems(
        "survey-scheduler.service", scheduler.replace("Restart=always", "Restart=on-failure"))

    site = (DEPLOY / "nginx-survey.conf").read_text()
    assert nginx_problems(site, max_mb) == []
    assert nginx_problems(site.replace("http://127.0.0.1:8000", "http://127.0.0.1:5000"), max_mb) == [
        "proxy_pass to gunicorn missing"
    ]
    assert nginx_problems(site.replace(f"client_max_body_size {max_mb}m", "client_max_body_size 1m"), max_mb) != []
    assert "X-Forwarded-Proto missing" in nginx_problems(
        re.sub(r"proxy_set_header X-Forwarded-Proto[^\n]*", "", site), max_mb)


def test_environment_example_holds_placeholders_only():
    values = _env_example()
    assert values["APP_ENV"] == "production" and values["TRUST_PROXY_HOPS"] == "1"
    assert values["DATABASE_URL"].startswith("postgresql+psycopg://survey:") and values["DATABASE_URL"].endswith("@127.0.0.1:5432/survey")
    for key in ("SAMPLE_LISTS_DIR", "IMPORT_REPORTS_DIR", "UPLOAD_DIR"):
        assert values[key].startswith("/var/lib/survey/"), key
    for key in ("SECRET_KEY", "ID_HASH_KEY"):
        assert "CHANGE-ME" in values[key], f"{key} must be a placeholder, not a secret"
        assert not re.fullmatch(r"[0-9a-f]{32,}", values[key])
    assert all(" " not in v and '"' not in v for v in values.values())  # systemd and `. file` read it alike


def test_scripts_parse_and_are_executable():
    for script in (BACKUP, RESTORE):
        assert os.access(script, os.X_OK), f"{script.name} is not executable"
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "set -euo pipefail" in script.read_text()
        usage = subprocess.run([str(script), "--bogus"], capture_output=True, text=True)
        assert usage.returncode != 0 and CHINESE.search(usage.stderr), usage.stderr


def test_restore_without_a_backup_folder_fails_in_chinese(tmp_path):
    result = subprocess.run([str(RESTORE), str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert result.returncode != 0 and "备份目录不存在" in result.stderr, result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run([str(RESTORE), str(empty)], capture_output=True, text=True)
    assert result.returncode != 0 and "SHA256SUMS" in result.stderr, result.stderr


def _verify(units: dict[str, str], folder: Path) -> subprocess.CompletedProcess:
    paths = []
    for name, content in units.items():
        path = folder / name
        path.write_text(content)
        paths.append(str(path))
    return subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True, cwd=folder)


def _complaints(result: subprocess.CompletedProcess, folder: Path) -> list[str]:
    """systemd-analyze reports a bad key or value as '<file>:<line>: …' and still exits 0."""
    return [line for line in (result.stdout + result.stderr).splitlines() if str(folder) in line]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze 不可用（units are still read by test_units_and_nginx_site_read_as_intended）")
def test_units_pass_systemd_analyze_verify(tmp_path):
    venv_bin = Path(os.environ.get("VIRTUAL_ENV") or ROOT / ".venv") / "bin"
    if not (venv_bin / "gunicorn").exists():
        venv_bin = ROOT / ".venv" / "bin"

    # a control unit: if even this does not verify, systemd-analyze cannot work on this
    # machine (no systemd at all) and the reading of the units above is what checks them
    control_dir = tmp_path / "control"
    control_dir.mkdir()
    control = _verify({"control.service": "[Unit]\nDescription=c\n[Service]\nExecStart=/bin/true\n"}, control_dir)
    if control.returncode != 0 or _complaints(control, control_dir):
        pytest.skip("systemd-analyze verify 在此环境不可用：" + (control.stderr.strip() or "?"))

    units = {
        name: (DEPLOY / name).read_text()
        .replace("/opt/survey/.venv/bin/", f"{venv_bin}/")
        .replace("/opt/survey/deploy/", f"{DEPLOY}/")
        for name in (*UNITS, "survey-backup.service", "survey-backup.timer")
    }
    good = tmp_path / "units"
    good.mkdir()
    result = _verify(units, good)
    assert result.returncode == 0 and not _complaints(result, good), result.stdout + result.stderr

    # verify does catch a broken unit (a bad value, a missing program)
    bad = tmp_path / "bad"
    bad.mkdir()
    broken = {
        "survey-web.service": units["survey-web.service"].replace("Restart=on-failure", "Restart=sometimes"),
        "survey-scheduler.service": units["survey-scheduler.service"].replace(f"{venv_bin}/flask", "/nonexistent/flask"),
        "survey-backup.service": units["survey-backup.service"],
        "survey-backup.timer": re.sub(r"OnCalendar=[^\n]*", "OnCalendar=nightly-ish", units["survey-backup.timer"]),
    }
    result = _verify(broken, bad)
    output = result.stdout + result.stderr
    assert "sometimes" in output and "/nonexistent/flask" in output and "nightly-ish" in output, output


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None, reason="nginx 未安装")
def test_nginx_site_passes_nginx_t(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=survey.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    site = (DEPLOY / "nginx-survey.conf").read_text()
    site = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", site)
    site = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", site)
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  client_body_temp_path {tmp_path}/body;\n  include {tmp_path}/site.conf;\n}}\n"
    )
    result = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (tmp_path / "site.conf").write_text(site.replace("proxy_read_timeout 300s;", "proxy_read_timeout;"))
    broken = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True)
    assert broken.returncode != 0
