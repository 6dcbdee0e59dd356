"""Scheduled work: the month's draw, the month-end close, the catch-up that makes up for
both after downtime, the nightly retention purge and the hourly deletion of uploads kept too
long. Every job takes the clock as an argument and is idempotent: the draw's database lock
and unique constraint make a second run (another worker, a restart) harmless.
"""
from __future__ import annotations

import os
import socket
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.triggers.cron import CronTrigger
from flask import Flask
from sqlalchemy import exists, select

from app.draws.context import call_list_writer, draw_settings
from app.core.transactions import transaction
from app.core.clock import clock_now, current_month, month_bounds, shift_month, TZ, utc_naive
from app.core.storage import remove_older_than
from app.draws.services import draw_month_and_commit
from app.scheduler.month_end import close_round, rounds_to_close
from app.extensions import db
from app.models import County, Round, SchedulerRun
from app.privacy.cli import run_purge, summary_lines

ACTOR = "scheduler"
JOB_LABELS = {"draw": "每月抽样", "close": "月末关闭", "catch_up": "补做检查", "purge": "个人信息到期删除", "uploads": "清理上传文件"}


def cron_trigger(expression: str) -> CronTrigger:
    return CronTrigger.from_crontab(expression, timezone=TZ)


def triggers(config: dict) -> dict[str, CronTrigger]:
    return {"draw": cron_trigger(config["DRAW_CRON"]), "close": cron_trigger(config["CLOSE_CRON"])}


def fire_time_in_month(trigger: CronTrigger, month: str) -> datetime:
    """When the job is due in ``month``: its first fire time in that month (the month's end
    if the expression never fires in it)."""
    start, end = month_bounds(month)
    fire = trigger.get_next_fire_time(None, start)
    return fire if fire is not None and fire < end else end


def draw_due(config: dict, now: datetime) -> str | None:
    """The month whose draw is due at ``now`` (the current month, once its draw time has come)."""
    month = current_month(now)
    return month if now >= fire_time_in_month(triggers(config)["draw"], month) else None


def close_due_before(config: dict, now: datetime) -> str:
    """Rounds of months before the returned month are due for closing at ``now``."""
    month = current_month(now)
    if now >= fire_time_in_month(triggers(config)["close"], month):
        return shift_month(month, 1)
    return month


def next_runs(config: dict, now: datetime, count: int = 3) -> list[tuple[str, datetime]]:
    runs = []
    for job, trigger in triggers(config).items():
        fire = now
        previous = None
        for _ in range(count):
            fire = trigger.get_next_fire_time(previous, fire)
            if fire is None:
                break
            runs.append((job, fire))
            previous = fire
            fire = fire + timedelta(seconds=1)
    return sorted(runs, key=lambda item: item[1])


@dataclass(frozen=True)
class RunRecord:
    """What a job run did, detached from the session (the job's app context ends with it)."""

    job: str
    status: str
    result: str | None
    error: str | None


@dataclass
class JobResult:
    did_work: bool
    text: str
    failed: bool = False


def run_draws(app: Flask, now: datetime) -> JobResult:
    month = draw_due(app.config, now)
    if month is None:
        return JobResult(False, "本月抽样时间未到。")
    drawn = set(db.session.scalars(select(Round.county_id).where(Round.month == month)))
    active = select(County.id).where(County.active.is_(True)).order_by(County.code)
    todo = [cid for cid in db.session.scalars(active) if cid not in drawn]
    if not todo:
        return JobResult(False, f"{month} 各县市区均已抽样。")
    outcomes = draw_month_and_commit(
        db.session, month, now=now, settings=draw_settings(app), actor=ACTOR,
        county_ids=todo, after_draw=call_list_writer(app, db.session),
    )
    lines = [o.message for o in outcomes]
    work = any(o.status in ("drawn", "failed") for o in outcomes)
    return JobResult(work, "\n".join(lines), failed=any(o.status == "failed" for o in outcomes))


def run_closes(app: Flask, now: datetime) -> JobResult:
    before = close_due_before(app.config, now)
    closed = []
    for round_id in rounds_to_close(db.session, before):
        round_ = db.session.get(Round, round_id)
        label = f"{round_.county.name} {round_.month}"
        with transaction(db.session):
            done = close_round(db.session, round_id, now=now, actor=ACTOR,
                               questionnaires=app.extensions["questionnaires"], vocabulary=app.extensions["vocabulary"])
        if done:
            closed.append(label)
    if not closed:
        return JobResult(False, "没有需要关闭的轮次。")
    return JobResult(True, "已关闭：" + "、".join(closed))


