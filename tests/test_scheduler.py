"""The scheduler with a controllable clock: draw time, catch-up after downtime, month close,
the run history, and the APScheduler configuration itself."""
from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select

from app.extensions import db
from app.models import Case, Round, SchedulerHeartbeat, SchedulerRun
from app.scheduler import heartbeat, jobs
from app.scheduler.heartbeat import ALIVE_WITHIN, Heartbeat, is_alive, scheduler_state
from app.scheduler.jobs import close_due_before, draw_due, fire_time_in_month, next_runs, run_job, triggers
from app.scheduler.runner import build
from tests.draws_support import TZ, add_residents
from tests.helpers import PASSWORD, csrf_token


def at(*args) -> datetime:
    return datetime(*args, tzinfo=TZ)


@pytest.fixture
def two_counties(county, make_county, make_team):
    add_residents(make_team(county, "新墙镇卫生院", "甲团队"), 15)
    other = make_county("华容县", "430623")
    add_residents(make_team(other, "东山镇卫生院", "乙团队"), 12)
    return county, other


def rounds():
    db.session.rollback()
    return {(r.county.name, r.month, r.status) for r in db.session.scalars(select(Round))}


def history():
    db.session.rollback()
    return db.session.scalars(select(SchedulerRun).order_by(SchedulerRun.id)).all()


def test_draw_is_due_from_the_first_at_two(app):
    config = app.config
    assert draw_due(config, at(2026, 12, 1, 1, 59)) is None
    assert draw_due(config, at(2026, 12, 1, 2, 0)) == "2026-12"
    assert draw_due(config, at(2026, 12, 17, 8, 0)) == "2026-12"
    # 02:00 in Shanghai is 18:00 UTC the day before: still November's clock in UTC
    assert draw_due(config, datetime(2026, 11, 30, 18, 0, tzinfo=timezone.utc)) == "2026-12"


def test_close_is_due_at_23_59_on_the_last_day(app):
    config = app.config
    assert fire_time_in_month(triggers(config)["close"], "2026-02") == at(2026, 2, 28, 23, 59)
    assert close_due_before(config, at(2026, 11, 30, 23, 58)) == "2026-11"
    assert close_due_before(config, at(2026, 11, 30, 23, 59)) == "2026-12"
    assert close_due_before(config, at(2026, 12, 1, 0, 5)) == "2026-12"


def test_next_runs_for_the_status_page(app):
    runs = next_runs(app.config, at(2026, 11, 23, 10, 0), count=2)
    assert runs == [
        ("close", at(2026, 11, 30, 23, 59)),
        ("draw", at(2026, 12, 1, 2, 0)),
        ("close", at(2026, 12, 31, 23, 59)),
        ("draw", at(2027, 1, 1, 2, 0)),
    ]


def test_cron_is_configurable(make_app):
    app = make_app(DRAW_CRON="30 6 2 * *")
    assert draw_due(app.config, at(2026, 12, 2, 6, 29)) is None
    assert draw_due(app.config, at(2026, 12, 2, 6, 30)) == "2026-12"


def test_scheduled_draw_runs_once_and_records_history(app, two_counties):
    run = run_job(app, "draw", now=at(2026, 12, 1, 2, 0), scheduled_for=at(2026, 12, 1, 2, 0))
    assert run.status == "success", run.error
    assert rounds() == {("岳阳县", "2026-12", "open"), ("华容县", "2026-12", "open")}
    cases_after_first = db.session.scalar(select(func.count()).select_from(Case))
    # a second trigger (another worker, a restart): nothing more happens
    again = run_job(app, "draw", now=at(2026, 12, 1, 2, 1))
    assert again.status == "success" and "均已抽样" in again.result
    assert db.session.scalar(select(func.count()).select_from(Case)) == cases_after_first
    runs = history()
    assert [r.job for r in runs] == ["draw", "draw"]
    assert runs[0].scheduled_for == datetime(2026, 11, 30, 18, 0)  # stored in UTC
    assert runs[0].finished_at is not None and "已抽样" in runs[0].result


