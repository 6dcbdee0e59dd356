"""Organisation maintenance through the web pages: create, edit, rename, move, merge, deactivate,
reactivate, and the organisation sheet import (upload → preview → confirm once) — with CSRF,
roles and county scoping, and nothing changed by a GET."""
from __future__ import annotations

import html as html_lib
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditLog, County, Institution, OrgChange, Resident, Team
from app.core.spreadsheets import write_xlsx
from tests.draws_support import add_residents
from tests.helpers import PASSWORD, csrf_token

ORG_COLUMNS = ["县区", "县区代码", "机构", "机构代码", "机构类型", "团队", "团队长", "联系电话"]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def text(response) -> str:
    return response.get_data(as_text=True)


def flashes(page: str) -> list[str]:
    return [html_lib.unescape(m) for m in re.findall(r'<div class="flash flash-\w+"[^>]*>([^<]*)</div>', page)]


def flash_kinds(page: str) -> list[tuple[str, str]]:
    return [(k, html_lib.unescape(m)) for k, m in re.findall(r'<div class="flash flash-(\w+)" role="status">([^<]*)</div>', page)]


def counts() -> dict[str, int]:
    db.session.rollback()
    return {t.name: db.session.scalar(select(func.count()).select_from(t)) for t in db.metadata.sorted_tables}


def post(client, url: str, data: dict | None = None, *, token: str | None = "fetch", **kwargs):
    """POST with the session's CSRF token (taken from the county list), or without one."""
    data = dict(data or {})
    if token == "fetch":
        token = csrf_token(text(client.get("/org/")))
    if token is not None:
        data["csrf_token"] = token
    return client.post(url, data=data, **kwargs)


def follow(client, response) -> str:
    assert response.status_code == 302, text(response)[:2000]
    return text(client.get(response.headers["Location"]))


def changes(kind: str, unit_id: int) -> list[OrgChange]:
    db.session.rollback()
    return list(db.session.scalars(select(OrgChange).where(OrgChange.unit_kind == kind, OrgChange.unit_id == unit_id)
                                   .order_by(OrgChange.id)))


def reload(model, unit_id: int):
    db.session.rollback()
    return db.session.get(model, unit_id)


@pytest.fixture
def org(app, make_county, make_team):
    """岳阳县: 荣家湾镇卫生院 (一组 with 3 residents, 二组 with 1), 新墙镇卫生院 (三组);
    华容县: 东山镇卫生院 (四组)."""
    a = make_county("岳阳县", "430621")
    b = make_county("华容县", "430623")
    t1 = make_team(a, "荣家湾镇卫生院", "一组")
    t2 = make_team(a, "荣家湾镇卫生院", "二组")
    t3 = make_team(a, "新墙镇卫生院", "三组")
    t4 = make_team(b, "东山镇卫生院", "四组")
    add_residents(t1, 3)
    add_residents(t2, 1)
    add_residents(t4, 2)
    db.session.commit()
    return {"A": a, "B": b, "t1": t1, "t2": t2, "t3": t3, "t4": t4,
            "i1": t1.institution, "i2": t3.institution, "i4": t4.institution}


@pytest.fixture
def admin(client, make_user, login):
    user = make_user("cityadmin", "admin")
    login("cityadmin")
    return user


@pytest.fixture
def supervisor(client, make_user, login, org):
    user = make_user("sup-a", "supervisor", org["A"])
    login("sup-a")
    return user


def maintenance_urls(county: County, inst: Institution, team: Team) -> list[str]:
    """Every maintenance page (GET shows it, POST acts) on these units."""
    return [
        "/org/counties/new",
        f"/org/counties/{county.id}/edit",
        f"/org/counties/{county.id}/deactivate",
        f"/org/counties/{county.id}/reactivate",
        f"/org/counties/{county.id}/institutions/new",
        f"/org/institutions/{inst.id}/edit",
        f"/org/institutions/{inst.id}/deactivate",
        f"/org/institutions/{inst.id}/reactivate",
        f"/org/institutions/{inst.id}/teams/new",
        f"/org/teams/{team.id}/edit",
        f"/org/teams/{team.id}/move",
        f"/org/teams/{team.id}/merge",
        f"/org/teams/{team.id}/deactivate",
        f"/org/teams/{team.id}/reactivate",
        "/org/import",
    ]


def other_county(o: dict) -> list[str]:
    return maintenance_urls(o["B"], o["i4"], o["t4"])