def purge_trigger(config: dict) -> CronTrigger:
    """The nightly retention purge (PURGE_CRON), apart from the survey's own jobs."""
    return cron_trigger(config["PURGE_CRON"])


def run_retention_purge(app: Flask, now: datetime) -> JobResult:
    """The retention period's purge (app/privacy): what it erased, in counts."""
    result = run_purge(app, now=now, actor=ACTOR)
    if result.plan.empty:
        return JobResult(False, "没有超过保存期限的个人信息。")
    return JobResult(True, "\n".join(summary_lines(result, app.config["PERSONAL_DATA_RETENTION_MONTHS"])))


def run_upload_cleanup(app: Flask, now: datetime) -> JobResult:
    """Uploads and import error reports older than UPLOAD_RETENTION_HOURS: the ones no
    confirmation, cancellation or failure deleted (a preview nobody confirmed, a user or
    organisation sheet), and every error report."""
    hours = app.config["UPLOAD_RETENTION_HOURS"]
    removed = [
        *remove_older_than(app.config["UPLOAD_DIR"], now, hours),
        *remove_older_than(app.config["IMPORT_REPORTS_DIR"], now, hours),
    ]
    if not removed:
        return JobResult(False, f"没有超过 {hours} 小时的上传文件或错误报告。")
    return JobResult(True, f"已删除超过 {hours} 小时的上传文件和错误报告 {len(removed)} 个。")


def _record(app: Flask, job: str, scheduled_for: datetime | None, now_fn, body, always: bool) -> RunRecord | None:
    """Run ``body`` and keep its history row (always for the cron jobs; for the catch-up only
    when it did something or failed)."""
    started = now_fn()
    run = None
    if always:
        run = SchedulerRun(job=job, scheduled_for=utc_naive(scheduled_for) if scheduled_for else None,
                           started_at=utc_naive(started), status="running",
                           host=socket.gethostname()[:100], pid=os.getpid())
        with transaction(db.session):
            db.session.add(run)
        run_id = run.id
    try:
        result = body()
        error = None
    except Exception:  # the history page shows it; the scheduler keeps running
        db.session.rollback()
        result, error = JobResult(True, "任务失败。", failed=True), traceback.format_exc(limit=5)
    if not always and not result.did_work:
        return None
    with transaction(db.session):
        if always:
            run = db.session.get(SchedulerRun, run_id)
        else:
            run = SchedulerRun(job=job, scheduled_for=None, started_at=utc_naive(started),
                               host=socket.gethostname()[:100], pid=os.getpid())
            db.session.add(run)
        run.finished_at = utc_naive(now_fn())
        run.status = "failed" if result.failed else "success"
        run.result = result.text
        run.error = error
        record = RunRecord(job, run.status, run.result, run.error)
    return record


def run_job(app: Flask, job: str, now: datetime | None = None, scheduled_for: datetime | None = None):
    """One job, inside an app context. ``now`` pins the clock (tests); else the real clock."""
    now_fn = (lambda: now) if now is not None else clock_now
    with app.app_context():
        if job == "draw":
            return _record(app, job, scheduled_for, now_fn, lambda: run_draws(app, now_fn()), always=True)
        if job == "close":
            return _record(app, job, scheduled_for, now_fn, lambda: run_closes(app, now_fn()), always=True)
        if job == "purge":
            return _record(app, job, scheduled_for, now_fn, lambda: run_retention_purge(app, now_fn()), always=True)
        if job == "catch_up":
            def body():
                closes = run_closes(app, now_fn())
                draws = run_draws(app, now_fn())
                texts = [r.text for r in (closes, draws) if r.did_work]
                return JobResult(closes.did_work or draws.did_work, "\n".join(texts) or draws.text,
                                 failed=closes.failed or draws.failed)

            return _record(app, job, scheduled_for, now_fn, body, always=False)
        if job == "uploads":
            return _record(app, job, scheduled_for, now_fn, lambda: run_upload_cleanup(app, now_fn()), always=False)
        raise ValueError(f"unknown job {job}")


def pending_counties(month: str):
    """Counties without a round for ``month`` (for the status page)."""
    return db.session.scalars(
        select(County)
        .where(County.active.is_(True), ~exists().where(Round.county_id == County.id, Round.month == month))
        .order_by(County.code)
    ).all()
