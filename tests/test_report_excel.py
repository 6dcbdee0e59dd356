"""The monthly report workbook: its numbers equal those of the screens (board_rows,
unit_indicators, build_ranking, the Problem rows, the cases), phones are masked and cells
neutralised, the download's county scope and roles, the audit log, `flask report monthly`."""
from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from sqlalchemy import func, select

from app.reports.board import board_rows
from app.calls.interview import sync_problem
from app.extensions import db
from app.filters import pct
from app.models import AuditLog, Case, Problem, Resident, Response, Round, RoundInstitution
from app.reports.excel import SHEETS, build_monthly_report
from app.core.masking import scrub_phones
from app.reports.indicators import unit_indicators
from app.reports.rankings import build_ranking
from tests.draws_support import MONTH, NOW, add_residents
from tests.helpers import PASSWORD, csrf_token
from tests.reports_support import add_results

PREVIOUS = "2026-10"
EVIL_NAME = '=HYPERLINK("http://evil.example","点我")'
PLUS_NAME = "+SUM(1,2)"
FULL_PHONE = re.compile(r"(?<!\d)1\d{10}(?!\d)")
ANSWERS = {"identity": "self", "aware": "yes", "knows_doctor": "yes", "services": ["follow_up", "checkup"],
           "service_count": 3, "effect": "helpful", "satisfaction": "satisfied", "renew": "yes",
           "suggestion": "希望多上门，电话13912345678", "wants_contact": "no"}


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch):
    monkeypatch.setattr("app.reports.routes.clock_now", lambda: NOW)
    monkeypatch.setattr("app.reports.cli.clock_now", lambda: NOW)


def sat(score: int, **extra) -> dict:
    return {"satisfaction": score, **extra}


def _name_units(round_: Round, names: dict[int, str]) -> None:
    """add_results records "x" as the institution's name in the draw snapshot; give the real one."""
    for unit in db.session.scalars(select(RoundInstitution).where(RoundInstitution.round_id == round_.id)):
        unit.institution_name = names[unit.institution_id]
    for case in db.session.scalars(select(Case).where(Case.round_id == round_.id)):
        case.institution_name = names[case.institution_id]


def _case_of(team, month, **where) -> Case:
    stmt = (select(Case).join(Round, Round.id == Case.round_id).join(Response, Response.case_id == Case.id)
            .where(Round.month == month, Case.team_id == team.id).order_by(Case.id))
    for column, value in where.items():
        stmt = stmt.where(getattr(Response, column) == value)
    return db.session.scalars(stmt).first()


