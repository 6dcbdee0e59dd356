"""Exactly once: several processes (scheduler, web workers, a restart) draw the same month at
the same moment; each county's round is drawn by exactly one of them. On PostgreSQL the
advisory lock and the unique constraint decide it; on SQLite BEGIN IMMEDIATE does."""
from __future__ import annotations

import multiprocessing
import os
import traceback

from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditLog, Case, Round
from tests.draws_support import MONTH, NOW, add_residents

WORKERS = 6


def _race_worker(config: dict, barrier, queue) -> None:
    try:
        from app import create_app
        from app.draws.context import call_list_writer, draw_settings
        from app.draws.services import draw_month_and_commit

        app = create_app(config)
        with app.app_context():
            barrier.wait(timeout=60)
            outcomes = draw_month_and_commit(
                db.session, MONTH, now=NOW, settings=draw_settings(app), actor=f"worker-{os.getpid()}",
                after_draw=call_list_writer(app, db.session),
            )
            queue.put([(o.county, o.status, o.message) for o in outcomes])
            db.session.remove()
            db.engine.dispose()
    except BaseException:
        queue.put(traceback.format_exc())


def test_concurrent_draws_create_each_round_once(app, county, make_county, make_team, tmp_path):
    sizes = {"岳阳县": (county, 40), "华容县": (make_county("华容县", "430623"), 25),
             "平江县": (make_county("平江县", "430626"), 8)}
    for name, (c, size) in sizes.items():
        for i in range(2):
            add_residents(make_team(c, f"{name}第{i + 1}卫生院", "甲团队"), size)
    config = {key: app.config[key] for key in ("SQLALCHEMY_DATABASE_URI", "SECRET_KEY", "ID_HASH_KEY")}
    config.update(TESTING=True, IMPORT_REPORTS_DIR=str(tmp_path / "r"), UPLOAD_DIR=str(tmp_path / "u"),
                  SAMPLE_LISTS_DIR=str(tmp_path / "lists"))
    db.session.remove()

    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(WORKERS), ctx.Queue()
    processes = [ctx.Process(target=_race_worker, args=(config, barrier, queue)) for _ in range(WORKERS)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    errors = [r for r in results if isinstance(r, str)]
    assert not errors, errors[0]

    statuses: dict[str, list[str]] = {}
    for outcome in results:
        for name, status, message in outcome:
            assert status in ("drawn", "exists"), message
            statuses.setdefault(name, []).append(status)
    assert set(statuses) == set(sizes)
    for name, seen in statuses.items():
        assert sorted(seen) == ["drawn"] + ["exists"] * (WORKERS - 1), (name, seen)

    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Round)) == 3
    assert db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "draw")) == 3
    # 40 and 25 eligible per institution: 10 + 10; 8 eligible: all 8 as primaries, no backups
    expected = 2 * 20 + 2 * 20 + 2 * 8
    assert db.session.scalar(select(func.count()).select_from(Case)) == expected
    for name in sizes:
        assert (tmp_path / "lists" / name / f"{MONTH}-呼叫名单.xlsx").exists()
    leftovers = [p.name for p in (tmp_path / "lists").rglob(".tmp-*")]
    assert leftovers == []
