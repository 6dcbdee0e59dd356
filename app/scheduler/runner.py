"""The APScheduler 3 scheduler: its own process (``flask scheduler run``) or, with
SCHEDULER_IN_WEB=1, a background thread of each web worker. Running several is safe: every
job is idempotent and the draw is guarded by the database. Each also beats a heartbeat every
minute (app/scheduler/heartbeat.py), so the pages can tell whether anyone runs the jobs."""
from __future__ import annotations

import logging
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask

from app.core.clock import TZ
from app.scheduler.heartbeat import BEAT_SECONDS, Heartbeat
from app.scheduler.jobs import purge_trigger, run_job, triggers

log = logging.getLogger(__name__)


def configure(app: Flask, scheduler: BaseScheduler, heartbeat: Heartbeat | None = None) -> BaseScheduler:
    common = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600, "replace_existing": True}
    for job, trigger in triggers(app.config).items():
        scheduler.add_job(run_job, trigger, args=[app, job], id=job, **common)
    scheduler.add_job(
        run_job, IntervalTrigger(minutes=app.config["CATCH_UP_MINUTES"], timezone=TZ),
        args=[app, "catch_up"], id="catch_up", **common,
    )
    scheduler.add_job(run_job, purge_trigger(app.config), args=[app, "purge"], id="purge", **common)
    scheduler.add_job(
        run_job, IntervalTrigger(hours=1, timezone=TZ), args=[app, "uploads"], id="uploads", **common,
    )
    # the heartbeat: once as soon as the scheduler starts, then every minute; a beat missed
    # (the process was suspended) is not worth making up, the next one says the same
    heartbeat = heartbeat or Heartbeat(app)
    scheduler.add_job(
        heartbeat.beat, IntervalTrigger(seconds=BEAT_SECONDS, timezone=TZ), id="heartbeat",
        next_run_time=datetime.now(TZ), coalesce=True, max_instances=1, misfire_grace_time=BEAT_SECONDS,
        replace_existing=True,
    )
    return scheduler


def build(app: Flask, background: bool = False, heartbeat: Heartbeat | None = None) -> BaseScheduler:
    cls = BackgroundScheduler if background else BlockingScheduler
    return configure(app, cls(timezone=TZ), heartbeat)


def start_in_web(app: Flask) -> BackgroundScheduler:
    scheduler = build(app, background=True)
    scheduler.start()
    # catch up at start: a draw or a close missed while the system was down happens now
    scheduler.add_job(run_job, args=[app, "catch_up"], id="catch_up_at_start", replace_existing=True)
    log.info("scheduler started in the web process")
    return scheduler