@pytest.fixture
def month_data(county, make_county, make_team):
    """岳阳县: 新墙镇卫生院 (甲团队, 乙团队) and 小镇卫生院 (丙团队) with completes, refusals,
    non-answers, a break-off, a vacant number replaced by a backup, flagged answers and their
    problems; the month before for the previous period and the teams' 12-month window;
    华容县 with a few interviews of its own."""
    a = make_team(county, "新墙镇卫生院", "甲团队")
    b = make_team(county, "新墙镇卫生院", "乙团队")
    c = make_team(county, "小镇卫生院", "丙团队")
    other = make_county("华容县", "430623")
    d = make_team(other, "东山镇卫生院", "丁团队")
    names = {t.institution_id: t.institution.name for t in (a, b, c, d)}

    add_results(county, a, PREVIOUS, [sat(5)] * 12 + [sat(3)] * 3)
    add_results(county, c, PREVIOUS, [sat(4)] * 10 + [sat(2, flags="dissatisfied")] * 2)
    add_results(county, a, MONTH, [sat(5)] * 6 + [sat(2, flags="dissatisfied"),
                                                   sat(4, aware=False, flags="unaware")],
                outcomes=["refusal", "no_answer"], status="open")
    add_results(county, b, MONTH, [sat(4)] * 3 + [sat(1, wants_contact=True, flags="dissatisfied,wants_contact")],
                outcomes=["vacant", "breakoff"], status="open")
    add_results(county, c, MONTH, [sat(5)] * 6 + [sat(3)] * 2 + [sat(4)] * 2, outcomes=["no_answer", "moved"],
                status="open")
    add_results(other, d, MONTH, [sat(5)] * 3 + [sat(2, flags="dissatisfied")])
    rounds = {r.county_id: r for r in db.session.scalars(select(Round).where(Round.month == MONTH))}
    for round_ in db.session.scalars(select(Round)):
        _name_units(round_, names)

    # a backup replaced the vacant number, another one waits in reserve (not in the report)
    round_ = rounds[county.id]
    vacant = db.session.scalar(select(Case).where(Case.round_id == round_.id, Case.outcome == "vacant"))
    vacant.replacement_state = "replaced"
    backup_ids = add_residents(b, 2)
    for position, (rid, status) in enumerate(zip(backup_ids, ("queued", "reserve")), start=1):
        resident = db.session.get(Resident, rid)
        db.session.add(Case(
            round_id=round_.id, institution_id=b.institution_id, team_id=b.id, resident_id=rid, kind="backup",
            position=position, status=status, attempt_count=0, name=resident.name, sex=resident.sex,
            age=70, phone=resident.phone, institution_name="新墙镇卫生院",
            team_name=b.name, population_labels="65岁及以上老年人", key_population=True,
            contract_start=resident.contract_start, contract_end=resident.contract_end,
            replaces_case_id=vacant.id if status == "queued" else None,
        ))

    # names that would run as formulas in Excel
    evil = _case_of(a, MONTH, satisfaction=2)
    evil.name = EVIL_NAME
    _case_of(b, MONTH, satisfaction=4).name = PLUS_NAME
    # one interview stored with its real answers (a phone number typed into the suggestion)
    answered = _case_of(c, MONTH, satisfaction=5)
    db.session.scalar(select(Response).where(Response.case_id == answered.id)).answers = json.dumps(
        ANSWERS, ensure_ascii=False)

    for response in db.session.scalars(select(Response).where(Response.flags.is_not(None))):
        sync_problem(db.session, response)
    db.session.flush()
    problems = db.session.scalars(select(Problem).where(Problem.county_id == county.id, Problem.month == MONTH)
                                  .order_by(Problem.id)).all()
    problems[0].status, problems[0].note = "assigned", "已交办机构，居民电话 13912345678"
    problems[-1].status, problems[-1].note = "closed", "=cmd|' /C calc'!A0"
    db.session.commit()
    return {"county": county, "other": other, "teams": (a, b, c, d), "rounds": rounds, "evil_case": evil.id,
            "answered_case": answered.id}


def settings_of(app):
    return dict(config=app.config, settings=app.extensions["report_settings"],
                questionnaires=app.extensions["questionnaires"], now=NOW)


def read(path_or_bytes) -> dict[str, pd.DataFrame]:
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    return pd.read_excel(source, sheet_name=None, engine="calamine", header=1)


def cells(path_or_bytes) -> list[str]:
    """Every non-empty cell of every sheet, the title rows included, as text."""
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    out = []
    for frame in pd.read_excel(source, sheet_name=None, engine="calamine", header=None).values():
        out += [str(v) for v in frame.to_numpy().ravel() if not pd.isna(v)]
    return out


def value(x):
    return None if pd.isna(x) else x


def _check_summary(frame: pd.DataFrame, progress_rounds) -> None:
    for rp in progress_rounds:
        county = rp.round.county.name
        mine = frame[frame["县市区"] == county]
        expected = [(p.name, p) for p in rp.institutions] + [("合计", rp.total)]
        assert list(mine["机构"]) == [name for name, _ in expected]
        for (_name, p), (_, row) in zip(expected, mine.iterrows()):
            assert (row["目标"], row["已完成"], row["已拨未结束"], row["未拨打"], row["尚缺"], row["拨打次数"],
                    row["待回访"], row["已替换"], row["样本缺口"]) == (
                p.target, p.completed, p.underway, p.untouched, p.remaining, p.attempts, p.callbacks,
                p.replacements, p.shortfall)
            a = p.aapor
            assert (row["完成(I)"], row["部分完成(P)"], row["拒访/中断(R)"], row["未联系上本人(NC)"], row["其他原因(O)"],
                    row["资格未知(UH)"], row["不符合条件(NE)"]) == (a.I, a.P, a.R, a.NC, a.O, a.UH, a.NE)
            for code in ("RR1", "RR2", "COOP1", "REF1", "CON1"):
                assert value(row[code]) == pytest.approx(getattr(a, code)), code