def own_county(o: dict) -> list[str]:
    return maintenance_urls(o["A"], o["i1"], o["t1"])


def org_sheet(path: Path, rows: list[list[str]]) -> Path:
    return write_xlsx(path, {"机构与团队": pd.DataFrame(rows, columns=ORG_COLUMNS)})


SHEET_ROWS = [
    ["平江县", "430626", "安定镇卫生院", "PJ001", "乡镇卫生院", "甲组", "王芳", "13800138001"],
    ["平江县", "", "安定镇卫生院", "", "", "乙组", "", ""],
    ["汨罗市", "430681", "新市镇中心卫生院", "", "", "丙组", "赵强", "0730-5221234"],
    ["湘阴县", "", "文星镇卫生院", "", "", "丁组", "", ""],  # a new county without its code
]


# ---------------------------------------------------------------------------
# Create
# ---------------------------------------------------------------------------


def test_admin_creates_a_county_an_institution_and_a_team(client, admin, org):
    page = text(client.get("/org/"))
    assert "新建县区" in page and "导入机构与团队" in page
    form = client.get("/org/counties/new")
    assert form.status_code == 200 and "6位行政区划代码" in text(form)

    response = post(client, "/org/counties/new", {"name": " 平江县 ", "code": "430626"})

    county = db.session.scalar(select(County).where(County.name == "平江县"))
    assert county is not None and (county.code, county.active) == ("430626", True)
    assert response.headers["Location"] == f"/org/counties/{county.id}"
    assert "已新建县区“平江县”。" in flashes(follow(client, response))

    response = post(client, f"/org/counties/{county.id}/institutions/new",
                    {"name": "安定镇卫生院", "code": "pj-001", "type": "乡镇卫生院"})
    inst = db.session.scalar(select(Institution).where(Institution.name == "安定镇卫生院"))
    assert (inst.county_id, inst.code, inst.type) == (county.id, "PJ-001", "乡镇卫生院")
    assert response.headers["Location"] == f"/org/institutions/{inst.id}"
    county_page = text(client.get(f"/org/counties/{county.id}"))
    assert "安定镇卫生院" in county_page and "PJ-001" in county_page and "乡镇卫生院" in county_page
    assert f"/org/institutions/{inst.id}/edit" in county_page and f"/org/institutions/{inst.id}/deactivate" in county_page

    response = post(client, f"/org/institutions/{inst.id}/teams/new",
                    {"name": "王芳家庭医生团队", "leader_doctor": "王芳", "doctor_phone": "138 0013 8001"})
    team = db.session.scalar(select(Team).where(Team.name == "王芳家庭医生团队"))
    assert (team.institution_id, team.leader_doctor, team.doctor_phone, team.active) == (inst.id, "王芳", "13800138001", True)
    team_page = follow(client, response)
    assert "已新建团队“王芳家庭医生团队”。" in flashes(team_page)
    assert "王芳" in team_page and "138****8001" in team_page and "在用" in team_page
    assert "调整所属机构" in team_page and "合并到其他团队" in team_page

    db.session.rollback()
    assert [(c.unit_kind, c.action, c.actor, c.user_id) for c in db.session.scalars(select(OrgChange).order_by(OrgChange.id))] == [
        ("county", "create", "cityadmin", admin.id), ("institution", "create", "cityadmin", admin.id),
        ("team", "create", "cityadmin", admin.id)]
    assert [a.action for a in db.session.scalars(select(AuditLog).where(AuditLog.action != "login")
                                                 .order_by(AuditLog.id))] == ["org_create"] * 3
    assert "新建" in team_page and "团队长：王芳" in team_page  # its history