def test_catch_up_draws_after_downtime_and_closes_the_ended_month(app, two_counties):
    # the system was down on 1 November: it starts on the 23rd and draws November then
    run_job(app, "catch_up", now=at(2026, 11, 23, 9, 0))
    assert rounds() == {("岳阳县", "2026-11", "open"), ("华容县", "2026-11", "open")}
    # nothing to do a little later: the catch-up leaves no history row
    assert run_job(app, "catch_up", now=at(2026, 11, 23, 9, 30)) is None
    assert [r.job for r in history()] == ["catch_up"]
    # down again over the month end: on 2 December it closes November and draws December
    run = run_job(app, "catch_up", now=at(2026, 12, 2, 8, 0))
    assert run.status == "success"
    assert rounds() == {
        ("岳阳县", "2026-11", "closed"), ("华容县", "2026-11", "closed"),
        ("岳阳县", "2026-12", "open"), ("华容县", "2026-12", "open"),
    }
    assert "已关闭" in run.result and "已抽样" in run.result


def test_catch_up_before_the_draw_time_does_not_draw(app, two_counties):
    assert run_job(app, "catch_up", now=at(2026, 12, 1, 1, 0)) is None
    assert rounds() == set()


def test_month_end_close_job(app, two_counties):
    run_job(app, "catch_up", now=at(2026, 11, 23, 9, 0))
    early = run_job(app, "close", now=at(2026, 11, 30, 23, 58))
    assert "没有需要关闭" in early.result
    assert {status for *_rest, status in rounds()} == {"open"}
    run = run_job(app, "close", now=at(2026, 11, 30, 23, 59))
    assert run.status == "success"
    assert {status for *_rest, status in rounds()} == {"closed"}
    queued = db.session.scalar(select(func.count()).select_from(Case).where(Case.status == "queued"))
    assert queued == 0


def test_a_failing_job_is_recorded_and_does_not_raise(app, two_counties, monkeypatch):
    def broken(_app, _now):
        raise RuntimeError("database went away")

    monkeypatch.setattr(jobs, "run_draws", broken)
    run = run_job(app, "draw", now=at(2026, 12, 1, 2, 0))
    assert run.status == "failed" and "database went away" in run.error
    assert history()[0].status == "failed"


def test_scheduler_configuration(app):
    scheduler = build(app, background=True)
    assert isinstance(scheduler, BackgroundScheduler)
    found = {job.id: job for job in scheduler.get_jobs()}
    assert set(found) == {"draw", "close", "catch_up", "heartbeat", "purge", "uploads"}
    assert found["uploads"].trigger.interval == timedelta(hours=1)
    # the heartbeat: at start, then every minute
    assert found["heartbeat"].trigger.interval == timedelta(seconds=60)
    assert found["heartbeat"].next_run_time is not None and found["heartbeat"].max_instances == 1
    assert str(found["draw"].trigger.fields[2]) == "1" and str(found["draw"].trigger.fields[5]) == "2"
    assert str(found["close"].trigger.fields[2]) == "last"
    assert found["draw"].coalesce and found["draw"].max_instances == 1
    start = at(2026, 11, 23, 10, 0)
    assert found["draw"].trigger.get_next_fire_time(None, start) == at(2026, 12, 1, 2, 0)
    assert found["close"].trigger.get_next_fire_time(None, start) == at(2026, 11, 30, 23, 59)
    assert found["purge"].trigger.get_next_fire_time(None, start) == at(2026, 11, 24, 3, 30)  # nightly


def test_scheduler_run_command_catches_up_first(app, two_counties, monkeypatch):
    from app.scheduler import cli

    started = []

    class FakeScheduler:
        def start(self):
            started.append(True)

        def shutdown(self, wait=False):
            pass

    monkeypatch.setattr(cli, "build", lambda _app, **_options: FakeScheduler())
    monkeypatch.setattr(heartbeat, "clock_now", lambda: at(2026, 11, 23, 9, 0))
    monkeypatch.setattr(jobs, "clock_now", lambda: at(2026, 11, 23, 9, 0))
    result = app.test_cli_runner().invoke(args=["scheduler", "run"])
    assert result.exit_code == 0, result.output
    assert "启动时补做检查" in result.output and "已抽样" in result.output and started == [True]
    assert {month for _c, month, _s in rounds()} == {"2026-11"}
    # it beat before the catch-up: the pages knew it was alive while it drew
    beats = db.session.scalars(select(SchedulerHeartbeat)).all()
    assert [(b.pid, b.beat_at) for b in beats] == [(os.getpid(), datetime(2026, 11, 23, 1, 0))]