def _check_ranking(frame: pd.DataFrame, ranking) -> None:
    rows = ranking.ranked + ranking.insufficient
    assert list(frame[{"institution": "机构", "team": "团队"}[ranking.level]]) == [r.unit.name for r in rows]
    assert list(frame["状态"]) == ["参与排名"] * len(ranking.ranked) + ["样本不足"] * len(ranking.insufficient)
    for (_, got), want in zip(frame.iterrows(), rows):
        assert value(got["名次"]) == want.rank
        assert (got["完成访问数"], got["达标数"], got["有效回答数"]) == (want.completes, want.successes, want.n)
        for column, expected in (("观察值", want.observed), ("95%区间下限", want.low), ("95%区间上限", want.high),
                                 ("调整后", want.adjusted), ("上期调整后", want.previous),
                                 ("变化", want.change), ("综合得分", want.composite)):
            assert value(got[column]) == pytest.approx(expected), column
        assert got["所属"] == want.unit.parent


def test_county_workbook_equals_the_screens(app, month_data, tmp_path):
    county = month_data["county"]
    path = build_monthly_report(db.session, MONTH, county.id, tmp_path / "r.xlsx", **settings_of(app))
    assert path == tmp_path / "r.xlsx" and os.stat(path).st_mode & 0o777 == 0o600
    sheets = read(path)
    assert list(sheets) == list(SHEETS)

    # 汇总: the board's figures, then the county's indicators
    round_ = month_data["rounds"][county.id]
    board = board_rows(db.session, [round_.id], NOW)
    summary = sheets["汇总"]
    _check_summary(summary, board)
    assert set(summary["县市区"]) == {"岳阳县"} and "全市合计" not in set(summary["层级"])
    total = summary[summary["层级"] == "县市区合计"].iloc[0]
    assert (total["完成(I)"], total["拒访/中断(R)"], total["资格未知(UH)"], total["不符合条件(NE)"]) == (22, 2, 4, 1)
    [unit] = unit_indicators(db.session, "county", [MONTH], county_id=county.id)
    assert total["完成访问数(n)"] == unit.n == 22
    for column, code in (("满意率", "satisfaction"), ("签约知晓率", "aware"), ("家医知晓率", "knows_doctor"),
                         ("履约率", "fulfilment"), ("服务实效", "effect"), ("续约意愿率", "renew")):
        assert value(total[column]) == pytest.approx(unit.rate(code).value), column
    assert total["满意度得分"] == pytest.approx(unit.score) and total["问题数"] == unit.counts.flagged == 3
    xinqiang = summary[summary["机构"] == "新墙镇卫生院"].iloc[0]
    assert xinqiang["完成访问数(n)"] == 12 and xinqiang["满意率"] == pytest.approx(10 / 12)

    # rankings: the rankings page's defaults (institutions this month, teams over 12 months)
    institutions = build_ranking(db.session, "institution", MONTH, window=1, county_id=county.id)
    teams = build_ranking(db.session, "team", MONTH, window=12, county_id=county.id)
    _check_ranking(sheets["机构排名"], institutions)
    _check_ranking(sheets["团队排名"], teams)
    assert [r.unit.name for r in teams.ranked] == ["甲团队", "丙团队"] and teams.insufficient[0].unit.name == "乙团队"
    assert sheets["机构排名"]["上期调整后"].notna().all() and sheets["团队排名"]["上期调整后"].isna().all()

    # 问题清单: every problem of the month in the county
    problems = sheets["问题清单"]
    expected = db.session.scalars(select(Problem).where(Problem.county_id == county.id, Problem.month == MONTH)
                                  .order_by(Problem.id)).all()
    assert sorted(problems["编号"]) == [p.id for p in expected] and len(expected) == 3
    assert sorted(problems["状态"]) == sorted(["已交办", "已整改", "待处理"])
    assert "不满意、要求机构联系" in set(problems["问题"]) and "疑似虚假签约" in set(problems["问题"])
    assert "已交办机构，居民电话 139****5678" in set(problems["整改情况"])
    assert set(problems["机构"]) == {"新墙镇卫生院"} and set(problems["团队"]) == {"甲团队", "乙团队"}

    # 明细: one row per active case (the reserve backup is not one)
    detail = sheets["明细"]
    active = db.session.scalar(select(func.count()).select_from(Case)
                               .where(Case.round_id == round_.id, Case.status != "reserve"))
    assert len(detail) == active == board[0].total.aapor.cases == 29
    assert detail["结果"].value_counts().to_dict() == {
        "完成访问": 22, "无人接听": 2, "拒访": 1, "空号": 1, "中途终止": 1, "已迁出/已解约": 1, "未拨打": 1}
    backup = detail[detail["样本类型"] == "备用样本 1"].iloc[0]
    assert backup["替换情况"] == "替换主样本 15（空号）" and backup["AAPOR类别"] == "UH 资格未知"
    assert detail[detail["结果"] == "空号"].iloc[0]["替换情况"] == "已由备用样本 1替换"
    assert set(detail[detail["结果"] == "已迁出/已解约"]["AAPOR类别"]) == {"NE 不符合条件"}
    answered = detail[detail["意见建议"].notna()].iloc[0]
    assert answered["总体满意度"] == "满意" and answered["近3个月接受的服务"] == "随访（面对面、电话或微信）、健康体检"
    assert answered["意见建议"] == "希望多上门，电话139****5678"
    derived = detail[(detail["结果"] == "完成访问") & detail["意见建议"].isna()]
    assert len(derived) == 21 and set(derived["总体满意度"]) == {"非常满意", "满意", "一般", "不满意", "非常不满意"}
    assert set(detail[detail["问题标记"].notna()]["问题标记"]) == {"不满意", "疑似虚假签约", "不满意、要求机构联系"}
    assert detail["联系电话"].str.fullmatch(r"138\*{4}\d{4}").all()


