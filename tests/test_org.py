"""Organisation maintenance: services, history, the org CLI and sheet import, and what
deactivation, moves and merges do to draws and past figures."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.draws.services import draw_month_and_commit
from app.extensions import db
from app.models import AuditLog, Case, County, Institution, OrgChange, Resident, Round, Team
from app.org.maintenance import (
    Actor,
    OrgError,
    create_county,
    create_institution,
    create_team,
    describe,
    edit_county,
    edit_institution,
    edit_team,
    former_names,
    history,
    merge_teams,
    move_team,
    set_active,
)
from app.reports.indicators import unit_indicators
from tests.draws_support import MONTH, NOW, SETTINGS, add_residents
from tests.reports_support import add_results

ACTOR = Actor("tester")


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def city(app):
    county = create_county(db.session, "岳阳县", "430621", actor=ACTOR)
    inst = create_institution(db.session, county, name="荣家湾镇卫生院", code="I001", type="乡镇卫生院", actor=ACTOR)
    other = create_institution(db.session, county, name="新墙镇卫生院", code=None, type="乡镇卫生院", actor=ACTOR)
    a = create_team(db.session, inst, name="一组", leader_doctor="张伟", doctor_phone="13800138000", actor=ACTOR)
    b = create_team(db.session, inst, name="二组", leader_doctor=None, doctor_phone=None, actor=ACTOR)
    c = create_team(db.session, other, name="三组", leader_doctor="李娜", doctor_phone="0730-8221234", actor=ACTOR)
    db.session.commit()
    return county, inst, other, a, b, c


# ---------------------------------------------------------------------------
# Validation and history
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, code, message", [
    ("", "430621", "请填写县市区名称"),
    ("岳阳县", "43062", "6位行政区划代码"),
    ("岳阳县", "930621", "6位行政区划代码"),
    ("岳阳县", "4306a1", "6位行政区划代码"),
    ("岳阳\x07县", "430621", "控制字符"),
])
def test_county_input_is_validated(app, name, code, message):
    with pytest.raises(OrgError, match=message):
        create_county(db.session, name, code, actor=ACTOR)
    db.session.rollback()
    assert count(County) == 0


def test_duplicates_are_refused_with_their_names(city):
    county, inst, other, a, b, c = city
    with pytest.raises(OrgError, match="县区名称“岳阳县”已存在"):
        create_county(db.session, "岳阳县", "430623", actor=ACTOR)
    with pytest.raises(OrgError, match="县区代码“430621”已存在"):
        create_county(db.session, "华容县", "430621", actor=ACTOR)
    with pytest.raises(OrgError, match="本县区已有名为“新墙镇卫生院”的机构"):
        create_institution(db.session, county, name="新墙镇卫生院", code=None, type="乡镇卫生院", actor=ACTOR)
    with pytest.raises(OrgError, match="机构代码“I001”已被“荣家湾镇卫生院”使用"):
        edit_institution(db.session, other, name=other.name, code="i001", type=other.type, actor=ACTOR)
    with pytest.raises(OrgError, match="该机构已有名为“二组”的团队"):
        edit_team(db.session, a, name="二组", leader_doctor=None, doctor_phone=None, actor=ACTOR)
    with pytest.raises(OrgError, match="机构类型“医院”无效"):
        create_institution(db.session, county, name="某医院", code=None, type="医院", actor=ACTOR)
    with pytest.raises(OrgError, match="联系电话“12345”无效"):
        create_team(db.session, inst, name="四组", leader_doctor=None, doctor_phone="12345", actor=ACTOR)
    # the same name is fine in another county / institution
    huarong = create_county(db.session, "华容县", "430623", actor=ACTOR)
    create_institution(db.session, huarong, name="新墙镇卫生院", code=None, type="乡镇卫生院", actor=ACTOR)
    # another county's institution holding a code is not named
    with pytest.raises(OrgError, match="机构代码“I001”已被其他县区的机构使用"):
        create_institution(db.session, huarong, name="东山镇卫生院", code="I001", type="乡镇卫生院", actor=ACTOR)
    create_team(db.session, other, name="一组", leader_doctor=None, doctor_phone=None, actor=ACTOR)


def test_rename_is_recorded_and_old_name_kept(city):
    county, inst, other, a, b, c = city
    changes = edit_institution(db.session, inst, name="荣家湾镇中心卫生院", code="I001", type="中心卫生院",
                               actor=ACTOR, reason="机构升级")
    db.session.commit()
    assert changes == {"name": "荣家湾镇中心卫生院", "type": "中心卫生院"}
    assert former_names(db.session, "institution", inst.id) == ["荣家湾镇卫生院"]
    actions = [h.action for h in history(db.session, "institution", inst.id)]
    assert sorted(actions) == ["create", "edit", "rename"]
    rename = next(h for h in history(db.session, "institution", inst.id) if h.action == "rename")
    assert json.loads(rename.before) == {"name": "荣家湾镇卫生院"} and rename.reason == "机构升级"
    assert count(AuditLog, AuditLog.action == "org_rename") == 1
    edit_team(db.session, a, name=a.name, leader_doctor="张伟", doctor_phone="13912345678", actor=ACTOR)
    change = history(db.session, "team", a.id)[0]
    assert describe(change) == "联系电话：138****8000 → 139****5678"  # the history masks phones
    # nothing changed: nothing recorded
    assert edit_county(db.session, county, name="岳阳县", code="430621", actor=ACTOR) == {}
    assert count(OrgChange, OrgChange.unit_kind == "county") == 1


def test_move_and_merge_rules(city, make_county, make_team):
    county, inst, other, a, b, c = city
    far = make_team(make_county("华容县", "430623"), "东山镇卫生院", "五组")
    with pytest.raises(OrgError, match="原因"):
        move_team(db.session, a, other, reason="", actor=ACTOR)
    with pytest.raises(OrgError, match="本县区"):
        move_team(db.session, a, far.institution, reason="调整", actor=ACTOR)
    with pytest.raises(OrgError, match="本县区"):
        merge_teams(db.session, a, far, reason="合并", actor=ACTOR)
    with pytest.raises(OrgError, match="它自己"):
        merge_teams(db.session, a, a, reason="合并", actor=ACTOR)
    set_active(db.session, "institution", other, False, reason="撤并", actor=ACTOR)
    with pytest.raises(OrgError, match="已停用"):
        move_team(db.session, a, other, reason="调整", actor=ACTOR)
    with pytest.raises(OrgError, match="已停用"):
        merge_teams(db.session, a, c, reason="合并", actor=ACTOR)


def test_deactivation_needs_a_reason_and_a_merged_team_stays_inactive(city):
    county, inst, other, a, b, c = city
    with pytest.raises(OrgError, match="原因"):
        set_active(db.session, "team", b, False, reason=" ", actor=ACTOR)
    add_residents(b, 3)
    assert merge_teams(db.session, b, a, reason="团队整合", actor=ACTOR) == 3
    db.session.commit()
    assert count(Resident, Resident.team_id == a.id) == 3 and not b.active and b.merged_into_id == a.id
    assert set_active(db.session, "team", b, False, reason="再次停用", actor=ACTOR) is False  # already
    with pytest.raises(OrgError, match="已合并"):
        set_active(db.session, "team", b, True, reason=None, actor=ACTOR)
    with pytest.raises(OrgError, match="已停用或已合并"):
        merge_teams(db.session, b, a, reason="团队整合", actor=ACTOR)
    set_active(db.session, "team", a, False, reason="暂停", actor=ACTOR)
    set_active(db.session, "institution", inst, False, reason="撤并", actor=ACTOR)
    with pytest.raises(OrgError, match="请先启用所属机构"):
        set_active(db.session, "team", a, True, reason=None, actor=ACTOR)
    assert [h.action for h in history(db.session, "team", a.id)][:2] == ["deactivate", "absorb"]


# ---------------------------------------------------------------------------
# Draws and past figures
# ---------------------------------------------------------------------------


def _draw(county):
    return draw_month_and_commit(db.session, MONTH, now=NOW, settings=SETTINGS, actor="test", county_ids=[county.id])


def test_deactivated_units_are_not_drawn_and_their_shortfall_says_why(city):
    county, inst, other, a, b, c = city
    add_residents(a, 15)
    add_residents(b, 15)
    add_residents(c, 15)
    set_active(db.session, "team", b, False, reason="团队解散", actor=ACTOR)
    set_active(db.session, "institution", other, False, reason="机构撤并", actor=ACTOR)
    db.session.commit()
    (outcome,) = _draw(county)
    assert outcome.status == "drawn"
    round_ = db.session.get(Round, outcome.round_id)
    drawn_teams = set(db.session.scalars(select(Case.team_id).where(Case.round_id == round_.id)))
    assert drawn_teams == {a.id}
    assert [u.institution_id for u in round_.units] == [inst.id]  # the inactive institution has no line
    assert "所属团队已停用 15" in round_.units[0].shortfall_reason


def test_an_inactive_county_is_not_drawn(city):
    county, inst, other, a, b, c = city
    add_residents(a, 12)
    set_active(db.session, "county", county, False, reason="区划调整", actor=ACTOR)
    db.session.commit()
    assert draw_month_and_commit(db.session, MONTH, now=NOW, settings=SETTINGS, actor="test") == []
    (outcome,) = _draw(county)
    assert outcome.status == "skipped" and "已停用" in outcome.message
    assert count(Round) == 0


def _figures(county, inst, other):
    levels = {}
    for level, kwargs in (("county", {}), ("institution", {}), ("team", {}),
                          ("team-in-inst", {"institution_id": inst.id}), ("team-in-other", {"institution_id": other.id})):
        units = unit_indicators(db.session, level.split("-")[0], ["2026-10"], county_id=county.id, **kwargs)
        levels[level] = {u.key: (u.counts.completes, u.counts.sat_top2, u.counts.sat_n, u.counts.score_sum) for u in units}
    return levels


def test_merge_and_move_keep_every_past_figure(city):
    county, inst, other, a, b, c = city
    add_results(county, a, "2026-10", [{"satisfaction": 5}] * 3 + [{"satisfaction": 2}])
    add_results(county, b, "2026-10", [{"satisfaction": 4}] * 2, outcomes=["refusal"])
    add_results(county, c, "2026-10", [{"satisfaction": 1}] * 2)
    before = _figures(county, inst, other)
    assert before["team-in-inst"].keys() == {a.id, b.id}

    merge_teams(db.session, b, a, reason="团队整合", actor=ACTOR)
    move_team(db.session, a, other, reason="划归新墙", actor=ACTOR)
    db.session.commit()
    assert a.institution_id == other.id and count(Resident, Resident.team_id == b.id) == 0
    assert _figures(county, inst, other) == before


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def test_add_county_cli(runner, app):
    ok = runner.invoke(args=["org", "add-county", "岳阳县", "--code", "430621"])
    assert ok.exit_code == 0 and ok.output.strip() == "已新建县区 岳阳县（430621）"
    again = runner.invoke(args=["org", "add-county", "岳阳县", "--code", "430622"])
    assert again.exit_code == 1 and "县区名称“岳阳县”已存在" in again.output
    bad = runner.invoke(args=["org", "add-county", "华容县", "--code", "4306"])
    assert bad.exit_code == 1 and "6位行政区划代码" in bad.output
    assert db.session.scalars(select(County.name)).all() == ["岳阳县"]
    listing = runner.invoke(args=["org", "list", "--county", "岳阳县"])
    assert listing.exit_code == 0 and "岳阳县（430621）机构 0 家" in listing.output
    missing = runner.invoke(args=["org", "list", "--county", "不存在县"])
    assert missing.exit_code == 1 and "不存在" in missing.output


def test_empty_database_to_a_drawn_month(runner, app, tmp_path, monkeypatch):
    """A real bureau's first steps: a county, a supervisor with a real name, a roster, a draw."""
    from tests.rosters import people, rows_of, write_csv

    monkeypatch.setattr("app.draws.cli.clock_now", lambda: NOW)
    assert runner.invoke(args=["org", "add-county", "岳阳县", "--code", "430621"]).exit_code == 0
    created = runner.invoke(args=["users", "create", "sup1", "--role", "supervisor", "--county", "岳阳县",
                                  "--name", "张三", "--password-stdin"], input="Yueyang-super-2026\n")
    assert created.exit_code == 0, created.output
    path = write_csv(tmp_path / "roster.csv", rows_of(people(24)))
    imported = runner.invoke(args=["roster", "import", str(path), "--county", "岳阳县", "--create-missing"])
    assert imported.exit_code == 0, imported.output
    assert "rejected=0" in imported.output and "新建机构 1 个" in imported.output
    created_units = db.session.scalars(select(OrgChange.unit_kind).where(OrgChange.reason == "名册导入时自动新建"))
    assert sorted(set(created_units)) == ["institution", "team"]  # the units the roster made have their history
    drawn = runner.invoke(args=["draw", "--month", MONTH])
    assert drawn.exit_code == 0, drawn.output
    assert f"岳阳县 {MONTH}：已抽样" in drawn.output
    assert count(Case, Case.kind == "primary") == 10