@pytest.mark.parametrize("url, data, message", [
    ("/org/counties/new", {"name": "岳阳县", "code": "430699"}, "县区名称“岳阳县”已存在。"),
    ("/org/counties/new", {"name": "平江县", "code": "430621"}, "县区代码“430621”已存在。"),
    ("/org/counties/new", {"name": "平江县", "code": "12345"}, "县区代码“12345”无效：应为6位行政区划代码，如 430621。"),
    ("/org/counties/new", {"name": "", "code": "430626"}, "请填写县市区名称。"),
    ("county:A/institutions/new", {"name": "荣家湾镇卫生院", "code": "", "type": "乡镇卫生院"}, "本县区已有名为“荣家湾镇卫生院”的机构。"),
    ("county:A/institutions/new", {"name": "月田镇卫生院", "code": "", "type": "医院"}, "机构类型“医院”无效"),
    ("inst:i1/teams/new", {"name": "一组", "leader_doctor": "", "doctor_phone": ""}, "该机构已有名为“一组”的团队。"),
    ("inst:i1/teams/new", {"name": "五组", "leader_doctor": "", "doctor_phone": "8221234"}, "联系电话“8221234”无效"),
])
def test_a_refused_form_shows_the_reason_keeps_the_input_and_writes_nothing(client, admin, org, url, data, message):
    url = url.replace("county:A", f"/org/counties/{org['A'].id}").replace("inst:i1", f"/org/institutions/{org['i1'].id}")
    before = counts()

    response = post(client, url, data)

    assert response.status_code == 400
    page = text(response)
    assert any(message in f for f in flashes(page)), flashes(page)
    for key, value in data.items():
        if value and key != "type":
            assert f'value="{value}"' in page  # what was typed is still there
    if data.get("type") == "乡镇卫生院":
        assert '<option selected value="乡镇卫生院">' in page
    assert counts() == before


def test_supervisor_creates_in_their_own_county_only(client, supervisor, org):
    assert "新建县区" not in text(client.get("/org/"))
    assert "新建机构" in text(client.get(f"/org/counties/{org['A'].id}"))

    created = post(client, f"/org/counties/{org['A'].id}/institutions/new", {"name": "月田镇卫生院", "type": "乡镇卫生院"})

    assert created.status_code == 302
    assert db.session.scalar(select(Institution).where(Institution.name == "月田镇卫生院")).county_id == org["A"].id
    before = counts()
    assert post(client, "/org/counties/new", {"name": "平江县", "code": "430626"}).status_code == 403
    assert post(client, f"/org/counties/{org['A'].id}/edit", {"name": "岳阳", "code": "430621"}).status_code == 403
    assert post(client, f"/org/counties/{org['A'].id}/deactivate", {"reason": "撤并"}).status_code == 403
    for url in other_county(org)[1:-1]:  # 华容县's units: not found
        if url.startswith("/org/counties/") and not url.endswith("/institutions/new"):
            expected = 403  # counties are the city's, whichever county
        else:
            expected = 404
        assert client.get(url).status_code == expected, url
        body = post(client, url, {"name": "x", "code": "430699", "type": "乡镇卫生院", "reason": "测试原因"})
        assert body.status_code == expected, url
        assert "东山镇卫生院" not in text(body) and "四组" not in text(body)
    assert post(client, "/org/import", {}).status_code == 403
    assert counts() == before


@pytest.mark.parametrize("role", ["caller"])
def test_a_caller_gets_403_on_every_maintenance_page(client, make_user, login, org, role):
    make_user("caller-a", role, org["A"])
    login("caller-a")
    own = own_county(org)
    token = csrf_token(text(client.get("/org/")))
    before = counts()

    for url in own + ["/org/import/template.xlsx", "/org/import/" + "0" * 32, "/org/import/" + "0" * 32 + "/report.csv"]:
        assert client.get(url).status_code == 403, url
    for url in own + ["/org/import/" + "0" * 32 + "/confirm"]:
        assert post(client, url, {"name": "x", "code": "430699", "reason": "测试原因"}, token=token).status_code == 403, url

    # a caller reads no unit page either (their work is the cases, not the roster)
    for url in (f"/org/counties/{org['A'].id}", f"/org/institutions/{org['i1'].id}", f"/org/teams/{org['t1'].id}"):
        assert client.get(url).status_code == 403, url
    assert "新建县区" not in text(client.get("/org/"))
    assert counts() == before


def test_anonymous_users_are_sent_to_sign_in(client, org):
    for url in own_county(org) + ["/org/import/template.xlsx"]:
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/?next="), url


# ---------------------------------------------------------------------------
# Edit, rename
# ---------------------------------------------------------------------------