def test_no_full_phone_and_formulas_neutralised(app, month_data, tmp_path):
    path = build_monthly_report(db.session, MONTH, None, tmp_path / "city.xlsx", **settings_of(app))
    everything = cells(path)
    assert not [c for c in everything if FULL_PHONE.search(c.replace("-", "").replace(" ", ""))]
    assert "'" + EVIL_NAME in everything and EVIL_NAME not in everything
    assert "'" + PLUS_NAME in everything and PLUS_NAME not in everything
    assert "'=cmd|' /C calc'!A0" in everything  # a supervisor's note too
    # nothing in the file is a formula
    book = openpyxl.load_workbook(path)
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate)


def test_city_workbook_layout_and_formats(app, month_data, tmp_path):
    path = build_monthly_report(db.session, MONTH, None, tmp_path / "city.xlsx", **settings_of(app))
    sheets = read(path)
    rounds = [month_data["rounds"][c.id] for c in (month_data["county"], month_data["other"])]
    board = board_rows(db.session, [r.id for r in rounds], NOW)
    summary = sheets["汇总"]
    _check_summary(summary[summary["层级"] != "全市合计"], board)
    city = summary[summary["层级"] == "全市合计"].iloc[0]
    assert city["已完成"] == sum(rp.total.completed for rp in board) == 26
    assert city["拨打次数"] == sum(rp.total.attempts for rp in board)
    [whole] = unit_indicators(db.session, "city", [MONTH])
    assert city["完成访问数(n)"] == whole.n and city["满意率"] == pytest.approx(whole.rate("satisfaction").value)
    _check_ranking(sheets["机构排名"], build_ranking(db.session, "institution", MONTH, window=1))
    _check_ranking(sheets["团队排名"], build_ranking(db.session, "team", MONTH, window=12))
    assert "东山镇卫生院" in set(sheets["机构排名"][sheets["机构排名"]["状态"] == "样本不足"]["机构"])
    assert len(sheets["问题清单"]) == db.session.scalar(
        select(func.count()).select_from(Problem).where(Problem.month == MONTH)) == 4
    assert len(sheets["明细"]) == 29 + 4

    book = openpyxl.load_workbook(path)
    for name in SHEETS:
        sheet = book[name]
        title = sheet["A1"].value
        assert title.startswith(f"全市 {MONTH} ") and "生成时间：2026-11-23 09:30（北京时间）" in title, title
        assert sheet.freeze_panes == "A3"
    assert "近12个月滚动" in book["团队排名"]["A1"].value and "2025-12至2026-11" in book["团队排名"]["A1"].value
    assert "（当月）" in book["机构排名"]["A1"].value
    header = [c.value for c in book["汇总"][2]]
    rr1 = book["汇总"].cell(row=3, column=header.index("RR1") + 1)
    assert isinstance(rr1.value, float) and rr1.number_format == "0.0%"
    header = [c.value for c in book["机构排名"][2]]
    adjusted = book["机构排名"].cell(row=3, column=header.index("调整后") + 1)
    assert isinstance(adjusted.value, float) and adjusted.number_format == "0.0%"
    assert book["明细"].column_dimensions["B"].width > 8
    header = [c.value for c in book["明细"][2]]
    suggestion = openpyxl.utils.get_column_letter(header.index("意见建议") + 1)
    assert book["明细"].column_dimensions[suggestion].width >= 30