# ---------------------------------------------------------------------------
# Sheet import
# ---------------------------------------------------------------------------

SHEET_HEADER = ["县区", "县区代码", "机构", "机构代码", "机构类型", "团队", "团队长", "联系电话"]


def _sheet(tmp_path, rows, name="机构团队.xlsx", title=True):
    from app.core.spreadsheets import write_xlsx
    import pandas as pd

    frame = pd.DataFrame(rows, columns=SHEET_HEADER)
    return write_xlsx(tmp_path / name, {"机构": frame})


GOOD_ROWS = [
    ["岳阳县", "430621", "荣家湾镇卫生院", "I001", "", "一组", "张伟", "13800138000"],
    ["岳阳县", "430621", "荣家湾镇卫生院", "I001", "", "二组", "李娜", ""],
    ["岳阳县", "", "新墙镇中心卫生院", "", "", "一组", "", "0730-8221234"],
    ["华容县", "430623", "东山街道社区卫生服务中心", "", "", "", "", ""],
    ["华容县", "430623", "万庾镇卫生院", "I009", "乡镇卫生院", "三组", "王芳", ""],
]
BAD_ROWS = [
    ["临湘市", "", "某某卫生院", "", "", "一组", "", ""],  # new county without a code
    ["岳阳县", "430699", "某卫生院", "", "", "", "", ""],  # county code disagrees
    ["岳阳县", "430621", "某门诊部", "", "", "", "", ""],  # type cannot be inferred
    ["岳阳县", "430621", "荣家湾镇卫生院", "I001", "", "一组", "", ""],  # repeats row 2
    ["岳阳县", "430621", "另一卫生院", "I001", "", "", "", ""],  # code of another institution
    ["华容县", "430623", "万庾镇卫生院", "", "", "四组", "", "555"],  # bad phone
]