def test_renaming_shows_the_former_name_and_the_history(client, admin, org):
    inst = org["i1"]
    form = text(client.get(f"/org/institutions/{inst.id}/edit"))
    assert 'value="荣家湾镇卫生院"' in form and "修改原因" in form

    response = post(client, f"/org/institutions/{inst.id}/edit",
                    {"name": "荣家湾镇中心卫生院", "code": "RJW", "type": "中心卫生院", "reason": "升格为中心卫生院"})

    page = follow(client, response)
    assert "已保存机构“荣家湾镇中心卫生院”。" in flashes(page)
    assert re.search(r'<p class="former">曾用名：荣家湾镇卫生院</p>', page)
    assert "更名" in page and "名称：荣家湾镇卫生院 → 荣家湾镇中心卫生院" in page and "升格为中心卫生院" in page
    assert "类型：乡镇卫生院 → 中心卫生院" in page
    assert [c.action for c in changes("institution", inst.id)] == ["rename", "edit"]
    assert reload(Institution, inst.id).name == "荣家湾镇中心卫生院"

    again = post(client, f"/org/institutions/{inst.id}/edit",
                 {"name": "荣家湾镇中心卫生院", "code": "RJW", "type": "中心卫生院", "reason": ""})
    assert again.status_code == 302
    assert len(changes("institution", inst.id)) == 2  # nothing changed, nothing recorded

    county = post(client, f"/org/counties/{org['A'].id}/edit", {"name": "岳阳县（新）", "code": "430621", "reason": ""})
    assert "曾用名：岳阳县" in follow(client, county)
    team = post(client, f"/org/teams/{org['t1'].id}/edit", {"name": "一组", "leader_doctor": "李娜", "doctor_phone": ""})
    assert "团队长：张伟 → 李娜" in follow(client, team)


def test_an_edit_refused_by_a_rule_keeps_the_input(client, admin, org):
    before = counts()

    response = post(client, f"/org/teams/{org['t2'].id}/edit", {"name": "一组", "leader_doctor": "张三", "doctor_phone": ""})

    assert response.status_code == 400
    assert "该机构已有名为“一组”的团队。" in flashes(text(response))
    assert 'value="张三"' in text(response)
    assert counts() == before


# ---------------------------------------------------------------------------
# Move, merge
# ---------------------------------------------------------------------------


def test_moving_a_team_confirms_counts_and_happens_once(client, admin, org):
    t1, target = org["t1"], org["i2"]
    choose = text(client.get(f"/org/teams/{t1.id}/move"))
    assert "新墙镇卫生院" in choose and "东山镇卫生院" not in choose  # same county only
    confirm = text(client.get(f"/org/teams/{t1.id}/move?to={target.id}"))
    assert "其 <strong>3</strong> 名居民随团队一起转入" in confirm
    assert "以往各月的抽样和调查结果仍计入原机构“荣家湾镇卫生院”" in confirm
    token = csrf_token(confirm)
    before = counts()

    no_reason = post(client, f"/org/teams/{t1.id}/move", {"target": target.id, "reason": ""}, token=token)
    assert no_reason.status_code == 400 and "请填写原因（至少2个字）。" in flashes(text(no_reason))
    other_county = post(client, f"/org/teams/{t1.id}/move", {"target": org["i4"].id, "reason": "调整"}, token=token)
    assert other_county.status_code == 400 and "请从列表中选择本县区一家在用的机构。" in flashes(text(other_county))
    assert counts() == before

    moved = post(client, f"/org/teams/{t1.id}/move", {"target": target.id, "reason": "按片区调整"}, token=token)

    assert "已把团队“一组”从“荣家湾镇卫生院”调整到“新墙镇卫生院”。" in flashes(follow(client, moved))
    assert reload(Team, t1.id).institution_id == target.id
    assert db.session.scalar(select(func.count()).select_from(Resident).where(Resident.team_id == t1.id)) == 3
    again = post(client, f"/org/teams/{t1.id}/move", {"target": target.id, "reason": "按片区调整"}, token=token)
    assert again.status_code == 302
    assert ("info", "团队“一组”已属于该机构，没有重复操作。") in flash_kinds(follow(client, again))
    assert [c.action for c in changes("team", t1.id)] == ["move"]
    assert db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "org_move")) == 1


