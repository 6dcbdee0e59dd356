"""Organisation maintenance in a real browser: the city administrator creates a county, an
institution and a team through the pages, merges a team after reading its confirmation, then
imports an organisation sheet (upload → preview → confirm) and finds the result on the county
list. The pages are checked at 1366×768 for horizontal overflow. Screenshots go to
tests/output/org-*.png (look at them)."""
from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import County, Institution, Resident, Team
from app.roster.labels import sync_labels
from app.core.spreadsheets import write_xlsx
from tests.browser import chromium, live_server, require_chromium, sign_in
from tests.draws_support import add_residents
from tests.helpers import OUTPUT_DIR

pytestmark = pytest.mark.browser

LAPTOP = {"width": 1366, "height": 768}
COLUMNS = ["县区", "县区代码", "机构", "机构代码", "机构类型", "团队", "团队长", "联系电话"]
SHEET = [
    ["平江县", "430626", "安定镇卫生院", "PJ001", "乡镇卫生院", "甲组", "王芳", "13800138001"],
    ["平江县", "", "安定镇卫生院", "", "", "乙组", "", ""],
    ["平江县", "", "梅仙镇卫生院", "", "", "丙组", "李强", ""],
    ["汨罗市", "430681", "新市镇中心卫生院", "", "", "丁组", "赵敏", "0730-5221234"],
    ["汨罗市", "", "新市镇中心卫生院", "", "", "戊组", "", ""],
    ["汨罗市", "", "新市镇中心卫生院", "", "", "己组", "", "8221234"],  # a landline without its area code
]


def _shot(page, name: str) -> None:
    page.screenshot(path=str(OUTPUT_DIR / f"org-{name}.png"), full_page=True)


