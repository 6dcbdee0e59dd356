"""The draw's commands and pages: flask draw / draw verify / draw redraw / draw close / export
call-list, and the supervisors' pages with their county scope, CSRF and audit log."""
from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditLog, Case, Round
from tests.draws_support import MONTH, NOW, add_residents
from tests.helpers import csrf_token


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch):
    for target in ("app.draws.cli.clock_now", "app.draws.routes.clock_now"):
        monkeypatch.setattr(target, lambda: NOW)


@pytest.fixture
def counties(county, make_county, make_team):
    add_residents(make_team(county, "新墙镇卫生院", "甲团队"), 15)
    add_residents(make_team(county, "小镇卫生院", "乙团队"), 4)
    other = make_county("华容县", "430623")
    add_residents(make_team(other, "东山镇卫生院", "丙团队"), 12)
    return county, other


def invoke(runner, *args):
    result = runner.invoke(args=list(args))
    db.session.rollback()
    return result


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def test_draw_command_prints_a_summary_per_county(runner, counties, app):
    result = invoke(runner, "draw", "--month", MONTH)
    assert result.exit_code == 0, result.output
    assert "岳阳县 2026-11：已抽样。机构 2 个，主样本 14，备用样本 5，样本不足机构 1 个" in result.output
    assert "华容县 2026-11：已抽样。机构 1 个，主样本 10，备用样本 2，样本不足机构 0 个" in result.output
    assert "小镇卫生院：符合条件的居民仅 4 人" in result.output
    assert result.output.count("呼叫名单：") == 4
    again = invoke(runner, "draw", "--month", MONTH, "--county", "岳阳县")
    assert again.exit_code == 0 and "本次未重复抽样" in again.output
    assert db.session.scalar(select(func.count()).select_from(Round)) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["draw"], "月份格式应为 YYYY-MM"),
        (["draw", "--month", "11/2026"], "月份格式应为 YYYY-MM"),
        (["draw", "--month", "2026-10"], "已经结束"),
        (["draw", "--month", MONTH, "--county", "不存在县"], "找不到县市区：不存在县"),
        (["draw", "--month", MONTH, "--sample-size", "5"], "不能少于10"),
        (["draw", "verify", "--month", MONTH, "--county", "岳阳县"], "尚未抽样"),
        (["export", "call-list", "--month", MONTH, "--county", "岳阳县"], "尚未抽样"),
    ],
)
def test_bad_input_exits_non_zero_with_a_chinese_message(runner, counties, args, message):
    result = invoke(runner, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_verify_command(runner, counties):
    invoke(runner, "draw", "--month", MONTH)
    result = invoke(runner, "draw", "verify", "--month", MONTH, "--county", "岳阳县")
    assert result.exit_code == 0, result.output
    assert "核验通过" in result.output and "新墙镇卫生院：一致（主样本 10，备用 5）" in result.output
    case = db.session.scalar(select(Case).where(Case.kind == "primary").order_by(Case.id))
    case.position, other = 99, case.position
    db.session.commit()
    result = invoke(runner, "draw", "verify", "--month", MONTH, "--county", "岳阳县")
    assert result.exit_code != 0 and "核验未通过" in result.output and other != 99


def test_redraw_and_close_commands(runner, counties):
    invoke(runner, "draw", "--month", MONTH)
    seed = db.session.scalar(select(Round.seed).join(Round.county).where(Round.county_id == counties[0].id))
    result = invoke(runner, "draw", "redraw", "--month", MONTH, "--county", "岳阳县", "--reason", "名册有误")
    assert result.exit_code == 0 and "已重新抽样" in result.output, result.output
    round_ = db.session.scalar(select(Round).where(Round.county_id == counties[0].id))
    assert round_.seed != seed and round_.redraws == 1
    result = invoke(runner, "draw", "close", "--month", MONTH)
    assert result.exit_code == 0 and result.output.count("已关闭。") == 2
    result = invoke(runner, "draw", "redraw", "--month", MONTH, "--county", "岳阳县", "--reason", "x")
    assert result.exit_code != 0 and "已结束" in result.output


def test_export_call_list_command_is_logged(runner, counties, app):
    invoke(runner, "draw", "--month", MONTH)
    result = invoke(runner, "export", "call-list", "--month", MONTH, "--county", "华容县")
    assert result.exit_code == 0, result.output
    path = result.output.split("呼叫名单：")[1].splitlines()[0].strip()
    assert path.endswith("华容县/2026-11-呼叫名单.xlsx")
    assert len(pd.read_excel(path, engine="calamine")) == 12
    log = db.session.scalar(select(AuditLog).where(AuditLog.action == "export_call_list"))
    assert log.target == "华容县 2026-11"


# ---------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------


def drawn(runner):
    invoke(runner, "draw", "--month", MONTH)
    return {r.county.name: r for r in db.session.scalars(select(Round))}


def test_supervisor_sees_only_their_county(client, login, make_user, counties, runner):
    rounds = drawn(runner)
    make_user("sup", "supervisor", counties[0])
    login("sup")
    page = client.get("/draws/").get_data(as_text=True)
    assert "岳阳县" in page and "华容县" not in page
    assert client.get(f"/draws/{rounds['岳阳县'].id}").status_code == 200
    other = rounds["华容县"].id
    for url in (f"/draws/{other}", f"/draws/{other}/call-list.xlsx", f"/draws/{other}/call-list.csv",
                f"/draws/{other}/print"):
        assert client.get(url).status_code == 404, url
    assert db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action.like("export%"))) == 0


