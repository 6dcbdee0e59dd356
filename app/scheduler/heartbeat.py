"""Is a scheduler process running? Each one (``flask scheduler run``, or the thread of a web
worker with SCHEDULER_IN_WEB=1) writes a heartbeat row when it starts and every minute after;
the 定时任务 page, ``flask scheduler status`` and the city overview read the newest one.

The rule "alive" lives here and only here: :func:`is_alive`.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from app.core.transactions import transaction
from app.core.clock import clock_now, utc_naive
from app.extensions import db
from app.models import SchedulerHeartbeat

log = logging.getLogger(__name__)

BEAT_SECONDS = 60
# A process whose newest beat is older than this is taken as gone: five missed beats leave
# room for a slow database or a long garbage collection, and a stopped process shows within
# minutes (before a draw at 02:00 on the 1st, someone looking at the page can still act).
ALIVE_WITHIN = timedelta(minutes=5)
KEEP_FOR = timedelta(days=1)  # older rows (processes long gone) are pruned by the beats
START_HINT = "启动方法：flask --app wsgi scheduler run（生产环境：systemctl start survey-scheduler）"


def is_alive(beat_at: datetime | None, now: datetime) -> bool:
    """The one rule: a beat (naive UTC, as stored) within ALIVE_WITHIN of ``now``. A beat
    "from the future" (the scheduler host's clock ahead of this one) counts as alive."""
    return beat_at is not None and utc_naive(now) - beat_at <= ALIVE_WITHIN


@dataclass(frozen=True)
class Beat:
    host: str
    pid: int
    started_at: datetime  # naive UTC
    beat_at: datetime  # naive UTC


@dataclass(frozen=True)
class SchedulerState:
    """What the pages and the CLI say about the scheduler process(es)."""

    alive: bool
    newest: Beat | None  # the most recent heartbeat of any process, alive or not
    running: tuple[Beat, ...]  # every process beating within ALIVE_WITHIN, newest first
    now: datetime

    @property
    def minutes_since(self) -> int | None:
        """Whole minutes since the newest beat (None without any)."""
        if self.newest is None:
            return None
        return max(int((utc_naive(self.now) - self.newest.beat_at).total_seconds() // 60), 0)

    @property
    def alive_within_minutes(self) -> int:
        return int(ALIVE_WITHIN.total_seconds() // 60)

    @property
    def start_hint(self) -> str:
        return START_HINT


def scheduler_state(session: Session, now: datetime) -> SchedulerState:
    """The newest heartbeats (one small query: the table keeps a day of rows, one per process)."""
    rows = session.execute(
        select(SchedulerHeartbeat.host, SchedulerHeartbeat.pid, SchedulerHeartbeat.started_at,
               SchedulerHeartbeat.beat_at)
        .order_by(SchedulerHeartbeat.beat_at.desc(), SchedulerHeartbeat.id.desc())
        .limit(20)
    ).all()
    beats = [Beat(*row) for row in rows]
    running = tuple(b for b in beats if is_alive(b.beat_at, now))
    return SchedulerState(alive=bool(running), newest=beats[0] if beats else None, running=running, now=now)


class Heartbeat:
    """One scheduler process's heartbeat: :meth:`beat` inserts the process's row the first
    time and moves its ``beat_at`` after that, and prunes rows older than KEEP_FOR, in one
    short transaction of its own. A database error is logged, never raised: a heartbeat that
    could not be written must not stop the draws."""

    def __init__(self, app: Flask, now_fn=None):
        self.app = app
        self._now_fn = now_fn
        self.host = socket.gethostname()[:100]
        self.pid = os.getpid()
        self.started_at = utc_naive(self._now())
        self.row_id: int | None = None

    def _now(self) -> datetime:
        return self._now_fn() if self._now_fn is not None else clock_now()

    def beat(self) -> bool:
        """Write the beat; True when it was written."""
        with self.app.app_context():
            try:
                with transaction(db.session) as session:  # the rollback on failure may raise too
                    now = utc_naive(self._now())
                    updated = 0
                    if self.row_id is not None:
                        updated = session.execute(
                            update(SchedulerHeartbeat).where(SchedulerHeartbeat.id == self.row_id).values(beat_at=now)
                        ).rowcount
                    if not updated:  # the first beat, or the row was pruned while this process slept
                        self.row_id = session.scalar(
                            insert(SchedulerHeartbeat)
                            .values(host=self.host, pid=self.pid, started_at=self.started_at, beat_at=now)
                            .returning(SchedulerHeartbeat.id)
                        )
                    session.execute(delete(SchedulerHeartbeat).where(SchedulerHeartbeat.beat_at < now - KEEP_FOR))
                return True
            except Exception:  # noqa: BLE001 - logged; the scheduler keeps running
                log.exception("scheduler heartbeat not written (host %s, pid %s)", self.host, self.pid)
                return False