def test_scheduler_can_run_inside_the_web_process(make_app, app):
    web = make_app(SCHEDULER_IN_WEB=True, TESTING=False)
    scheduler = web.extensions["scheduler"]
    try:
        assert scheduler.running
        assert {"draw", "close", "catch_up", "heartbeat"} <= {job.id for job in scheduler.get_jobs()}
        # the web process's scheduler beats as soon as it starts
        deadline = time.monotonic() + 10
        while not db.session.scalar(select(func.count()).select_from(SchedulerHeartbeat)):
            assert time.monotonic() < deadline, "no heartbeat from the scheduler in the web process"
            time.sleep(0.05)
            db.session.rollback()
    finally:
        scheduler.shutdown(wait=True)
    assert not scheduler.running
    # with no county there was nothing to catch up: no history row
    assert history() == []


def test_tests_never_start_a_scheduler(app):
    assert "scheduler" not in app.extensions


# ---------------------------------------------------------------------------
# The heartbeat: is a scheduler process running?
# ---------------------------------------------------------------------------

NOW = at(2026, 11, 23, 10, 0)  # 02:00 UTC


def utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def test_the_alive_rule():
    assert ALIVE_WITHIN == timedelta(minutes=5)
    assert not is_alive(None, NOW)
    assert is_alive(utc(NOW), NOW)
    assert is_alive(utc(NOW) - timedelta(minutes=5), NOW)
    assert not is_alive(utc(NOW) - timedelta(minutes=5, seconds=1), NOW)
    assert is_alive(utc(NOW) + timedelta(minutes=2), NOW)  # the scheduler host's clock is ahead


def test_the_heartbeat_inserts_its_row_then_moves_it_and_prunes_old_ones(app):
    clock = {"now": NOW}
    db.session.add_all([
        SchedulerHeartbeat(host="old", pid=1, started_at=utc(NOW) - timedelta(days=3),
                           beat_at=utc(NOW) - timedelta(hours=25)),  # gone a day ago: pruned
        SchedulerHeartbeat(host="recent", pid=2, started_at=utc(NOW) - timedelta(days=3),
                           beat_at=utc(NOW) - timedelta(hours=23)),  # kept for the record
    ])
    db.session.commit()
    hb = Heartbeat(app, now_fn=lambda: clock["now"])
    assert hb.beat()
    db.session.rollback()
    rows = {r.host: r for r in db.session.scalars(select(SchedulerHeartbeat))}
    assert set(rows) == {"recent", hb.host}
    mine = rows[hb.host]
    assert (mine.pid, mine.started_at, mine.beat_at) == (os.getpid(), utc(NOW), utc(NOW))

    clock["now"] = NOW + timedelta(minutes=1)
    assert hb.beat()
    db.session.rollback()
    mine = db.session.scalars(select(SchedulerHeartbeat).where(SchedulerHeartbeat.host == hb.host)).all()
    assert [(r.id, r.started_at, r.beat_at) for r in mine] == [(hb.row_id, utc(NOW), utc(NOW) + timedelta(minutes=1))]

    # its row deleted meanwhile (another process pruned it while this one was suspended): a new one
    db.session.execute(SchedulerHeartbeat.__table__.delete())
    db.session.commit()
    clock["now"] = NOW + timedelta(minutes=2)
    assert hb.beat()
    db.session.rollback()
    assert [(r.host, r.beat_at) for r in db.session.scalars(select(SchedulerHeartbeat))] == [
        (hb.host, utc(NOW) + timedelta(minutes=2))]