def test_merging_moves_residents_deactivates_and_happens_once(client, admin, org):
    t1, t2 = org["t1"], org["t2"]
    choose = text(client.get(f"/org/teams/{t1.id}/merge"))
    assert "二组" in choose and "三组" in choose and "四组" not in choose
    confirm = text(client.get(f"/org/teams/{t1.id}/merge?into={t2.id}"))
    statement = re.sub(r"<[^>]+>", "", re.search(r'<p class="statement">(.*?)</p>', confirm, re.S).group(1))
    assert statement == "“一组”的 3 名居民将转入“荣家湾镇卫生院 · 二组”；“一组”将停用；以往各月结果不变。"
    token = csrf_token(confirm)
    assert post(client, f"/org/teams/{t1.id}/merge", {"target": t2.id}, token=token).status_code == 400
    assert reload(Team, t1.id).active

    merged = post(client, f"/org/teams/{t1.id}/merge", {"target": t2.id, "reason": "团队合并"}, token=token)

    assert merged.headers["Location"] == f"/org/teams/{t2.id}"
    assert "已把团队“一组”并入“二组”，转入居民 3 名；“一组”已停用。" in flashes(follow(client, merged))
    absorbed = reload(Team, t1.id)
    assert (absorbed.active, absorbed.merged_into_id) == (False, t2.id)
    assert db.session.scalar(select(func.count()).select_from(Resident).where(Resident.team_id == t2.id)) == 4
    page = text(client.get(f"/org/teams/{t1.id}"))
    assert f'已并入 <a href="/org/teams/{t2.id}">荣家湾镇卫生院 · 二组</a>' in page
    assert "合并到其他团队" not in page and f"/org/teams/{t1.id}/reactivate" not in page

    again = post(client, f"/org/teams/{t1.id}/merge", {"target": t2.id, "reason": "团队合并"}, token=token)
    assert again.status_code == 302
    assert ("info", "团队“一组”已停用或已合并，没有重复操作。") in flash_kinds(follow(client, again))
    assert [c.action for c in changes("team", t1.id)] == ["merge"]
    assert [c.action for c in changes("team", t2.id)] == ["absorb"]
    refused = post(client, f"/org/teams/{t1.id}/reactivate", {"reason": "恢复"}, token=token)
    assert refused.status_code == 400 and "已合并的团队不能重新启用：其居民已转入其他团队。" in flashes(text(refused))


# ---------------------------------------------------------------------------
# Deactivate, reactivate
# ---------------------------------------------------------------------------


def test_deactivation_requires_a_reason_and_reactivation_restores(client, admin, org):
    inst = org["i1"]
    confirm = text(client.get(f"/org/institutions/{inst.id}/deactivate"))
    assert "的 <strong>4</strong> 名在册居民从下一次抽样起不再被抽取" in confirm
    assert "以往各月的抽样、拨打记录和调查结果保留不变" in confirm
    before = counts()

    refused = post(client, f"/org/institutions/{inst.id}/deactivate", {"reason": " "})

    assert refused.status_code == 400 and "请填写原因（至少2个字）。" in flashes(text(refused))
    assert counts() == before and reload(Institution, inst.id).active

    done = post(client, f"/org/institutions/{inst.id}/deactivate", {"reason": "机构撤并"})
    page = follow(client, done)
    assert "已停用机构“荣家湾镇卫生院”：从下一次抽样起不再抽取其居民，以往各月结果不变。" in flashes(page)
    assert "该机构已停用" in page and "状态：在用 → 停用" in page and "机构撤并" in page
    assert not reload(Institution, inst.id).active
    county_page = text(client.get(f"/org/counties/{org['A'].id}"))
    assert re.search(r'<tr class="inactive">\s*<td><a [^>]+>荣家湾镇卫生院</a> <span class="tag tag-disabled">已停用</span>', county_page)
    assert county_page.index("新墙镇卫生院") < county_page.index(">荣家湾镇卫生院<")  # inactive last

    again = post(client, f"/org/institutions/{inst.id}/deactivate", {"reason": "机构撤并"})
    assert ("info", "机构“荣家湾镇卫生院”已经停用，没有重复操作。") in flash_kinds(follow(client, again))
    assert [c.action for c in changes("institution", inst.id)] == ["deactivate"]
    active_team = post(client, f"/org/teams/{org['t1'].id}/reactivate", {})
    assert ("info", "团队“一组”已经启用，没有重复操作。") in flash_kinds(follow(client, active_team))

    back = post(client, f"/org/institutions/{inst.id}/reactivate", {"reason": ""})
    assert "已启用机构“荣家湾镇卫生院”。" in flashes(follow(client, back))
    assert reload(Institution, inst.id).active
    assert [c.action for c in changes("institution", inst.id)] == ["deactivate", "reactivate"]


