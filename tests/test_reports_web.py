"""The rankings over HTTP and from the command line: the page lists units in the order of the
empirical-Bayes estimate with the 样本不足 ones apart, and every figure it shows is
build_ranking's; scope (a supervisor sees their own county, another county's unit is 404, the
API never returns another county's data); callers have no reports; the drill-down down to the
interviews; the JSON API and the CLI (csv/json, Chinese errors with exit code 1); audit rows."""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timezone
from html import unescape
from html.parser import HTMLParser

import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.filters import pct
from app.models import AuditLog, County, Institution, Response, Team
from app.reports.indicators import Unit, aggregate
from app.core.clock import months_of
from app.reports.rankings import build_ranking
from app.reports.tables import INDICATORS, ranking_dict
from tests.helpers import PASSWORD, csrf_token
from tests.reports_support import add_results

MONTH = "2026-11"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # 10:00 in Asia/Shanghai


# ---------------------------------------------------------------------------
# Fixtures: two counties with results; users of each role
# ---------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    state = {"now": NOW}
    monkeypatch.setattr("app.reports.routes.clock_now", lambda: state["now"])
    return state


def answers(good: int, bad: int, **extra) -> list[dict]:
    """``good`` 非常满意 and ``bad`` 不满意 (flagged) interviews."""
    return [{"satisfaction": 5, **extra}] * good + [{"satisfaction": 2, "flags": "dissatisfied", "effect": 2,
                                                     **extra}] * bad


@pytest.fixture
def world(app, make_county, make_team, make_user, clock):
    yy = make_county("岳阳县", "430621")
    hr = make_county("华容县", "430623")
    teams = {
        "xq1": make_team(yy, "新墙镇卫生院", "张伟家庭医生团队"),
        "xq2": make_team(yy, "新墙镇卫生院", "刘洋家庭医生团队"),
        "rj": make_team(yy, "荣家湾镇卫生院", "李娜家庭医生团队"),
        "gk": make_team(yy, "筻口镇卫生院", "王强家庭医生团队"),
        "gl": make_team(yy, "公田镇卫生院", "陈静家庭医生团队"),
        "zh": make_team(hr, "章华镇卫生院", "赵敏家庭医生团队"),
    }
    plan = {
        # team: {month: (good, bad)}
        "xq1": {"2026-09": (5, 1), "2026-10": (8, 3), "2026-11": (12, 1)},
        "xq2": {"2026-11": (2, 0)},
        "rj": {"2026-09": (6, 0), "2026-10": (10, 1), "2026-11": (6, 6)},
        "gk": {"2026-11": (3, 1)},  # 4 interviews: too few to rank an institution (10)
        "gl": {"2026-10": (9, 1), "2026-11": (9, 2)},
        "zh": {"2026-10": (7, 3), "2026-11": (10, 0)},
    }
    for key, months in plan.items():
        team = teams[key]
        county = hr if key == "zh" else yy
        for month, (good, bad) in months.items():
            add_results(county, team, month, answers(good, bad, knows_doctor=bool(good % 2)))
    users = {
        "admin": make_user("city-admin", "admin"),
        "sup": make_user("sup-yy", "supervisor", yy),
        "sup_hr": make_user("sup-hr", "supervisor", hr),
        "caller": make_user("caller-yy", "caller", yy),
    }
    ids = {"yy": yy.id, "hr": hr.id, **{k: t.id for k, t in teams.items()},
           **{f"inst_{k}": t.institution_id for k, t in teams.items()}}
    db.session.commit()
    return ids