def test_an_empty_month_still_makes_a_workbook(app, county, tmp_path):
    path = build_monthly_report(db.session, "2026-01", county.id, tmp_path / "empty.xlsx", **settings_of(app))
    sheets = read(path)
    assert list(sheets) == list(SHEETS) and all(frame.empty for name, frame in sheets.items() if name != "说明")
    assert "没有抽样轮次" in openpyxl.load_workbook(path)["汇总"]["A1"].value


def test_a_bad_month_is_refused(app, county, tmp_path):
    with pytest.raises(ValueError):
        build_monthly_report(db.session, "2026-13", county.id, tmp_path / "x.xlsx", **settings_of(app))
    assert not (tmp_path / "x.xlsx").exists()


def test_scrub_phones():
    assert scrub_phones("请回电13912345678或 139 1234 5678，座机0730-8123456") == \
        "请回电139****5678或 139****5678，座机0730-****3456"
    assert scrub_phones("第2026112301号，满意度 5") == "第2026112301号，满意度 5"
    assert scrub_phones(None) == ""


# ---------------------------------------------------------------------------
# The download
# ---------------------------------------------------------------------------


def sign_in(app, username):
    """A fresh browser session; call it inside a fresh ``app.app_context()`` (Flask-Login keeps
    the signed-in user in ``g``, which requests share with the test's app context)."""
    client = app.test_client()
    page = client.get("/").get_data(as_text=True)
    reply = client.post("/", data={"username": username, "password": PASSWORD, "csrf_token": csrf_token(page)})
    assert reply.status_code == 302
    return client


def download(client, url):
    response = client.get(url)
    data = response.data
    response.close()
    return response, data


