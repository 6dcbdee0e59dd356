"""The administrator's journey in a real browser: sign in, upload a messy roster export,
read the preview and its rejected rows, confirm, and browse county → institution → team.
Screenshots go to tests/output/ (look at them)."""
import pytest
from sqlalchemy import func, select

from app.demo.synth import make_roster, make_units, write_messy_xlsx
from app.extensions import db
from app.models import County, Resident
from tests.browser import chromium, live_server, require_chromium
from tests.helpers import OUTPUT_DIR, PASSWORD

pytestmark = pytest.mark.browser


def test_admin_imports_a_roster_and_browses_the_organisation(app, make_county, make_user, tmp_path):
    require_chromium()
    OUTPUT_DIR.mkdir(exist_ok=True)
    make_county("岳阳县", "430621")
    make_user("cityadmin", "admin")
    units = [u for u in make_units(5) if u.county == "岳阳县"][:6]
    roster = make_roster(60, seed=5, units=units)
    roster.loc[3, "身份证号"] = roster.loc[3, "身份证号"][:17] + ("0" if roster.loc[3, "身份证号"][17] != "0" else "1")
    path = tmp_path / "岳阳县花名册.xlsx"
    write_messy_xlsx(roster, path, "岳阳县家庭医生签约居民花名册")

    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page.goto(base + "/")
        assert page.locator("h1").inner_text() == "登录"
        page.screenshot(path=str(OUTPUT_DIR / "roster-01-login.png"))
        page.fill("input[name=username]", "cityadmin")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/overview/")  # the city administrator lands on the city overview

        page.click("text=导入名册")
        page.set_input_files("input[type=file]", str(path))
        page.select_option("select[name=county]", "岳阳县")
        page.check("input[name=create_missing]")
        page.click("button:has-text('上传并预览')")
        page.wait_for_selector("text=预览（未写入）")
        page.screenshot(path=str(OUTPUT_DIR / "roster-02-preview.png"), full_page=True)
        stats = page.locator(".stats").inner_text()
        assert "读取\n60" in stats and "新增\n59" in stats and "拒绝\n1" in stats
        assert page.locator("table tbody tr").count() == 1
        assert "校验位不符" in page.locator("table").inner_text()
        assert db.session.scalar(select(func.count()).select_from(Resident)) == 0

        page.click("button:has-text('确认导入')")
        page.wait_for_selector("text=导入完成")
        page.screenshot(path=str(OUTPUT_DIR / "roster-03-applied.png"), full_page=True)
        db.session.rollback()  # end the test thread's read snapshot
        assert db.session.scalar(select(func.count()).select_from(Resident)) == 59

        page.click("text=机构与团队")
        page.click("text=岳阳县")
        page.wait_for_selector("text=基层医疗卫生机构")
        page.screenshot(path=str(OUTPUT_DIR / "roster-04-institutions.png"), full_page=True)
        page.locator("table.units tbody tr a").first.click()
        page.locator("table.units tbody tr a").first.click()
        page.wait_for_selector("input[name=q]")
        text = page.locator("table").inner_text()
        assert "****" in text  # masked IDs and phones only
        page.screenshot(path=str(OUTPUT_DIR / "roster-05-team.png"), full_page=True)

        phone = browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")
        phone.goto(base + "/")
        phone.screenshot(path=str(OUTPUT_DIR / "roster-06-login-phone.png"))
        assert phone.locator("button[type=submit]").bounding_box()["height"] >= 40
    county = db.session.scalar(select(County).where(County.name == "岳阳县"))
    assert county is not None
