"""The supervisor's draw journey in a real browser: draw the month, read the shortfalls,
open the A4 print view of the call list, look at the scheduler page. Screenshots go to
tests/output/ (look at them)."""
import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Case, Round
from tests.browser import chromium, live_server, require_chromium
from tests.draws_support import NOW, add_residents
from tests.helpers import OUTPUT_DIR, PASSWORD

pytestmark = pytest.mark.browser


def test_supervisor_draws_the_month_and_prints_the_call_list(app, county, make_team, make_user, monkeypatch):
    require_chromium()
    OUTPUT_DIR.mkdir(exist_ok=True)
    monkeypatch.setattr("app.draws.routes.clock_now", lambda: NOW)
    for name, teams, size in (("新墙镇卫生院", ("甲团队", "乙团队", "丙团队"), 9), ("小镇卫生院", ("丁团队",), 6)):
        for team in teams:
            add_residents(make_team(county, name, team), size, labels=("hypertension",))
    make_user("sup", "supervisor", county)

    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page.goto(base + "/")
        page.fill("input[name=username]", "sup")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.click("text=每月抽样")
        page.click("button:has-text('抽取 2026-11 样本')")
        page.wait_for_selector("text=抽样参数（供核查）")
        page.screenshot(path=str(OUTPUT_DIR / "draw-01-round.png"), full_page=True)
        stats = page.locator(".stats").inner_text()
        assert "主样本\n16" in stats and "样本不足机构\n1" in stats
        assert "符合条件的居民仅 6 人" in page.locator("table").first.inner_text()

        with page.expect_popup() as popup:
            page.click("text=打印版")
        sheet = popup.value
        sheet.wait_for_load_state()
        assert sheet.locator("section.sheet").count() == 2
        assert "小镇卫生院" in sheet.locator("section.sheet").nth(0).inner_text()
        sheet.screenshot(path=str(OUTPUT_DIR / "draw-02-print.png"), full_page=True)
        sheet.emulate_media(media="print")
        pdf = sheet.pdf(format="A4", landscape=True)
        # one institution per A4 page: at least two pages
        assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) >= 2

        page.click("text=定时任务")
        page.wait_for_selector("text=下次运行")
        page.screenshot(path=str(OUTPUT_DIR / "draw-03-scheduler.png"), full_page=True)

    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Round)) == 1
    assert db.session.scalar(select(func.count()).select_from(Case).where(Case.kind == "primary")) == 16