def test_download_scope_roles_and_audit(app, month_data, make_user):
    county, other = month_data["county"], month_data["other"]
    make_user("sup", "supervisor", county)
    make_user("caller", "caller", county)
    make_user("boss", "admin")

    with app.app_context():
        client = sign_in(app, "sup")
        response, data = download(client, f"/reports/monthly.xlsx?month={MONTH}")
        assert response.status_code == 200
        assert "attachment" in response.headers["Content-Disposition"]
        assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        sheets = read(data)
        assert set(sheets["明细"]["县市区"]) == {"岳阳县"} and len(sheets["明细"]) == 29
        assert not [c for c in cells(data) if FULL_PHONE.search(c)]
        # the numbers are those of the board screen
        board = client.get(f"/calls/board?month={MONTH}").get_data(as_text=True)
        total = sheets["汇总"][sheets["汇总"]["层级"] == "县市区合计"].iloc[0]
        for code in ("RR1", "RR2", "COOP1", "REF1", "CON1"):
            assert f'<th class="num">{pct(total[code])}</th>' in board, code
        assert download(client, f"/reports/monthly.xlsx?month={MONTH}&county={county.id}")[0].status_code == 200
        for county_arg in (other.id, 999, "abc"):
            url = f"/reports/monthly.xlsx?month={MONTH}&county={county_arg}"
            assert download(client, url)[0].status_code == 404, url
        assert download(client, "/reports/monthly.xlsx?month=2026-13")[0].status_code == 400

    with app.app_context():
        client = sign_in(app, "caller")
        assert download(client, f"/reports/monthly.xlsx?month={MONTH}")[0].status_code == 403

    with app.app_context():
        client = sign_in(app, "boss")
        response, data = download(client, f"/reports/monthly.xlsx?month={MONTH}")
        assert response.status_code == 200
        summary = read(data)["汇总"]
        assert "全市合计" in set(summary["层级"]) and {"岳阳县", "华容县"} <= set(summary["县市区"])
        response, data = download(client, f"/reports/monthly.xlsx?month={MONTH}&county={other.id}")
        assert set(read(data)["明细"]["县市区"]) == {"华容县"}

    assert app.test_client().get(f"/reports/monthly.xlsx?month={MONTH}").status_code == 302  # signed out

    db.session.rollback()
    logs = db.session.scalars(select(AuditLog).where(AuditLog.action == "export_monthly_report")
                              .order_by(AuditLog.id)).all()
    assert [(log.actor, log.target) for log in logs] == [
        ("sup", f"岳阳县 {MONTH}"), ("sup", f"岳阳县 {MONTH}"), ("boss", f"全市 {MONTH}"), ("boss", f"华容县 {MONTH}")]
    assert all(log.user_id is not None and log.at is not None for log in logs)
    # kept beside the import reports, private, never among the call lists
    path = Path(logs[0].detail)
    assert path.parent == Path(app.config["IMPORT_REPORTS_DIR"]).parent / "monthly_reports"
    assert not path.resolve().is_relative_to(Path(app.config["SAMPLE_LISTS_DIR"]).resolve())
    assert os.stat(path).st_mode & 0o777 == 0o600 and path.name == f"{MONTH}-岳阳县-月度报告.xlsx"


# ---------------------------------------------------------------------------
# flask report monthly
# ---------------------------------------------------------------------------


def invoke(runner, *args):
    result = runner.invoke(args=["report", "monthly", *args])
    db.session.rollback()
    return result


def test_cli_writes_the_workbook_and_logs_it(app, runner, month_data, tmp_path):
    result = invoke(runner, "--month", MONTH, "--county", "岳阳县")
    assert result.exit_code == 0, result.output
    path = Path(result.output.split("月度报告：")[1].strip())
    assert path.name == f"{MONTH}-岳阳县-月度报告.xlsx" and os.stat(path).st_mode & 0o777 == 0o600
    assert len(read(path)["明细"]) == 29

    target = tmp_path / "out" / "city.xlsx"
    result = invoke(runner, "--month", MONTH, "--output", str(target))
    assert result.exit_code == 0, result.output
    assert f"月度报告：{target}" in result.output and "全市合计" in set(read(target)["汇总"]["层级"])

    result = invoke(runner, "--month", "2026-01", "--county", "华容县", "--output", str(tmp_path / "e.xlsx"))
    assert result.exit_code == 0 and "没有抽样轮次" in result.output

    logs = db.session.scalars(select(AuditLog).where(AuditLog.action == "export_monthly_report")
                              .order_by(AuditLog.id)).all()
    assert [log.target for log in logs] == [f"岳阳县 {MONTH}", f"全市 {MONTH}", "华容县 2026-01"]
    assert all(log.actor.startswith("cli") and log.user_id is None for log in logs)
    assert logs[1].detail == str(target)


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "月份格式应为 YYYY-MM"),
        (["--month", "2026/11"], "月份格式应为 YYYY-MM"),
        (["--month", "2026-13"], "月份格式应为 YYYY-MM"),
        (["--month", MONTH, "--county", "不存在县"], "找不到县市区：不存在县"),
        (["--month", MONTH, "--output", "report.csv"], "输出文件应以 .xlsx 结尾"),
    ],
)
def test_cli_errors_exit_1_in_chinese(app, runner, county, args, message):
    result = invoke(runner, *args)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert db.session.scalar(select(func.count()).select_from(AuditLog)) == 0


def test_cli_refuses_to_write_among_the_call_lists(app, runner, county):
    target = Path(app.config["SAMPLE_LISTS_DIR"]) / "岳阳县" / "report.xlsx"
    result = invoke(runner, "--month", MONTH, "--output", str(target))
    assert result.exit_code == 1 and "不能写入呼叫名单目录" in result.output
    assert not target.exists()
