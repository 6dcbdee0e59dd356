"""The audit log page (/audit): admins see every row, supervisors their county's, callers
nothing; filters by who, what, when and county; 50 rows a page; Chinese labels and readable
details; the export is a workbook and is itself logged."""
from __future__ import annotations

import io
from datetime import datetime

import openpyxl
import pytest
from sqlalchemy import func, select

from app.audit.log import readable_detail
from app.extensions import db
from app.models import AuditLog, audit
from app.org.maintenance import Actor, create_institution


@pytest.fixture
def world(county, make_county, make_user):
    other = make_county("华容县", "430623")
    admin = make_user("boss", "admin", real_name="王市")
    sup = make_user("sup", "supervisor", county, real_name="李督导")
    other_sup = make_user("sup2", "supervisor", other)
    caller = make_user("caller", "caller", county)
    audit(db.session, "answer_edit", sup, target="response:1", detail={"question": "Q1", "before": "满意", "after": "不满意"},
          at=datetime(2026, 11, 20, 2, 0))
    audit(db.session, "redraw", admin, target="岳阳县 2026-11", county_id=county.id, detail={"reason": "名单有误"},
          at=datetime(2026, 11, 21, 2, 0))
    audit(db.session, "draw", other_sup, target="华容县 2026-11", detail={"round_id": 7}, at=datetime(2026, 11, 22, 2, 0))
    audit(db.session, "user_create", admin, target="user:9 x", detail={"role": "caller"}, at=datetime(2026, 11, 22, 3, 0))
    db.session.commit()
    return {"county": county, "other": other, "admin": admin, "sup": sup, "caller": caller}


def _page(client, **args) -> str:
    response = client.get("/audit/", query_string=args)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def _table(client, **args) -> str:
    """The rows of the page's table only (the filters' options name every action)."""
    return _page(client, **args).split("<tbody>")[1].split("</tbody>")[0]


def test_admin_sees_every_row_with_chinese_labels(client, login, world):
    login("boss")
    html = _table(client)
    for label in ("修改答案", "重新抽样", "抽样", "新建用户"):
        assert label in html
    assert "华容县 2026-11" in html and "岳阳县 2026-11" in html
    assert "question：Q1" in html and "before：满意" in html  # the JSON detail, readable
    assert 'href="/audit/"' in _page(client)  # the navigation link


def test_a_supervisor_sees_only_their_county(client, login, world):
    login("sup")
    html = _table(client)
    assert "修改答案" in html and "岳阳县 2026-11" in html  # their own act and the admin's in their county
    assert "华容县" not in html and "新建用户" not in html
    # the county filter is the admin's only: a supervisor asking for another county still gets theirs
    html = _table(client, county=world["other"].id)
    assert "华容县 2026-11" not in html and "岳阳县 2026-11" in html
    assert 'href="/audit/"' in _page(client)


def test_callers_get_403_and_no_link(client, login, world):
    login("caller")
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/export.xlsx").status_code == 403
    assert 'href="/audit/"' not in client.get("/calls/").get_data(as_text=True)


def test_filters_who_what_when_and_county(client, login, world):
    login("boss")
    html = _table(client, who="李督导")  # a real name finds the user's rows
    assert "修改答案" in html and "重新抽样" not in html
    html = _table(client, who="SUP2")  # a user name, any case
    assert "华容县 2026-11" in html and "修改答案" not in html
    html = _table(client, action="redraw")
    assert "重新抽样" in html and "修改答案" not in html
    # dates are local (Asia/Shanghai) days: 2026-11-22 02:00 UTC is the 22nd there
    html = _table(client, since="2026-11-21", until="2026-11-21")
    assert "重新抽样" in html and "华容县 2026-11" not in html and "修改答案" not in html
    html = _table(client, county=world["other"].id)
    assert "华容县 2026-11" in html and "岳阳县 2026-11" not in html
    html = _table(client, county="none")
    assert "新建用户" in html and "抽样" not in html


def test_bad_dates_are_said_in_chinese(client, login, world):
    login("boss")
    html = _page(client, since="2026-13-45", until="x" * 500)
    assert "起始日期“2026-13-45”无效" in html and "截止日期" in html
    assert "修改答案" in html.split("<tbody>")[1]  # the list itself, unfiltered by the bad dates
    # control characters (a NUL fails a PostgreSQL query) are dropped, not a 500
    html = _page(client, who="su\x00p2", action="draw\x00", since="2026\x00-11-21")
    assert "华容县 2026-11" in html.split("<tbody>")[1]


def test_fifty_rows_a_page(client, login, world):
    for n in range(116):
        audit(db.session, "export_rankings", "cli:test", detail={"n": n})
    db.session.commit()
    login("boss")  # the sign-in is a row of its own
    total = db.session.scalar(select(func.count()).select_from(AuditLog))
    assert 101 <= total <= 150
    html = _page(client)
    assert html.split("<tbody>")[1].count("<tr>") == 50 and f"第 1 / 3 页，共 {total} 条" in html
    assert _table(client, page=3).count("<tr>") == total - 100


def test_the_export_is_a_workbook_and_is_logged(client, login, world):
    login("sup")
    response = client.get("/audit/export.xlsx", query_string={"action": "answer_edit"})
    assert response.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(response.data))["审计日志"]
    header = [c.value for c in sheet[2]]
    rows = [dict(zip(header, (c.value for c in row))) for row in sheet.iter_rows(min_row=3)]
    assert [r["操作"] for r in rows] == ["修改答案"] and rows[0]["姓名"] == "李督导"
    db.session.rollback()
    logged = db.session.scalars(select(AuditLog).where(AuditLog.action == "export.audit_log")).one()
    assert logged.actor == "sup" and logged.county_id == world["county"].id
    assert '"rows": 1' in logged.detail and "answer_edit" in logged.detail
    assert logged.hash  # linked like every other row


def test_org_changes_are_logged_with_their_county(app, world):
    create_institution(db.session, world["other"], name="新机构", code=None, type="乡镇卫生院",
                       actor=Actor("boss", world["admin"].id))
    db.session.commit()
    row = db.session.scalars(select(AuditLog).where(AuditLog.action == "org_create")).one()
    assert row.county_id == world["other"].id and row.user_id == world["admin"].id


def test_readable_detail():
    assert readable_detail('{"a": 1, "b": {"c": true}, "d": null}') == "a：1\nb：c=是\nd：—"
    assert readable_detail("电话13812345678") == "电话138****5678"
    assert readable_detail("") == ""
    assert readable_detail('{"row": "430621198001010018 不合格"}') == "row：**************0018 不合格"


def test_an_admins_export_of_a_county_is_that_countys(client, login, world):
    login("boss")
    response = client.get("/reports/monthly.xlsx", query_string={"month": "2026-11", "county": world["county"].id})
    assert response.status_code == 200
    response.close()
    db.session.rollback()
    row = db.session.scalars(select(AuditLog).where(AuditLog.action == "export_monthly_report")).one()
    assert row.county_id == world["county"].id
    assert "导出月度报告" in _table(client, county=world["county"].id)