def sign_in(app, username):
    """A fresh browser session signed in as ``username``; call inside a fresh ``app.app_context()``
    (Flask-Login caches the user in ``g``, which the test's context shares with requests)."""
    client = app.test_client()
    page = client.get("/")
    reply = client.post("/", data={"username": username, "password": PASSWORD,
                                   "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert reply.status_code == 302
    return client


def get(app, username, url):
    with app.app_context():
        return sign_in(app, username).get(url)


def expected(level, month=MONTH, *, window=1, indicator="satisfaction", county_id=None):
    """build_ranking with the app's settings, as the views call it."""
    from flask import current_app

    s = current_app.extensions["report_settings"]
    ranking = build_ranking(db.session, level, month, window=window, indicator=indicator, county_id=county_id,
                            min_n=s.min_n[level], scores=s.scores, weights=s.weights)
    db.session.rollback()
    return ranking


# ---------------------------------------------------------------------------
# Reading the page back
# ---------------------------------------------------------------------------


class _Tables(HTMLParser):
    """Rows of the tables with an id: {table id: [{"id", "cells": {class or data-code: text},
    "titles": {...}, "links": [...]}]}; plus the JSON blocks' text."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self.json: dict[str, str] = {}
        self._table = None
        self._row = None
        self._cell = None
        self._json = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table and "data-id" in a:
            self._row = {"id": int(a["data-id"]), "cells": {}, "titles": {}, "links": []}
            self.tables[self._table].append(self._row)
        elif tag == "td" and self._row is not None:
            classes = (a.get("class") or "").split()
            key = a.get("data-code") or next((c for c in classes if c not in ("num", "key", "ind", "bad")), None)
            self._cell = key
            self._row["cells"][key] = ""
            if a.get("title"):
                self._row["titles"][key] = a["title"]
        elif tag == "a" and self._row is not None:
            self._row["links"].append(a.get("href"))
        elif tag == "script" and a.get("type") == "application/json":
            self._json = a["id"]
            self.json[self._json] = ""
        elif tag == "span" and self._cell is not None:
            self._row["cells"][self._cell] += " "

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tr":
            self._row = None
        elif tag == "td":
            self._cell = None
        elif tag == "script":
            self._json = None

    def handle_data(self, data):
        if self._json is not None:
            self.json[self._json] += data
        elif self._cell is not None and self._row is not None:
            self._row["cells"][self._cell] += data


def funnel_points(funnel: dict) -> list[dict]:
    """The funnel plot's points as reports.js reads them (lists in the order of "fields", the
    parent an index into "parents")."""
    points = [dict(zip(funnel["fields"], values)) for values in funnel["points"]]
    for point in points:
        point["parent"] = funnel["parents"][point["parent"]]
    return points


def parse(html: str) -> _Tables:
    parser = _Tables()
    parser.feed(html)
    return parser


def text(cell: str) -> str:
    return re.sub(r"\s+", " ", unescape(cell)).strip()


def shown_change(value):
    if value is None:
        return "—"
    v = round(value * 100, 1)
    return f"▲ {v:.1f}" if v > 0 else (f"▼ {-v:.1f}" if v < 0 else "0.0")


def check_row(row: dict, rank_row, ranked: bool) -> None:
    """Every figure of a page row equals build_ranking's RankRow."""
    cells = row["cells"]
    unit = rank_row.unit
    assert row["id"] == unit.key
    if ranked:
        assert text(cells["rank"]) == str(rank_row.rank)
    assert text(cells["unit-col"]).startswith(unit.name)
    assert unit.parent in text(cells["unit-col"])
    assert text(cells["completes"]) == str(rank_row.completes)
    assert text(cells["frac"]) == f"{rank_row.successes}/{rank_row.n}"
    observed, *ci = text(cells["observed"]).split(" ")
    assert observed == pct(rank_row.observed)
    if rank_row.low is not None:
        assert ci == [f"{pct(rank_row.low)}–{pct(rank_row.high)}"]
    assert text(cells["adjusted"]) == pct(rank_row.adjusted)
    assert text(cells["previous"]).split(" ")[0] == pct(rank_row.previous)
    assert text(cells["change"]) == shown_change(rank_row.change)
    composite = rank_row.composite
    assert text(cells["composite"]) == ("—" if composite is None else f"{composite:.1f}")
    for code, _label, kind in INDICATORS:
        shown = text(cells[code])
        if kind == "rate":
            rate = unit.rate(code)
            assert shown == f"{pct(rate.value)} n={rate.n}", code
            if rate.n:
                low, high = rate.interval
                assert row["titles"][code] == f"{rate.successes}/{rate.n}，95%区间 {pct(low)}–{pct(high)}"
        elif code == "mean_services":
            assert shown == (f"{unit.mean_services:.1f}" if unit.mean_services is not None else "—")
        elif code == "score":
            assert shown == (f"{unit.score:.1f}" if unit.score is not None else "—")
        else:
            assert shown == str(unit.counts.flagged)


# ---------------------------------------------------------------------------
# The rankings page
# ---------------------------------------------------------------------------


def test_rankings_page_lists_units_in_eb_order_with_the_figures_of_build_ranking(app, world):
    reply = get(app, "sup-yy", f"/reports/rankings?level=institution&month={MONTH}")
    assert reply.status_code == 200
    html = reply.get_data(as_text=True)
    page = parse(html)
    ranking = expected("institution", county_id=world["yy"])
    assert [r.unit.name for r in ranking.ranked] and [r.unit.name for r in ranking.insufficient]
    # the order and every figure
    assert [r["id"] for r in page.tables["ranked"]] == [r.unit.key for r in ranking.ranked]
    assert [r["id"] for r in page.tables["insufficient"]] == [r.unit.key for r in ranking.insufficient]
    for row, rank_row in zip(page.tables["ranked"], ranking.ranked):
        check_row(row, rank_row, ranked=True)
    for row, rank_row in zip(page.tables["insufficient"], ranking.insufficient):
        check_row(row, rank_row, ranked=False)
    # the EB estimate, not the observed rate, decides: adjusted values descend
    adjusted = [r.adjusted for r in ranking.ranked]
    assert adjusted == sorted(adjusted, reverse=True)
    # 筻口镇卫生院 has 4 interviews: apart, under the heading
    assert "样本不足（不排名）" in html
    assert world["inst_gk"] in [r["id"] for r in page.tables["insufficient"]]
    assert world["inst_gk"] not in [r["id"] for r in page.tables["ranked"]]
    # the explanation, the hint and the charts' data
    assert "排名方法说明" in html and "经验贝叶斯" in html
    assert "建议使用滚动窗口：机构 3 个月、团队 12 个月" in html
    funnel = json.loads(page.json["funnel-data"])
    assert funnel["overall"] == pytest.approx(ranking.overall)
    assert funnel["limits"] == ranking.funnel
    points = funnel_points(funnel)
    with_answers = [r for r in ranking.ranked + ranking.insufficient if r.n]
    assert [p["name"] for p in points] == [r.unit.name for r in with_answers]
    for point, r in zip(points, with_answers):
        assert point["parent"] == r.unit.parent and point["rank"] == r.rank and point["position"] == r.position
        assert (point["successes"], point["n"]) == (r.successes, r.n)
        assert point["rate"] == pytest.approx(r.observed, abs=1e-6)
        assert point["adjusted"] == pytest.approx(r.adjusted, abs=1e-6)
    assert 'src="/static/vendor/echarts/echarts.min.js"' in html and 'src="/static/reports.js"' in html
    # no inline script (the CSP would refuse it): only JSON blocks
    assert not re.search(r"<script(?![^>]*(src=|type=\"application/json\"))", html)


def test_previous_period_change_and_rolling_window(app, world):
    reply = get(app, "sup-yy", f"/reports/rankings?level=institution&month={MONTH}&window=3")
    page = parse(reply.get_data(as_text=True))
    ranking = expected("institution", window=3, county_id=world["yy"])
    assert ranking.months == ["2026-09", "2026-10", "2026-11"]
    assert [r["id"] for r in page.tables["ranked"]] == [r.unit.key for r in ranking.ranked]
    for row, rank_row in zip(page.tables["ranked"], ranking.ranked):
        check_row(row, rank_row, ranked=True)
    # one month: October is the previous period, so the change shows with ▲/▼
    reply = get(app, "sup-yy", f"/reports/rankings?level=institution&month={MONTH}")
    page = parse(reply.get_data(as_text=True))
    ranking = expected("institution", county_id=world["yy"])
    changed = [r for r in ranking.ranked if r.change is not None]
    assert changed
    for row, rank_row in zip(page.tables["ranked"], ranking.ranked):
        assert text(row["cells"]["change"]) == shown_change(rank_row.change)
        if rank_row.change and round(rank_row.change * 100, 1):
            assert text(row["cells"]["change"])[0] in "▲▼"


def test_team_level_defaults_to_a_twelve_month_window_and_trend_is_per_month(app, world):
    reply = get(app, "sup-yy", f"/reports/rankings?level=team&month={MONTH}")
    html = reply.get_data(as_text=True)
    page = parse(html)
    ranking = expected("team", window=12, county_id=world["yy"])
    assert "2025-12 至 2026-11（12个月）" in html
    rows = page.tables.get("ranked", []) + page.tables.get("insufficient", [])
    assert [r["id"] for r in rows] == [r.unit.key for r in ranking.ranked + ranking.insufficient]
    # the trend: each unit's observed rate per month over the 12 months ending at the month
    trend = json.loads(page.json["trend-data"])
    assert trend["months"] == months_of(MONTH, 12)
    counts = aggregate(db.session, "team", months_of(MONTH, 12), county_id=world["yy"], by_month=True)
    db.session.rollback()
    by_name = {s["name"]: s for s in trend["series"]}
    xq1 = by_name["张伟家庭医生团队"]
    for i, month in enumerate(trend["months"]):
        c = counts.get((world["xq1"], month))
        if c is None:
            assert xq1["values"][i] is None
        else:
            rate = Unit("team", world["xq1"], "", counts=c).rate("satisfaction")
            assert xq1["values"][i] == pytest.approx(rate.value)
            assert xq1["n"][i] == rate.n
    assert xq1["values"][-3:] == pytest.approx([5 / 6, 8 / 11, 12 / 13])
    # the total line: all the county's teams together, month by month
    assert trend["total"]["values"][-1] == pytest.approx(expected("team", window=1, county_id=world["yy"]).overall)


def test_admin_sees_every_county_and_can_filter_one_and_rank_counties(app, world):
    html = get(app, "city-admin", f"/reports/rankings?level=institution&month={MONTH}").get_data(as_text=True)
    page = parse(html)
    ids = {r["id"] for r in page.tables["ranked"] + page.tables["insufficient"]}
    assert world["inst_zh"] in ids and world["inst_xq1"] in ids
    ranking = expected("institution")
    assert [r["id"] for r in page.tables["ranked"]] == [r.unit.key for r in ranking.ranked]

    page = parse(get(app, "city-admin", f"/reports/rankings?level=institution&month={MONTH}&county={world['hr']}")
                 .get_data(as_text=True))
    ids = {r["id"] for r in page.tables.get("ranked", []) + page.tables.get("insufficient", [])}
    assert ids == {world["inst_zh"]}

    reply = get(app, "city-admin", f"/reports/rankings?level=county&month={MONTH}&window=2")
    page = parse(reply.get_data(as_text=True))
    ranking = expected("county", window=2)
    assert [r["id"] for r in page.tables.get("ranked", [])] == [r.unit.key for r in ranking.ranked]
    assert [r["id"] for r in page.tables.get("insufficient", [])] == [r.unit.key for r in ranking.insufficient]
    for row, rank_row in zip(page.tables.get("ranked", []), ranking.ranked):
        check_row(row, rank_row, ranked=True)


def test_a_supervisor_sees_only_their_county(app, world):
    for level in ("institution", "team"):
        html = get(app, "sup-yy", f"/reports/rankings?level={level}&month={MONTH}").get_data(as_text=True)
        assert "华容县" not in html and "章华镇卫生院" not in html and "赵敏" not in html
        page = parse(html)
        assert page.tables  # there is a table
        html = get(app, "sup-hr", f"/reports/rankings?level={level}&month={MONTH}").get_data(as_text=True)
        assert "新墙镇卫生院" not in html and "岳阳县" not in html.split("<main>")[1]
    # no county level for supervisors: the institution ranking instead, with a message
    html = get(app, "sup-yy", f"/reports/rankings?level=county&month={MONTH}").get_data(as_text=True)
    assert "县市区之间的排名只有市级管理员可以查看" in html and "华容县" not in html
    assert 'value="county"' not in html
    # another county's id in the filter: 404, as for any unit outside the scope
    assert get(app, "sup-yy", f"/reports/rankings?county={world['hr']}").status_code == 404
    assert get(app, "sup-yy", "/reports/rankings?county=华容县").status_code == 404
    assert get(app, "sup-yy", f"/reports/rankings?county={world['yy']}").status_code == 200
    # another county's units
    for url in (f"/reports/unit/county/{world['hr']}", f"/reports/unit/institution/{world['inst_zh']}",
                f"/reports/unit/team/{world['zh']}"):
        assert get(app, "sup-yy", url).status_code == 404, url
        assert get(app, "sup-hr", url).status_code == 200, url
        assert get(app, "city-admin", url).status_code == 200, url
    for url in ("/reports/unit/county/9999", "/reports/unit/team/9999", "/reports/unit/city/1",
                f"/reports/unit/resident/{world['yy']}"):
        assert get(app, "city-admin", url).status_code == 404, url


def test_callers_and_strangers_have_no_reports(app, world):
    for url in ("/reports/rankings", f"/reports/unit/county/{world['yy']}", f"/reports/unit/team/{world['xq1']}"):
        assert get(app, "caller-yy", url).status_code == 403, url
        assert app.test_client().get(url).status_code == 302, url  # to the sign-in page
    reply = get(app, "caller-yy", "/reports/api/rankings")
    assert reply.status_code == 403 and reply.is_json and "权限" in reply.json["error"]
    reply = app.test_client().get("/reports/api/rankings")
    assert reply.status_code == 401 and reply.json["error"] == "请先登录。"
    # the nav link: supervisors and administrators only
    assert ">排名</a>" in get(app, "sup-yy", "/calls/board").get_data(as_text=True)
    assert ">排名</a>" in get(app, "city-admin", "/calls/board").get_data(as_text=True)
    assert ">排名</a>" not in get(app, "caller-yy", "/calls/").get_data(as_text=True)


@pytest.mark.parametrize("query, message", [
    ("month=2026-13", "月份格式应为 YYYY-MM"),
    ("month=abc", "月份格式应为 YYYY-MM"),
    ("window=0", "统计窗口应为1到12之间的整数"),
    ("window=13", "统计窗口应为1到12之间的整数"),
    ("window=x", "统计窗口应为1到12之间的整数"),
    ("indicator=drop", "未知的排名指标"),
    ("level=province", "未知的排名层级"),
])
def test_bad_filters_give_a_chinese_message_and_the_defaults(app, world, query, message):
    reply = get(app, "city-admin", f"/reports/rankings?{query}")
    assert reply.status_code == 200
    html = reply.get_data(as_text=True)
    assert message in html and "flash-error" in html and "Traceback" not in html
    page = parse(html)
    assert "ranked" in page.tables  # the default view (this month, institutions, 满意率)
    reply = get(app, "city-admin", f"/reports/unit/county/{world['yy']}?{query}")
    assert reply.status_code == 200 and (message in reply.get_data(as_text=True) or "level=" in query)
    # the API refuses instead of guessing
    reply = get(app, "city-admin", f"/reports/api/rankings?{query}")
    assert reply.status_code == 400 and message in reply.json["error"]


def test_unknown_county_for_an_admin(app, world):
    html = get(app, "city-admin", "/reports/rankings?county=9999").get_data(as_text=True)
    assert "找不到县市区" in html
    reply = get(app, "city-admin", "/reports/api/rankings?county=9999")
    assert reply.status_code == 400 and "找不到县市区" in reply.json["error"]


def test_default_month_is_the_latest_closed_month_else_this_month_in_shanghai(app, world, clock):
    from app.models import Round

    closed = db.session.scalars(select(Round.month).where(Round.status == "closed")).all()
    db.session.rollback()  # no stale read snapshot before the write below (SQLite)
    assert MONTH in closed
    clock["now"] = datetime(2026, 11, 30, 17, 0, tzinfo=timezone.utc)  # 2026-12-01 01:00 in Shanghai
    html = get(app, "sup-yy", "/reports/rankings").get_data(as_text=True)
    assert f'name="month" value="{MONTH}"' in html  # December has just begun: November's final figures
    db.session.execute(update(Round).values(status="open"))
    db.session.commit()
    html = get(app, "sup-yy", "/reports/rankings").get_data(as_text=True)
    assert 'name="month" value="2026-12"' in html  # nothing closed: this month, in Shanghai
    clock["now"] = NOW
    html = get(app, "sup-yy", "/reports/rankings").get_data(as_text=True)
    assert 'name="month" value="2026-11"' in html


# ---------------------------------------------------------------------------
# Drill-down
# ---------------------------------------------------------------------------


def test_drill_down_county_institution_team_responses(app, world):
    # the county: its institutions ranked, with links down
    html = get(app, "sup-yy", f"/reports/unit/county/{world['yy']}?month={MONTH}").get_data(as_text=True)
    page = parse(html)
    ranking = expected("institution", county_id=world["yy"])
    assert [r["id"] for r in page.tables["ranked"]] == [r.unit.key for r in ranking.ranked]
    for row, rank_row in zip(page.tables["ranked"], ranking.ranked):
        check_row(row, rank_row, ranked=True)
    link = next(r for r in page.tables["ranked"] if r["id"] == world["inst_xq1"])["links"][0]
    assert unescape(link) == f"/reports/unit/institution/{world['inst_xq1']}?month={MONTH}&window=1&indicator=satisfaction"

    # the institution: its own figures and place, its teams (ranked among the county's teams)
    html = get(app, "sup-yy", unescape(link)).get_data(as_text=True)
    assert "新墙镇卫生院" in html
    me = next(r for r in ranking.ranked if r.unit.key == world["inst_xq1"])
    assert f"第 {me.rank} 名" in html
    page = parse(html)
    teams = expected("team", county_id=world["yy"])
    mine = [r for r in teams.ranked + teams.insufficient if r.unit.institution_id == world["inst_xq1"]]
    rows = page.tables.get("ranked", []) + page.tables.get("insufficient", [])
    assert [r["id"] for r in rows] == [r.unit.key for r in mine]
    assert {world["xq1"], world["xq2"]} == {r["id"] for r in rows}
    for row, rank_row in zip(rows, mine):
        check_row(row, rank_row, ranked=rank_row.rank is not None)
    # the indicators table of the unit itself
    indicators = re.search(r'<tr data-code="satisfaction">(.*?)</tr>', html, re.S).group(1)
    assert f"{me.successes} / {me.n}" in indicators and pct(me.observed) in indicators

    # the team: its interviews, phones masked, links to the questionnaire
    team_link = next(r for r in rows if r["id"] == world["xq1"])["links"][0]
    html = get(app, "sup-yy", unescape(team_link)).get_data(as_text=True)
    responses = re.findall(r'<tr data-response="(\d+)">(.*?)</tr>', html, re.S)
    assert len(responses) == 13  # November: 12 satisfied, 1 not
    stored = {r.id: r for r in db.session.scalars(select(Response)).all()}
    for rid, row in responses:
        response = stored[int(rid)]
        assert f'href="/calls/response/{rid}/view"' in row
        assert re.search(r"138\*{4}\d{4}", row)
        assert "report-caller" in row and MONTH in row
        assert ("非常满意" if response.satisfaction == 5 else "不满意") in row
    assert "不满意</span>" in html  # the flag
    assert not re.search(r"138\d{8}", html)  # no whole phone number anywhere
    # a longer window brings the earlier months
    html = get(app, "sup-yy", f"/reports/unit/team/{world['xq1']}?month={MONTH}&window=3").get_data(as_text=True)
    assert len(re.findall(r'<tr data-response="', html)) == 6 + 11 + 13
    trend = json.loads(parse(html).json["trend-data"])
    assert trend["series"][0]["values"][-3:] == pytest.approx([5 / 6, 8 / 11, 12 / 13])
    # the questionnaire link works for the supervisor
    rid = responses[0][0]
    assert get(app, "sup-yy", f"/calls/response/{rid}/view").status_code == 200


def test_county_page_for_admin_shows_its_place_among_counties(app, world):
    html = get(app, "city-admin", f"/reports/unit/county/{world['hr']}?month={MONTH}&window=2").get_data(as_text=True)
    ranking = expected("county", window=2)
    me = next(r for r in ranking.ranked + ranking.insufficient if r.unit.key == world["hr"])
    assert (f"第 {me.rank} 名" if me.rank else "样本不足（不排名）") in html
    # a supervisor's own county page has no comparison with other counties
    html = get(app, "sup-yy", f"/reports/unit/county/{world['yy']}?month={MONTH}").get_data(as_text=True)
    assert 'id="standing"' not in html and "华容县" not in html


# ---------------------------------------------------------------------------
# JSON API
# ---------------------------------------------------------------------------


def test_api_returns_the_ranking_table_and_logs_the_export(app, world):
    with app.app_context():
        client = sign_in(app, "sup-yy")
        reply = client.get(f"/reports/api/rankings?level=institution&month={MONTH}&window=3&indicator=satisfaction")
    assert reply.status_code == 200 and reply.is_json
    data = reply.json
    ranking = expected("institution", window=3, county_id=world["yy"])
    county = db.session.get(County, world["yy"])
    assert data == json.loads(json.dumps(ranking_dict(ranking, county={"id": county.id, "name": county.name})))
    assert set(data) >= {"level", "month", "window", "months", "indicator", "overall", "prior", "min_n", "ranked",
                         "insufficient"}
    assert data["level"] == "institution" and data["month"] == MONTH and data["window"] == 3
    assert data["months"] == ["2026-09", "2026-10", "2026-11"] and data["indicator"] == "satisfaction"
    assert data["overall"] == pytest.approx(ranking.overall)
    assert data["min_n"] == 10
    prior = data["prior"]
    if ranking.prior.rho > 0:
        assert prior["alpha"] == pytest.approx(ranking.prior.alpha) and prior["beta"] == pytest.approx(ranking.prior.beta)
    else:
        assert prior["alpha"] is None and prior["pooled"] is True
    row = data["ranked"][0]
    best = ranking.ranked[0]
    assert set(row) >= {"id", "name", "parent", "n", "successes", "denominator", "observed", "ci_low", "ci_high",
                        "adjusted", "previous", "change", "position", "composite", "indicators", "rank"}
    assert (row["id"], row["name"], row["parent"], row["n"], row["rank"]) == (
        best.unit.key, best.unit.name, "岳阳县", best.completes, 1)
    assert row["adjusted"] == best.adjusted and row["observed"] == best.observed  # exact, not rounded
    assert row["ci_low"] == best.low and row["ci_high"] == best.high
    assert set(row["indicators"]) == {code for code, _l, _k in INDICATORS}
    assert row["indicators"]["aware"] == {
        "successes": best.unit.counts.aware, "n": best.completes, "value": best.unit.counts.aware / best.completes,
        "ci_low": best.unit.rate("aware").interval[0], "ci_high": best.unit.rate("aware").interval[1]}
    assert row["indicators"]["flagged"] == best.unit.counts.flagged
    assert [r["id"] for r in data["insufficient"]] == [r.unit.key for r in ranking.insufficient]
    assert all(r["rank"] is None for r in data["insufficient"])
    # nothing of the other county
    assert "章华镇卫生院" not in reply.get_data(as_text=True)

    log = db.session.scalars(select(AuditLog).where(AuditLog.action == "export_rankings")).all()
    assert len(log) == 1
    user_id = db.session.scalar(select(AuditLog.user_id).where(AuditLog.id == log[0].id))
    assert log[0].actor == "sup-yy" and user_id is not None and log[0].at is not None
    detail = json.loads(log[0].detail)
    assert detail["via"] == "api" and detail["level"] == "institution" and detail["window"] == 3
    assert detail["county"] == "岳阳县"


def test_api_scope_and_errors(app, world):
    with app.app_context():
        client = sign_in(app, "sup-yy")
        # another county: 404, never data
        for county in (str(world["hr"]), "华容县", "9999"):
            reply = client.get(f"/reports/api/rankings?month={MONTH}&county={county}")
            assert reply.status_code == 404 and reply.json == {"error": "找不到该县市区，或您无权查看。"}, county
            assert "章华镇" not in reply.get_data(as_text=True)
        reply = client.get(f"/reports/api/rankings?month={MONTH}&level=county")
        assert reply.status_code == 403 and "市级管理员" in reply.json["error"]
        reply = client.get("/reports/api/rankings?month=2026/11")
        assert reply.status_code == 400 and reply.json["error"].startswith("月份格式应为 YYYY-MM")
        # the default: the supervisor's own county, this month, institutions
        reply = client.get("/reports/api/rankings")
        assert reply.status_code == 200
        assert (reply.json["month"], reply.json["level"], reply.json["county"]["name"]) == (MONTH, "institution",
                                                                                           "岳阳县")
    with app.app_context():
        client = sign_in(app, "city-admin")
        reply = client.get(f"/reports/api/rankings?month={MONTH}&level=team&window=12&county=华容县")
        assert reply.status_code == 200 and reply.json["county"] == {"id": world["hr"], "name": "华容县"}
        ids = {r["id"] for r in reply.json["ranked"] + reply.json["insufficient"]}
        assert ids == {world["zh"]}
        reply = client.get(f"/reports/api/rankings?month={MONTH}&level=county")
        assert reply.status_code == 200
        assert {r["id"] for r in reply.json["ranked"] + reply.json["insufficient"]} == {world["yy"], world["hr"]}
    # refused requests are not exports
    actors = [a.actor for a in db.session.scalars(select(AuditLog).where(AuditLog.action == "export_rankings"))]
    assert sorted(actors) == ["city-admin", "city-admin", "sup-yy"]


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def cli(runner, *args):
    result = runner.invoke(args=["report", "rankings", *args])
    db.session.rollback()
    return result


def test_cli_csv_and_json(app, runner, world):
    result = cli(runner, "--month", MONTH, "--level", "institution", "--county", "岳阳县", "--format", "csv")
    assert result.exit_code == 0, result.output
    lines = list(csv.reader(io.StringIO(result.output)))
    header, rows = lines[0], lines[1:]
    assert header[:8] == ["状态", "名次", "机构", "上级", "完成访问数", "满意率·达标数", "满意率·有效回答数", "满意率（%）"]
    assert "签约知晓率（%）" in header and "问题数" in header and "调整后（%）" in header
    ranking = expected("institution", county_id=world["yy"])
    assert [(r[0], r[2]) for r in rows] == [("排名", r.unit.name) for r in ranking.ranked] + [
        ("样本不足", r.unit.name) for r in ranking.insufficient]
    col = {name: i for i, name in enumerate(header)}
    for line, rank_row in zip(rows, ranking.ranked):
        assert line[col["名次"]] == str(rank_row.rank)
        assert line[col["完成访问数"]] == str(rank_row.completes)
        assert line[col["调整后（%）"]] == f"{rank_row.adjusted * 100:.1f}"
        assert line[col["满意率（%）"]] == f"{rank_row.observed * 100:.1f}"
        assert line[col["95%区间下限（%）"]] == f"{rank_row.low * 100:.1f}"
        assert line[col["问题数"]] == str(rank_row.unit.counts.flagged)
    assert all("华容县" not in line[col["上级"]] for line in rows)

    result = cli(runner, "--month", MONTH, "--level", "team", "--window", "12", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    ranking = expected("team", window=12)
    assert data == json.loads(json.dumps(ranking_dict(ranking)))
    assert data["county"] is None and data["window"] == 12 and len(data["months"]) == 12

    # the same structure as the API
    with app.app_context():
        api = sign_in(app, "city-admin").get(f"/reports/api/rankings?month={MONTH}&level=team&window=12").json
    assert api == data

    log = db.session.scalars(select(AuditLog).where(AuditLog.action == "export_rankings").order_by(AuditLog.id)).all()
    assert [e.actor.split(":")[0] for e in log] == ["cli", "cli", "city-admin"]
    assert json.loads(log[0].detail)["format"] == "csv" and json.loads(log[1].detail)["format"] == "json"
    assert log[0].target == f"rankings institution {MONTH} 岳阳县" and log[0].user_id is None


@pytest.mark.parametrize("args, message", [
    (["--month", "2026-13", "--level", "team"], "月份格式应为 YYYY-MM"),
    (["--month", "November", "--level", "team"], "月份格式应为 YYYY-MM"),
    (["--level", "team"], "月份格式应为 YYYY-MM"),
    (["--month", MONTH, "--level", "province"], "层级应为 team"),
    (["--month", MONTH], "层级应为 team"),
    (["--month", MONTH, "--level", "team", "--county", "长沙县"], "找不到县市区：长沙县"),
    (["--month", MONTH, "--level", "team", "--window", "13"], "统计窗口应为1到12之间的整数"),
    (["--month", MONTH, "--level", "team", "--indicator", "happiness"], "未知的排名指标"),
    (["--month", MONTH, "--level", "team", "--format", "xlsx"], "输出格式应为 csv 或 json"),
    (["--month", MONTH, "--level", "county", "--county", "岳阳县"], "按县市区排名时不能再指定 --county"),
])
def test_cli_errors_are_chinese_and_exit_1(app, runner, world, args, message):
    result = cli(runner, *args)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert db.session.scalar(select(AuditLog).where(AuditLog.action == "export_rankings")) is None


def test_cli_with_no_data_prints_a_header(app, runner, world):
    result = cli(runner, "--month", "2020-01", "--level", "institution", "--format", "csv")
    assert result.exit_code == 0
    assert result.output.splitlines()[0].startswith("状态,名次,机构")
    assert len(result.output.splitlines()) == 1
    data = json.loads(cli(runner, "--month", "2020-01", "--level", "institution", "--format", "json").output)
    assert data["ranked"] == [] and data["insufficient"] == [] and data["overall"] is None and data["prior"] is None


def test_team_names_shared_by_two_institutions_stay_apart_on_the_trend(app, world, make_team):
    other = make_team(db.session.get(Institution, world["inst_rj"]).county, "荣家湾镇卫生院", "张伟家庭医生团队")
    add_results(other.institution.county, other, MONTH, answers(3, 0))
    html = get(app, "sup-yy", f"/reports/rankings?level=team&month={MONTH}").get_data(as_text=True)
    names = [s["name"] for s in json.loads(parse(html).json["trend-data"])["series"]]
    assert len(names) == len(set(names))
    assert "张伟家庭医生团队（岳阳县 · 新墙镇卫生院）" in names
    db.session.rollback()
    assert db.session.get(Team, other.id) is not None


def test_cli_csv_neutralises_names_but_not_figures(app, runner, world, make_team):
    county = db.session.get(County, world["yy"])
    evil = make_team(county, "=HYPERLINK(\"http://x\")卫生院", "+团队")
    add_results(county, evil, MONTH, answers(10, 2))
    result = cli(runner, "--month", MONTH, "--level", "institution", "--county", "岳阳县", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.output)))
    header, rows = rows[0], rows[1:]
    names = [row[header.index("机构")] for row in rows]
    assert "'=HYPERLINK(\"http://x\")卫生院" in names
    assert not any(cell.startswith(("=", "+", "@")) for row in rows for cell in row)
    changes = [row[header.index("变化（百分点）")] for row in rows if row[header.index("变化（百分点）")]]
    assert all(not c.startswith("'") for c in changes)  # figures such as -3.2 stay numbers


def test_long_rankings_are_paged_and_the_exports_keep_every_row(app, world, monkeypatch):
    monkeypatch.setattr("app.reports.routes.ROWS_PER_PAGE", 2)
    ranking = expected("institution", county_id=world["yy"])
    assert len(ranking.ranked) >= 3
    first = parse(get(app, "sup-yy", f"/reports/rankings?level=institution&month={MONTH}").get_data(as_text=True))
    assert [r["id"] for r in first.tables["ranked"]] == [r.unit.key for r in ranking.ranked[:2]]
    html = get(app, "sup-yy", f"/reports/rankings?level=institution&month={MONTH}&page=2").get_data(as_text=True)
    second = parse(html)
    assert [r["id"] for r in second.tables["ranked"]] == [r.unit.key for r in ranking.ranked[2:4]]
    assert "第 2 / " in html
    # the funnel plot still shows every unit
    funnel = json.loads(second.json["funnel-data"])
    assert len(funnel_points(funnel)) == len([r for r in ranking.ranked + ranking.insufficient if r.n])
