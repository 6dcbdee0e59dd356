"""The scheduler with a controllable clock: draw time, catch-up after downtime, month close,
the run history, and the APScheduler configuration itself."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import func, select

from app.extensions import db
from app.models import Case, Round, SchedulerRun
from app.scheduler import jobs
from app.scheduler.jobs import close_due_before, draw_due, fire_time_in_month, next_runs, run_job, triggers
from app.scheduler.runner import build
from tests.draws_support import TZ, add_residents


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
    assert set(found) == {"draw", "close", "catch_up"}
    assert str(found["draw"].trigger.fields[2]) == "1" and str(found["draw"].trigger.fields[5]) == "2"
    assert str(found["close"].trigger.fields[2]) == "last"
    assert found["draw"].coalesce and found["draw"].max_instances == 1
    start = at(2026, 11, 23, 10, 0)
    assert found["draw"].trigger.get_next_fire_time(None, start) == at(2026, 12, 1, 2, 0)
    assert found["close"].trigger.get_next_fire_time(None, start) == at(2026, 11, 30, 23, 59)


def test_scheduler_run_command_catches_up_first(app, two_counties, monkeypatch):
    from app.scheduler import cli

    started = []

    class FakeScheduler:
        def start(self):
            started.append(True)

        def shutdown(self, wait=False):
            pass

    monkeypatch.setattr(cli, "build", lambda _app: FakeScheduler())
    monkeypatch.setattr(jobs, "clock_now", lambda: at(2026, 11, 23, 9, 0))
    result = app.test_cli_runner().invoke(args=["scheduler", "run"])
    assert result.exit_code == 0, result.output
    assert "启动时补做检查" in result.output and "已抽样" in result.output and started == [True]
    assert {month for _c, month, _s in rounds()} == {"2026-11"}


def test_scheduler_can_run_inside_the_web_process(make_app, app):
    web = make_app(SCHEDULER_IN_WEB=True, TESTING=False)
    scheduler = web.extensions["scheduler"]
    try:
        assert scheduler.running
        assert {"draw", "close", "catch_up"} <= {job.id for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=True)
    assert not scheduler.running
    # with no county there was nothing to catch up: no history row
    assert history() == []


def test_tests_never_start_a_scheduler(app):
    assert "scheduler" not in app.extensions