def _no_overflow(page) -> None:
    """Nothing wider than the window (wide tables scroll inside their own box)."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= LAPTOP["width"], f"{page.url}: page is {width}px wide"


def _count(model) -> int:
    db.session.rollback()  # end the test thread's read snapshot
    return db.session.scalar(select(func.count()).select_from(model))


def test_admin_maintains_and_imports_the_organisation(app, make_county, make_team, make_user, tmp_path):
    require_chromium()
    OUTPUT_DIR.mkdir(exist_ok=True)
    make_user("cityadmin", "admin")
    sync_labels(db.session, app.extensions["vocabulary"])  # every population column, as in production
    yyx = make_county("岳阳县", "430621")
    add_residents(make_team(yyx, "荣家湾镇卫生院", "张伟家庭医生团队"), 6)
    add_residents(make_team(yyx, "荣家湾镇卫生院", "李娜家庭医生团队"), 3)
    db.session.commit()
    sheet = write_xlsx(tmp_path / "机构与团队.xlsx", {"机构与团队": pd.DataFrame(SHEET, columns=COLUMNS)},
                       titles={"机构与团队": "2026年家庭医生团队名单"})

    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport=LAPTOP, locale="zh-CN")
        errors: list[str] = []
        # a refused form answers 400 and the browser asks for /favicon.ico: those are not faults
        page.on("console", lambda m: errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
        sign_in(page, base, "cityadmin")

        # a county, through the form: first a wrong code, then the right one
        page.click("nav >> text=机构与团队")
        page.click("text=新建县区")
        page.fill("input[name=name]", "临湘市")
        page.fill("input[name=code]", "43068")
        page.click("button:has-text('新建县区')")
        page.wait_for_selector(".flash-error")
        assert "县区代码“43068”无效" in page.locator(".flash-error").inner_text()
        assert page.input_value("input[name=name]") == "临湘市"  # what was typed stays
        page.fill("input[name=code]", "430682")
        _shot(page, "01-county-form")
        _no_overflow(page)
        page.click("button:has-text('新建县区')")
        page.wait_for_selector("text=已新建县区“临湘市”。")

        # an institution and a team
        page.click("text=新建机构")
        page.fill("input[name=name]", "羊楼司镇卫生院")
        page.fill("input[name=code]", "LX-001")
        page.select_option("select[name=type]", "乡镇卫生院")
        page.click("button:has-text('新建机构')")
        page.wait_for_selector("text=已新建机构“羊楼司镇卫生院”。")
        page.click("text=新建团队")
        page.fill("input[name=name]", "刘洋家庭医生团队")
        page.fill("input[name=leader_doctor]", "刘洋")
        page.fill("input[name=doctor_phone]", "13900139000")
        page.click("button:has-text('新建团队')")
        page.wait_for_selector("text=已新建团队“刘洋家庭医生团队”。")
        assert "139****9000" in page.locator("dl.facts").inner_text()
        assert "变更记录" in page.content()
        _shot(page, "02-team")
        _no_overflow(page)

        # merge: the confirmation says what happens, the reason is required
        inst = db.session.scalar(select(Institution).where(Institution.name == "荣家湾镇卫生院"))
        page.goto(f"{base}/org/institutions/{inst.id}")
        _shot(page, "03-institution")
        _no_overflow(page)
        page.locator("tr", has_text="李娜家庭医生团队").locator("text=合并").click()
        page.select_option("select[name=into]", label="张伟家庭医生团队")
        page.click("button:has-text('下一步')")
        statement = page.locator("p.statement").inner_text()
        assert statement == "“李娜家庭医生团队”的 3 名居民将转入“荣家湾镇卫生院 · 张伟家庭医生团队”；“李娜家庭医生团队”将停用；以往各月结果不变。"
        page.click("button:has-text('确认合并')")
        page.wait_for_selector(".flash-error")
        assert "请填写原因" in page.locator(".flash-error").inner_text()
        page.fill("textarea[name=reason]", "两个团队合并为一个")
        _shot(page, "04-merge-confirm")
        _no_overflow(page)
        page.click("button:has-text('确认合并')")
        page.wait_for_selector("text=转入居民 3 名")
        assert "原因：两个团队合并为一个" in page.locator("ol.changes").inner_text()
        _shot(page, "04b-merged")
        _no_overflow(page)
        db.session.rollback()
        absorbed = db.session.scalar(select(Team).where(Team.name == "李娜家庭医生团队"))
        assert not absorbed.active and absorbed.merged_into_id is not None
        assert _count(Resident) == 9

        # the organisation sheet: upload → preview (nothing written) → confirm
        counties_before = _count(County)
        page.click("nav >> text=机构与团队")
        page.click("text=导入机构与团队")
        page.set_input_files("input[type=file]", str(sheet))
        _shot(page, "05-import-upload")
        page.click("button:has-text('上传并预览')")
        page.wait_for_selector("text=预览（未写入）")
        assert "读取 6 行，拒绝 1 行；新建县区 2 个、机构 3 家、团队 5 个" in page.locator("p.summary").inner_text()
        rejected = page.locator("table tbody tr")
        assert rejected.count() == 1 and "缺少区号" in rejected.inner_text()
        _shot(page, "06-import-preview")
        _no_overflow(page)
        assert _count(County) == counties_before
        page.click("button:has-text('确认导入')")
        page.wait_for_selector("text=导入完成")
        _shot(page, "07-import-result")
        assert _count(County) == counties_before + 2
        assert _count(Team) == 2 + 1 + 5  # the factory's two, the form's one, the sheet's five

        page.click("nav >> text=机构与团队")
        rows = page.locator("table.units tbody tr")
        names = [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]
        assert {"岳阳县", "临湘市", "平江县", "汨罗市"} <= set(names)

        # a county deactivated from its row: confirmation with a reason, then greyed and listed last
        page.locator("tr", has_text="平江县").locator("text=停用").click()
        assert "以往各月的抽样、拨打记录和调查结果保留不变" in page.content()
        page.fill("textarea[name=reason]", "行政区划调整")
        _shot(page, "08-county-deactivate")
        _no_overflow(page)
        page.click("button:has-text('确认停用')")
        page.wait_for_selector("text=已停用县市区“平江县”")
        page.click("nav >> text=机构与团队")
        last = page.locator("table.units tbody tr").last
        assert "平江县" in last.inner_text() and "已停用" in last.inner_text()
        assert "inactive" in last.get_attribute("class")
        _shot(page, "09-counties")
        _no_overflow(page)
        page.click("text=汨罗市")
        assert page.locator("table.units tbody tr").count() == 1  # 新市镇中心卫生院
        ops = page.locator("table.units td.ops").first.bounding_box()
        assert ops["x"] + ops["width"] <= LAPTOP["width"]  # the row's links stay in view
        _shot(page, "10-county")
        assert errors == []