def test_a_deactivated_county_is_greyed_and_listed_last(client, admin, org):
    a = org["A"]
    assert "该县区从下一次抽样起不再参加每月抽样，其 <strong>4</strong> 名" in text(client.get(f"/org/counties/{a.id}/deactivate"))

    post(client, f"/org/counties/{a.id}/deactivate", {"reason": "行政区划调整"})

    page = text(client.get("/org/"))
    row = re.search(r'<tr class="inactive">(.*?)</tr>', page, re.S).group(1)
    assert "岳阳县" in row and "已停用" in row and f"/org/counties/{a.id}/reactivate" in row
    assert page.index(">华容县</a>") < page.index(">岳阳县</a>")
    assert "已经停用，无需再次操作" in text(client.get(f"/org/counties/{a.id}/deactivate"))
    refused = post(client, f"/org/institutions/{org['i1'].id}/deactivate", {"reason": "撤并"})
    assert refused.status_code == 302  # an institution can still be deactivated
    back = post(client, f"/org/institutions/{org['i1'].id}/reactivate", {})
    assert back.status_code == 400 and "请先启用所属县区“岳阳县”。" in flashes(text(back))


# ---------------------------------------------------------------------------
# CSRF, GET
# ---------------------------------------------------------------------------


def test_posts_without_a_csrf_token_are_refused(client, admin, org):
    before = counts()
    for url, data in [
        ("/org/counties/new", {"name": "平江县", "code": "430626"}),
        (f"/org/counties/{org['A'].id}/institutions/new", {"name": "月田镇卫生院", "type": "乡镇卫生院"}),
        (f"/org/institutions/{org['i1'].id}/edit", {"name": "改名", "type": "乡镇卫生院"}),
        (f"/org/teams/{org['t1'].id}/move", {"target": org["i2"].id, "reason": "调整"}),
        (f"/org/teams/{org['t1'].id}/merge", {"target": org["t2"].id, "reason": "合并"}),
        (f"/org/teams/{org['t1'].id}/deactivate", {"reason": "停用"}),
        ("/org/import/" + "0" * 32 + "/confirm", {}),
    ]:
        for token in (None, "forged"):
            response = post(client, url, data, token=token)
            assert response.status_code == 400, url
            assert "表单已过期或来源无效" in text(response)
    assert counts() == before


def test_get_requests_change_nothing(client, admin, org):
    before = counts()
    urls = own_county(org) + [
        f"/org/teams/{org['t1'].id}/move?to={org['i2'].id}",
        f"/org/teams/{org['t1'].id}/merge?into={org['t2'].id}",
        f"/org/teams/{org['t1'].id}/deactivate",
        "/org/", f"/org/counties/{org['A'].id}", f"/org/institutions/{org['i1'].id}", f"/org/teams/{org['t1'].id}",
    ]
    for url in urls:
        assert client.get(url).status_code == 200, url
    assert counts() == before


# ---------------------------------------------------------------------------
# Organisation import
# ---------------------------------------------------------------------------


def upload(client, path: Path, token: str | None = "fetch"):
    if token == "fetch":
        token = csrf_token(text(client.get("/org/import")))
    data = {"file": (io.BytesIO(Path(path).read_bytes()), Path(path).name)}
    if token is not None:
        data["csrf_token"] = token
    return client.post("/org/import", data=data, content_type="multipart/form-data")


def token_of(location: str) -> str:
    match = re.fullmatch(r"/org/import/([0-9a-f]{32})", location)
    assert match, location
    return match.group(1)


