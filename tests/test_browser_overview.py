"""The city administrator's landing in a real browser: sign in, land on the city overview
(全市概览) with one line per county and the city total on one screen, the scheduler warning at
the top, and a county's progress one click away. Screenshot: tests/output/overview-01-city.png
(look at it)."""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select, update

from app.demo.synth import YUEYANG_COUNTIES
from app.extensions import db
from app.models import Case, ImportBatch, Resident
from tests.browser import chromium, live_server, require_chromium, sign_in
from tests.calls_support import NOW, drawn_round
from tests.draws_support import add_residents
from tests.helpers import OUTPUT_DIR

pytestmark = pytest.mark.browser

SCREEN = {"width": 1280, "height": 900}


def _city(make_county, make_team, make_user) -> list[str]:
    """The twelve counties of Yueyang: eleven drawn and partly called, the last not drawn yet.
    Their names in the overview's order (by code)."""
    counties = sorted(YUEYANG_COUNTIES, key=lambda c: c[1])
    names = []
    for index, (name, code, _urban, _institutions) in enumerate(counties):
        county = make_county(name, code)
        names.append(name)
        if index == len(counties) - 1:
            for inst in ("城关卫生院", "东湖卫生院"):
                add_residents(make_team(county, inst, f"{inst}一团队"), 4)
            continue
        setup = drawn_round(county, make_team, make_user, institutions=(f"{name[:2]}中心卫生院", f"{name[:2]}镇卫生院"))
        cases = db.session.scalars(select(Case).where(Case.round_id == setup.round.id, Case.kind == "primary")
                                   .order_by(Case.id)).all()
        for case in cases[: 3 + index]:
            case.status, case.outcome, case.attempt_count, case.last_outcome = "done", "complete", 1, "complete"
        for case in cases[3 + index: 5 + index]:
            case.status, case.outcome, case.attempt_count, case.last_outcome = "done", "refusal", 1, "refusal"
    batch = ImportBatch(filename="全市签约居民名册.csv", sha256="e" * 64, created_by="admin", status="applied",
                        started_at=datetime(2026, 11, 3, 1, 0), finished_at=datetime(2026, 11, 3, 1, 4))
    db.session.add(batch)
    db.session.flush()
    db.session.execute(update(Resident).values(last_seen_batch_id=batch.id))
    db.session.commit()
    make_user("cityadmin", "admin")
    return names


def test_admin_lands_on_the_city_overview(app, make_county, make_team, make_user, monkeypatch):
    require_chromium()
    OUTPUT_DIR.mkdir(exist_ok=True)
    for target in ("app.overview.routes.clock_now", "app.calls.routes.clock_now", "app.reports.routes.clock_now"):
        monkeypatch.setattr(target, lambda: NOW)
    names = _city(make_county, make_team, make_user)
    db.session.rollback()

    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport=SCREEN, locale="zh-CN")
        sign_in(page, base, "cityadmin")
        assert page.url == base + "/overview/"
        assert page.locator("h1").inner_text() == "全市概览 · 2026-11"
        rows = page.locator("table.overview tbody tr")
        assert rows.count() == len(names) + 1  # a line per county and the city's total
        assert [rows.nth(i).locator("th").first.inner_text().strip() for i in range(len(names))] == names
        first = [c.strip() for c in rows.nth(0).locator("th, td").all_inner_texts()]
        assert first[1] == "进行中" and first[3] == "20" and first[4] == "3"  # 2 institutions × 10; 3 completes
        assert "全市" in rows.nth(len(names)).inner_text()
        assert "未抽样" in rows.nth(len(names) - 1).inner_text()
        # no scheduler runs in the test: the red warning line at the top
        warning = page.locator(".scheduler-down")
        assert "定时任务进程未运行" in warning.inner_text()
        assert warning.evaluate("e => getComputedStyle(e.querySelector('strong')).color") == "rgb(198, 40, 40)"
        # the whole city on one screen: no scrolling either way
        size = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        assert size[0] <= SCREEN["width"] and size[1] <= SCREEN["height"], size
        page.screenshot(path=str(OUTPUT_DIR / "overview-01-city.png"))

        # one click down to a county's progress board
        rows.nth(0).get_by_role("link", name="进度").click()
        page.wait_for_selector("table.board")
        assert f"调查进度 · {names[0]} · 2026-11" in page.locator("h1").inner_text()
        assert page.locator("section.card h2").count() == 1