def test_sheet_import_reports_each_rejected_row_and_keeps_the_rest(runner, app, tmp_path):
    path = _sheet(tmp_path, GOOD_ROWS + BAD_ROWS)
    dry = runner.invoke(args=["org", "import", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "read=11 rejected=6 counties_created=2 institutions_created=4" in dry.output
    assert "预览模式" in dry.output and count(County) == 0 and count(OrgChange) == 0

    result = runner.invoke(args=["org", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "read=11 rejected=6 counties_created=2 institutions_created=4 institutions_updated=0 teams_created=4" in result.output
    for fragment in ("第7行", "须填写6位县区代码", "已有代码 430621", "无法从机构名称推断类型", "与第2行重复",
                     "已被“荣家湾镇卫生院”使用", "联系电话“555”无效"):
        assert fragment in result.output
    report = result.output.split("错误报告：")[1].strip()
    import pandas as pd

    frame = pd.read_csv(report.replace(".xlsx", ".csv"), dtype=str)
    assert frame["行号"].astype(int).tolist() == [7, 8, 9, 10, 11, 12]
    assert {c.name for c in db.session.scalars(select(County))} == {"岳阳县", "华容县"}  # nothing of 临湘市 left
    assert db.session.scalar(select(Institution.type).where(Institution.name == "东山街道社区卫生服务中心")) == "社区卫生服务中心"
    team = db.session.scalar(select(Team).where(Team.name == "一组", Team.leader_doctor == "张伟"))
    assert team.doctor_phone == "13800138000"
    assert count(OrgChange, OrgChange.action == "create") == 2 + 4 + 4

    # again, with one leader changed: only that team is updated
    rows = [list(r) for r in GOOD_ROWS]
    rows[1][6] = "赵敏"
    again = runner.invoke(args=["org", "import", str(_sheet(tmp_path, rows, "again.xlsx"))])
    assert "read=5 rejected=0 counties_created=0 institutions_created=0 institutions_updated=0 teams_created=0 teams_updated=1" in again.output
    assert count(OrgChange, OrgChange.action == "edit") == 1


@pytest.mark.parametrize("content, name, fragment", [
    (b"", "empty.xlsx", "文件为空"),
    (b"not a workbook", "broken.xlsx", "无法读取 Excel 文件"),
    ("县区,机构\n".encode(), "only-header.csv", "没有数据行"),
    ("姓名,电话\n张三,138\n".encode(), "wrong.csv", "未找到表头"),
    (b"x", "file.pdf", "不支持的文件类型"),
])
def test_unreadable_sheets_fail_cleanly(runner, app, tmp_path, content, name, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    result = runner.invoke(args=["org", "import", str(path)])
    assert result.exit_code == 1 and fragment in result.output, result.output
    assert count(County) == 0