def test_import_previews_then_confirms_once(client, admin, tmp_path):
    path = org_sheet(tmp_path / "机构.xlsx", SHEET_ROWS)
    before = counts()

    response = upload(client, path)

    assert response.status_code == 302
    token = token_of(response.headers["Location"])
    preview = text(client.get(response.headers["Location"]))
    assert "预览（未写入）" in preview and "机构.xlsx" in preview
    assert "读取 4 行，拒绝 1 行；新建县区 2 个、机构 2 家、团队 3 个；更新机构 0 家、团队 0 个" in preview
    rows = re.findall(r'<tr><td>([^<]*)</td><td class="num">(\d+)</td><td>([^<]*)</td><td>([^<]*)</td><td class="wrap">([^<]*)</td></tr>',
                      preview)
    assert rows == [("机构与团队", "5", "县区代码", "", "县区“湘阴县”不存在，新建时须填写6位县区代码")]
    assert counts() == before  # a preview writes nothing
    uploads = Path(client.application.config["UPLOAD_DIR"])
    assert (uploads / f"org-{token}.xlsx").exists()

    report = client.get(f"/org/import/{token}/report.csv")
    body = report.get_data().decode("utf-8-sig")
    report.close()
    assert report.status_code == 200 and "湘阴县" in body
    assert counts() == {**before, "audit_log": before["audit_log"] + 1}
    log = db.session.scalar(select(AuditLog).where(AuditLog.action == "export.import_errors"))
    assert log.user_id == admin.id and log.target.startswith(f"org_import:{token[:12]}") and log.detail.endswith(".csv")

    confirm_token = csrf_token(preview)
    done = post(client, f"/org/import/{token}/confirm", token=confirm_token)

    assert done.headers["Location"] == f"/org/import/{token}"
    result = follow(client, done)
    assert "导入完成：读取 4 行，拒绝 1 行；新建县区 2 个、机构 2 家、团队 3 个；更新机构 0 家、团队 0 个" in flashes(result)
    assert "已导入" in result and "确认导入</button>" not in result
    db.session.rollback()
    assert sorted(db.session.scalars(select(County.name))) == ["平江县", "汨罗市"]
    assert sorted(db.session.scalars(select(Team.name))) == ["丙组", "乙组", "甲组"]
    inst = db.session.scalar(select(Institution).where(Institution.name == "新市镇中心卫生院"))
    assert inst.type == "中心卫生院"  # inferred from the name
    assert not (uploads / f"org-{token}.xlsx").exists()  # the upload is not kept
    after = counts()

    again = post(client, f"/org/import/{token}/confirm", token=confirm_token)

    assert again.headers["Location"] == f"/org/import/{token}"
    assert ("info", "这份文件已经确认导入过，没有重复导入。") in flash_kinds(follow(client, again))
    assert counts() == after
    org_page = text(client.get("/org/"))
    assert "平江县" in org_page and "汨罗市" in org_page
    assert "团队长：王芳" in text(client.get(f"/org/teams/{db.session.scalar(select(Team.id).where(Team.name == '甲组'))}"))


def test_unreadable_or_empty_files_get_a_chinese_message(client, admin, tmp_path):
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04 not a workbook" * 10)
    before = counts()
    uploads = Path(client.application.config["UPLOAD_DIR"])
    kept = set(uploads.glob("org-*"))

    response = upload(client, broken)

    assert response.status_code == 400
    assert any(f.startswith("文件无法导入：") for f in flashes(text(response))), flashes(text(response))
    no_header = tmp_path / "x.csv"
    no_header.write_text("a,b\n1,2\n", encoding="utf-8")
    response = upload(client, no_header)
    assert response.status_code == 400 and any(f.startswith("文件无法导入：") for f in flashes(text(response)))
    pdf = tmp_path / "org.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    response = upload(client, pdf)
    assert response.status_code == 400 and "机构与团队表：只支持 .xlsx、.xls、.csv 文件" in flashes(text(response))
    assert counts() == before
    assert set(uploads.glob("org-*")) == kept  # a refused file is not kept


def test_import_pages_refuse_odd_tokens_and_reports(client, admin, tmp_path):
    clean = token_of(upload(client, org_sheet(tmp_path / "ok.xlsx", SHEET_ROWS[:2])).headers["Location"])

    assert client.get(f"/org/import/{clean}/report.csv").status_code == 404  # nothing rejected
    for url in ("/org/import/" + "f" * 32, "/org/import/..%2F..%2Fetc", "/org/import/notatoken/report.csv",
                f"/org/import/{clean}/report.pdf", f"/org/import/{clean}/report.json"):
        assert client.get(url).status_code == 404, url
    state_path = Path(client.application.config["UPLOAD_DIR"]) / f"org-{clean}.json"
    state = json.loads(state_path.read_text("utf-8"))
    secret = Path(client.application.config["UPLOAD_DIR"]) / "secret.csv"
    secret.write_text("x", encoding="utf-8")
    state["preview"]["error_report"] = "../uploads/secret"  # a tampered state file: still refused
    state_path.write_text(json.dumps(state), "utf-8")
    assert client.get(f"/org/import/{clean}/report.csv").status_code == 404
    assert counts()["audit_log"] == len(db.session.scalars(select(AuditLog).where(AuditLog.action == "login")).all())