def test_a_database_error_in_the_heartbeat_is_logged_not_raised(make_app, app, caplog, monkeypatch):
    # Alembic's fileConfig (tests/test_migrations.py runs migrations in this process) disables
    # every logger that existed then; the scheduler process never runs it
    monkeypatch.setattr(heartbeat.log, "disabled", False)
    # a server that does not answer: the connection itself fails
    unreachable = make_app(SQLALCHEMY_DATABASE_URI="postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    hb = Heartbeat(unreachable, now_fn=lambda: NOW)
    with caplog.at_level(logging.ERROR, logger="app.scheduler.heartbeat"):
        assert hb.beat() is False
    assert "scheduler heartbeat not written" in caplog.text
    # and a failure inside the transaction (a broken statement) rolls back and is logged too
    caplog.clear()
    good = Heartbeat(app, now_fn=lambda: NOW)

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(heartbeat, "delete", broken)
        with caplog.at_level(logging.ERROR, logger="app.scheduler.heartbeat"):
            assert good.beat() is False
    assert "disk I/O error" in caplog.text
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(SchedulerHeartbeat)) == 0  # rolled back
    assert good.beat() is True  # and the next minute it works again


def test_scheduler_state(app):
    assert scheduler_state(db.session, NOW).alive is False
    assert scheduler_state(db.session, NOW).newest is None
    hb = Heartbeat(app, now_fn=lambda: NOW)
    hb.beat()
    db.session.rollback()
    fresh = scheduler_state(db.session, NOW + timedelta(minutes=1))
    assert fresh.alive and fresh.newest.pid == os.getpid() and len(fresh.running) == 1
    stale = scheduler_state(db.session, NOW + timedelta(minutes=6))
    assert not stale.alive and stale.newest.host == hb.host and stale.minutes_since == 6 and stale.running == ()


@pytest.fixture
def status_clock(monkeypatch):
    state = {"now": NOW}
    for target in ("app.scheduler.routes.clock_now", "app.scheduler.cli.clock_now"):
        monkeypatch.setattr(target, lambda: state["now"])
    return state


def _signed_in_admin(app, make_user):
    make_user("schedadmin", "admin")
    client = app.test_client()
    token = csrf_token(client.get("/").get_data(as_text=True))
    assert client.post("/", data={"username": "schedadmin", "password": PASSWORD, "csrf_token": token}).status_code == 302
    return client


def _page(client) -> str:
    page = client.get("/scheduler/")
    assert page.status_code == 200
    return page.get_data(as_text=True)


def test_status_page_and_cli_say_whether_a_scheduler_is_running(app, make_user, status_clock):
    client = _signed_in_admin(app, make_user)
    runner = app.test_cli_runner()

    # none has ever run
    page = _page(client)
    assert 'class="scheduler-down"' in page and "定时任务进程未运行" in page and "从未收到" in page
    assert "flask --app wsgi scheduler run" in page and "survey-scheduler" in page
    assert "定时任务进程未运行，到时不会执行" in page  # the next runs are not promised
    result = runner.invoke(args=["scheduler", "status"])
    assert result.exit_code == 1, result.output
    assert "定时任务进程未运行：从未收到心跳" in result.output and "scheduler run" in result.output
    assert "（需定时任务进程运行才会执行）" in result.output

    # one beats: alive
    Heartbeat(app, now_fn=lambda: NOW).beat()
    db.session.rollback()  # the requests share the test's session: let it see the beat
    status_clock["now"] = NOW + timedelta(minutes=1)
    page = _page(client)
    assert "定时任务进程未运行" not in page and "scheduler-down" not in page
    assert "运行中" in page and str(os.getpid()) in page and "2026-11-23 10:00:00" in page
    result = runner.invoke(args=["scheduler", "status"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("定时任务进程运行中：") and str(os.getpid()) in result.output
    assert "需定时任务进程运行" not in result.output

    # its last beat 6 minutes ago: not running any more
    status_clock["now"] = NOW + timedelta(minutes=6)
    page = _page(client)
    assert 'class="scheduler-down"' in page and "6 分钟前" in page and str(os.getpid()) in page
    result = runner.invoke(args=["scheduler", "status"])
    assert result.exit_code == 1 and "6 分钟前" in result.output


def test_status_help_documents_the_exit_code(app):
    result = app.test_cli_runner().invoke(args=["scheduler", "status", "--help"])
    assert result.exit_code == 0 and "退出码" in result.output and "5 分钟" in result.output