def test_callers_cannot_open_draw_pages(client, login, make_user, counties):
    make_user("caller", "caller", counties[0])
    login("caller")
    assert client.get("/draws/").status_code == 403
    assert client.get("/scheduler/").status_code == 403


def test_supervisor_draws_the_month_with_csrf(client, login, make_user, counties):
    make_user("sup", "supervisor", counties[0])
    login("sup")
    page = client.get("/draws/").get_data(as_text=True)
    assert client.post("/draws/draw", data={"county": str(counties[0].id)}).status_code == 400  # no token
    # a supervisor cannot draw another county by editing the form
    forged = client.post("/draws/draw", data={"county": str(counties[1].id), "csrf_token": csrf_token(page)})
    assert forged.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(Round)) == 0
    response = client.post("/draws/draw", data={"county": str(counties[0].id), "csrf_token": csrf_token(page)})
    assert response.status_code == 302
    db.session.rollback()
    [round_] = db.session.scalars(select(Round)).all()
    assert round_.county_id == counties[0].id and round_.triggered_by == "sup"
    detail = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "已抽样" in detail and "小镇卫生院" in detail and "符合条件的居民仅 4 人" in detail
    # a double click draws nothing more
    client.post("/draws/draw", data={"county": str(counties[0].id), "csrf_token": csrf_token(page)})
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Round)) == 1
    assert client.get("/draws/draw").status_code == 405


def test_call_list_download_and_print_are_logged(client, login, make_user, counties, runner):
    rounds = drawn(runner)
    make_user("sup", "supervisor", counties[0])
    login("sup")
    rid = rounds["岳阳县"].id
    response = client.get(f"/draws/{rid}/call-list.xlsx")
    assert response.status_code == 200
    assert "2026-11-%E5%91%BC%E5%8F%AB%E5%90%8D%E5%8D%95.xlsx" in response.headers["Content-Disposition"]
    response.close()
    page = client.get(f"/draws/{rid}/print").get_data(as_text=True)
    assert page.count('class="sheet"') == 2  # one A4 page per institution
    assert "新墙镇卫生院" in page and "备用样本 1" in page
    assert client.get(f"/draws/{rid}/call-list.pdf").status_code == 404
    actions = db.session.scalars(select(AuditLog.action).where(AuditLog.user_id.is_not(None),
                                                                AuditLog.action != "login")).all()
    assert sorted(actions) == ["export.call_list", "export.call_list_print"]


def test_only_admins_redraw(client, login, make_user, counties, runner):
    rounds = drawn(runner)
    rid = rounds["岳阳县"].id
    make_user("sup", "supervisor", counties[0])
    make_user("boss", "admin")
    login("sup")
    token = csrf_token(client.get(f"/draws/{rid}").get_data(as_text=True))
    assert client.post(f"/draws/{rid}/redraw", data={"reason": "x", "csrf_token": token}).status_code == 403
    client.post("/logout", data={"csrf_token": token})
    login("boss")
    page = client.get(f"/draws/{rid}").get_data(as_text=True)
    assert "重新抽样原因" in page
    response = client.post(f"/draws/{rid}/redraw", data={"reason": "", "csrf_token": csrf_token(page)},
                           follow_redirects=True)
    assert "请填写重新抽样的原因" in response.get_data(as_text=True)
    response = client.post(f"/draws/{rid}/redraw", data={"reason": "名册更新", "csrf_token": csrf_token(page)},
                           follow_redirects=True)
    assert "已重新抽样" in response.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(Round, rid).redraws == 1
    case = db.session.scalar(select(Case).where(Case.round_id == rid))
    case.attempt_count = 2
    db.session.commit()
    page = client.get(f"/draws/{rid}").get_data(as_text=True)
    assert "有拨打记录，不能重新抽样" in page
    response = client.post(f"/draws/{rid}/redraw", data={"reason": "再来", "csrf_token": csrf_token(page)},
                           follow_redirects=True)
    assert "不能重新抽样" in response.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(Round, rid).redraws == 1


def test_scheduler_page_shows_next_runs_and_history(client, login, make_user, counties, app):
    from app.scheduler.jobs import run_job

    run_job(app, "draw", now=NOW)
    make_user("sup", "supervisor", counties[0])
    login("sup")
    page = client.get("/scheduler/").get_data(as_text=True)
    assert "下次运行" in page and "每月抽样" in page and "月末关闭" in page
    assert "02:00" in page and "23:59" in page
    assert "成功" in page and "岳阳县 2026-11：已抽样" in page