def test_another_admins_import_is_not_found(client, admin, tmp_path):
    token = token_of(upload(client, org_sheet(tmp_path / "a.xlsx", SHEET_ROWS)).headers["Location"])
    state_path = Path(client.application.config["UPLOAD_DIR"]) / f"org-{token}.json"
    state = json.loads(state_path.read_text("utf-8"))
    state["actor_id"] = admin.id + 1  # uploaded by someone else
    state_path.write_text(json.dumps(state), "utf-8")

    assert client.get(f"/org/import/{token}").status_code == 404
    assert post(client, f"/org/import/{token}/confirm").status_code == 404
    assert counts()["counties"] == 0


def test_column_template_downloads_and_previews(client, admin, tmp_path):
    response = client.get("/org/import/template.xlsx")
    data = response.get_data()
    response.close()

    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    frame = pd.read_excel(io.BytesIO(data), dtype=str, engine="openpyxl")
    assert list(frame.columns) == ORG_COLUMNS and len(frame) == 1
    path = tmp_path / "template.xlsx"
    path.write_bytes(data)
    preview = text(client.get(upload(client, path).headers["Location"]))
    assert "读取 1 行，拒绝 0 行；新建县区 1 个、机构 1 家、团队 1 个" in preview


# ---------------------------------------------------------------------------
# Simultaneous confirmations (double clicks, two tabs, two workers)
# ---------------------------------------------------------------------------


def _signed_in(racing, username: str):
    """A client of ``racing`` (an app of its own: each request gets its own session) signed in."""
    browser = racing.test_client()
    page = browser.get("/")
    assert browser.post("/", data={"username": username, "password": PASSWORD,
                                   "csrf_token": csrf_token(text(page))}).status_code == 302
    return browser, csrf_token(text(browser.get("/org/")))


def _at_once(requests: list) -> list:
    import threading

    barrier = threading.Barrier(len(requests))
    results: list = [None] * len(requests)

    def run(n, request):
        barrier.wait(timeout=60)
        try:
            response = request()
            results[n] = response.status_code, response.headers.get("Location")
        except BaseException as exc:  # reported below, not lost in the thread
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n, r)) for n, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


@pytest.mark.slow
def test_simultaneous_merges_merge_once(make_app, org, make_user):
    make_user("cityadmin", "admin")
    t1, t2 = org["t1"].id, org["t2"].id
    db.session.remove()
    racing = make_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 6, "max_overflow": 0})
    clients = [_signed_in(racing, "cityadmin") for _ in range(4)]

    results = _at_once([
        (lambda c=c, tok=tok: c.post(f"/org/teams/{t1}/merge", data={"target": t2, "reason": "团队合并", "csrf_token": tok}))
        for c, tok in clients
    ])

    assert all(r[0] == 302 for r in results), results
    assert [c.action for c in changes("team", t1)] == ["merge"]
    assert [c.action for c in changes("team", t2)] == ["absorb"]
    assert db.session.scalar(select(func.count()).select_from(Resident).where(Resident.team_id == t2)) == 4


@pytest.mark.slow
def test_simultaneous_import_confirmations_import_once(make_app, app, make_user, tmp_path):
    make_user("cityadmin", "admin")
    db.session.remove()
    racing = make_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 6, "max_overflow": 0})
    clients = [_signed_in(racing, "cityadmin") for _ in range(4)]
    first, token = clients[0]
    path = org_sheet(tmp_path / "机构.xlsx", SHEET_ROWS)
    uploaded = first.post("/org/import", data={"csrf_token": token, "file": (io.BytesIO(path.read_bytes()), path.name)},
                          content_type="multipart/form-data")
    import_token = token_of(uploaded.headers["Location"])

    results = _at_once([(lambda c=c, tok=tok: c.post(f"/org/import/{import_token}/confirm", data={"csrf_token": tok}))
                        for c, tok in clients])

    assert all(r == (302, f"/org/import/{import_token}") for r in results), results
    db.session.rollback()
    assert sorted(db.session.scalars(select(County.name))) == ["平江县", "汨罗市"]
    assert db.session.scalar(select(func.count()).select_from(OrgChange).where(OrgChange.action == "create")) == 7
    messages = [flashes(text(c.get(f"/org/import/{import_token}"))) for c, _ in clients]
    assert sum("导入完成" in " ".join(m) for m in messages) == 1
    assert sum("这份文件已经确认导入过，没有重复导入。" in m for m in messages) == 3
