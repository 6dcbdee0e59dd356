"""The city overview (全市概览), the administrator's landing page: each role's landing after
sign-in, the figures of a small city checked against counts made straight from the rows,
its links down, the month selector, the scheduler warning, the fixed number of queries, and
who may see it."""
from __future__ import annotations

import html as html_lib
import re
from datetime import datetime, timedelta, timezone

import pytest
from flask import g
from flask.testing import FlaskClient
from sqlalchemy import event, func, select, update

from app.calls.interview import sync_problem
from app.core.clock import utc_naive
from app.extensions import db
from app.models import (
    Case,
    ImportBatch,
    Institution,
    Problem,
    Resident,
    Response,
    Round,
    SchedulerHeartbeat,
    Team,
)
from app.overview.services import city_overview
from tests.calls_support import MONTH, NOW, drawn_round
from tests.draws_support import add_residents
from tests.helpers import PASSWORD, csrf_token
from tests.reports_support import add_results


class FreshRequestClient(FlaskClient):
    """Every request with an empty ``g`` (the ``app`` fixture keeps one app context open, and
    Flask-Login would otherwise remember the previous request's user)."""

    def open(self, *args, **kwargs):
        for key in list(g):
            g.pop(key, None)
        return super().open(*args, **kwargs)


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def clock(monkeypatch):
    state = {"now": NOW}
    monkeypatch.setattr("app.overview.routes.clock_now", lambda: state["now"])
    monkeypatch.setattr("app.calls.routes.clock_now", lambda: state["now"])
    monkeypatch.setattr("app.reports.routes.clock_now", lambda: state["now"])
    return state


@pytest.fixture
def browser_for(app):
    """A signed-in client per user name."""

    def make(username: str) -> FreshRequestClient:
        client = FreshRequestClient(app, app.response_class, use_cookies=True)
        token = csrf_token(text(client.get("/")))
        reply = client.post("/", data={"username": username, "password": PASSWORD, "csrf_token": token})
        assert reply.status_code == 302, text(reply)[:300]
        return client

    return make


def beat(minutes_ago: float, now: datetime = NOW) -> None:
    moment = utc_naive(now) - timedelta(minutes=minutes_ago)
    db.session.add(SchedulerHeartbeat(host="sched-1", pid=4242, started_at=moment - timedelta(hours=1), beat_at=moment))
    db.session.commit()


# ---------------------------------------------------------------------------
# A small city: 岳阳县 drawn and half called, 华容县 not drawn yet, 君山区 deactivated after its
# round, 临湘市 deactivated long ago (no round)
# ---------------------------------------------------------------------------


@pytest.fixture
def city(county, make_county, make_team, make_user, clock):
    a = drawn_round(county, make_team, make_user, institutions=("新墙镇卫生院", "荣家湾镇卫生院"))
    primaries = db.session.scalars(
        select(Case).where(Case.round_id == a.round.id, Case.kind == "primary").order_by(Case.id)
    ).all()
    # dispositions straight into the rows: 2 completes, 1 refusal, 1 moved away (NE), 2 dialled
    # without an answer yet, the rest never dialled
    for case, (status, outcome, attempts) in zip(primaries, [
        ("done", "complete", 1), ("done", "complete", 2), ("done", "refusal", 1), ("done", "moved", 1),
        ("queued", None, 1), ("queued", None, 2),
    ]):
        case.status, case.outcome, case.attempt_count, case.last_outcome = status, outcome, attempts, outcome
    db.session.commit()
    # three more completed interviews with answers; two are flagged, one of those already settled
    add_results(county, a.teams[0], MONTH, [{"flags": "unaware"}, {"flags": "dissatisfied"}, {}], status="open")
    flagged = db.session.scalars(select(Response).where(Response.round_id == a.round.id, Response.flags.is_not(None))
                                 .order_by(Response.id)).all()
    problems = [sync_problem(db.session, r) for r in flagged]
    db.session.flush()
    problems[1].status = "closed"
    db.session.commit()

    b = make_county("华容县", "430623")
    for inst in ("东山镇卫生院", "万庾镇卫生院", "章华镇卫生院"):
        add_residents(make_team(b, inst, f"{inst}甲团队"), 5)
    closed = Institution(county_id=b.id, name="已撤并卫生院", type="乡镇卫生院", active=False)
    db.session.add(closed)

    c = make_county("君山区", "430611")
    add_results(c, make_team(c, "柳林洲镇卫生院", "一团队"), MONTH, [{}], outcomes=["no_answer"], status="closed")
    c.active = False
    d = make_county("临湘市", "430682")
    d.active = False
    db.session.commit()

    # roster imports: one for 岳阳县 chosen at import, then a city-wide file holding 华容县's
    # residents, then a failed one for 岳阳县 and a preview (neither counts)
    own = ImportBatch(filename="岳阳县.xlsx", sha256="a" * 64, county_id=county.id, created_by="admin",
                      started_at=datetime(2026, 11, 2, 1, 0), finished_at=datetime(2026, 11, 2, 1, 5), status="applied")
    citywide = ImportBatch(filename="全市.csv", sha256="b" * 64, county_id=None, created_by="admin",
                           started_at=datetime(2026, 11, 5, 1, 0), finished_at=datetime(2026, 11, 5, 1, 9), status="applied")
    db.session.add_all([own, citywide])
    db.session.flush()
    db.session.add_all([
        ImportBatch(filename="坏文件.xlsx", sha256="c" * 64, county_id=county.id, created_by="admin",
                    started_at=datetime(2026, 11, 9, 1, 0), status="failed"),
        ImportBatch(filename="预览.xlsx", sha256="d" * 64, county_id=None, created_by="admin",
                    started_at=datetime(2026, 11, 10, 1, 0), status="preview"),
    ])
    b_teams = select(Team.id).join(Institution).where(Institution.county_id == b.id)
    db.session.execute(update(Resident).where(Resident.team_id.in_(b_teams)).values(last_seen_batch_id=citywide.id))
    db.session.commit()
    make_user("cityadmin", "admin")
    return {"a": county, "b": b, "c": c, "d": d, "setup": a, "own": own.id, "citywide": citywide.id}


def expected(county_id: int) -> dict:
    """The county's figures counted from the rows, without the application's code."""
    round_ = db.session.scalar(select(Round).where(Round.county_id == county_id, Round.month == MONTH))
    count = lambda *where: db.session.scalar(select(func.count()).select_from(Case).where(Case.round_id == round_.id, *where))  # noqa: E731
    completed = count(Case.outcome == "complete")
    # RR1's denominator: every active case (primaries and activated backups) but the not eligible
    eligible = count(Case.status != "reserve", Case.outcome.is_distinct_from("moved"))
    unresolved = db.session.scalar(select(func.count()).select_from(Problem).where(
        Problem.county_id == county_id, Problem.month == MONTH, Problem.status.in_(("open", "assigned"))))
    return {"target": count(Case.kind == "primary"), "completed": completed, "rr1": completed / eligible,
            "problems": unresolved, "eligible": eligible}


def cells(page: str, name: str) -> list[str]:
    """The text of each cell of the row whose first cell is ``name``."""
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S):
        found = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        if found and re.sub(r"<[^>]+>|\s", "", found[0]).startswith(name):
            return [html_lib.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in found]
    raise AssertionError(f"no row {name}")


# ---------------------------------------------------------------------------
# Landing
# ---------------------------------------------------------------------------


def test_each_role_lands_on_its_work(app, county, make_user, browser_for, clock):
    make_user("cityadmin", "admin")
    make_user("sup", "supervisor", county)
    make_user("caller", "caller", county)
    for username, target, heading in (("cityadmin", "/overview/", "全市概览"), ("sup", "/calls/board", "调查进度"),
                                      ("caller", "/calls/", "拨打任务")):
        client = FreshRequestClient(app, app.response_class, use_cookies=True)
        token = csrf_token(text(client.get("/")))
        reply = client.post("/", data={"username": username, "password": PASSWORD, "csrf_token": token})
        assert reply.headers["Location"] == target, username
        landed = client.get(target)
        assert landed.status_code == 200 and heading in text(landed), username
        # the brand link (the front page) leads to the same place
        assert client.get("/").headers["Location"] == target
    admin = browser_for("cityadmin")
    assert '<a href="/overview/">全市概览</a>' in text(admin.get("/overview/"))
    assert "全市概览" not in text(browser_for("sup").get("/calls/board"))


# ---------------------------------------------------------------------------
# The figures
# ---------------------------------------------------------------------------


def test_overview_figures_match_the_rows(app, city, browser_for):
    a, b = city["a"], city["b"]
    want = expected(a.id)
    assert (want["target"], want["completed"], want["problems"]) == (23, 5, 1)  # the fixture as meant
    page = text(browser_for("cityadmin").get("/overview/"))
    assert "全市概览 · 2026-11" in page

    row = cells(page, "岳阳县")
    assert row[1] == "进行中"
    assert row[2] == "2"  # active institutions
    assert row[3] == str(want["target"]) and row[4] == str(want["completed"])
    assert row[6] == f"{want['rr1'] * 100:.1f}%"
    assert row[7] == str(want["problems"])
    assert row[8] == "2026-11-02"  # its own import; the failed one after it does not count

    row = cells(page, "华容县")
    assert row[1] == "未抽样"
    assert row[2] == "3"  # the closed institution is not counted
    assert row[3] == "≈30"  # 3 active institutions × 10 (DRAW_SAMPLE_SIZE), an estimate
    assert row[4] == "—" and row[6] == "—"
    assert row[8].startswith("2026-11-05") and "全市名册" in row[8]  # the city-wide file held its residents

    # a county deactivated after its round is listed apart; one without a round only named
    row = cells(page, "君山区")
    assert "已停用" in row[0] and row[1] == "已结束"
    gone = expected(city["c"].id)
    assert row[4] == str(gone["completed"]) and row[6] == f"{gone['rr1'] * 100:.1f}%"
    assert row[8] == "从未导入"
    with pytest.raises(AssertionError):
        cells(page, "临湘市")
    assert "未列出：临湘市" in page

    total = cells(page, "全市")
    assert total[1] == "进行中 1 · 已结束 1 · 未抽样 1"
    assert total[3].startswith(str(want["target"] + gone["target"])) and "另≈30" in total[3]
    assert total[4] == str(want["completed"] + gone["completed"])
    rr1 = (want["completed"] + gone["completed"]) / (want["eligible"] + gone["eligible"])
    assert total[6] == f"{rr1 * 100:.1f}%"
    assert total[7] == str(want["problems"])
    assert total[8] == "2026-11-05"


def test_overview_links_down(app, city, browser_for):
    a, b = city["a"], city["b"]
    admin = browser_for("cityadmin")
    page = html_lib.unescape(text(admin.get("/overview/")))
    round_id = city["setup"].round.id
    for link in (f"/org/counties/{a.id}", f"/draws/{round_id}", f"/calls/board?month=2026-11&county={a.id}",
                 f"/reports/unit/county/{a.id}?month=2026-11", f"/reports/problems?county={a.id}&month=2026-11",
                 f"/roster/batches/{city['own']}", f"/roster/batches/{city['citywide']}", "/draws/",
                 "/reports/rankings?level=county&month=2026-11"):
        assert f'href="{link}"' in page, link
    for link in re.findall(r'href="(/[^"]+)"', page):
        if not link.startswith("/static/"):
            assert admin.get(link).status_code == 200, link
    # the county's board shows that county alone
    board = text(admin.get(f"/calls/board?month=2026-11&county={a.id}"))
    assert "调查进度 · 岳阳县 · 2026-11" in board and "新墙镇卫生院" in board and "柳林洲镇卫生院" not in board
    assert "柳林洲镇卫生院" in text(admin.get("/calls/board?month=2026-11"))


def test_month_selector(app, city, browser_for, clock):
    admin = browser_for("cityadmin")
    page = text(admin.get("/overview/?month=2026-10"))
    assert "全市概览 · 2026-10" in page
    assert cells(page, "岳阳县")[1] == "未抽样" and cells(page, "岳阳县")[3] == "≈20"
    assert 'href="/overview/?month=2026-11"' in page and 'href="/overview/?month=2026-09"' in page
    bad = text(admin.get("/overview/?month=2026-13"))
    assert "全市概览 · 2026-11" in bad and "月份格式应为" in html_lib.unescape(bad)
    # the default follows the clock (Asia/Shanghai): 1 December 00:30 there is still 30 November in UTC
    clock["now"] = datetime(2026, 11, 30, 16, 30, tzinfo=timezone.utc)
    assert "全市概览 · 2026-12" in text(admin.get("/overview/"))


def test_a_fixed_number_of_queries_whatever_the_number_of_counties(app, city, make_county, make_team, make_user):
    statements = []

    def count(_conn, _cursor, statement, *_args):
        if not statement.startswith("BEGIN"):  # SQLite's own transaction start (app/__init__.py)
            statements.append(statement)

    def run() -> int:
        db.session.rollback()
        statements.clear()
        event.listen(db.engine, "before_cursor_execute", count)
        try:
            overview = city_overview(db.session, MONTH, sample_size=10, now=NOW)
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        assert overview.total.completed > 0
        return list(statements)

    before = run()
    for name, code in (("平江县", "430626"), ("湘阴县", "430624")):
        drawn_round(make_county(name, code), make_team, make_user, institutions=("城关镇卫生院", "南湖卫生院"))
    after = run()
    assert len(after) == len(before) <= 12, [s[:60] for s in after]


# ---------------------------------------------------------------------------
# The scheduler's state at the top
# ---------------------------------------------------------------------------


def test_overview_warns_when_no_scheduler_is_running(app, city, browser_for, clock):
    admin = browser_for("cityadmin")
    page = text(admin.get("/overview/"))
    assert 'class="scheduler-down"' in page and "定时任务进程未运行" in page and "从未收到" in page
    assert "flask --app wsgi scheduler run" in page and "survey-scheduler" in page
    beat(1)
    assert "定时任务进程未运行" not in text(admin.get("/overview/"))
    clock["now"] = NOW + timedelta(minutes=6)  # the same beat, 7 minutes old
    page = text(admin.get("/overview/"))
    assert "定时任务进程未运行" in page and "7 分钟前" in page and "sched-1" in page


# ---------------------------------------------------------------------------
# Who
# ---------------------------------------------------------------------------


def test_only_the_city_administrator_sees_it(app, county, make_user, browser_for, clock):
    make_user("cityadmin", "admin")
    make_user("sup", "supervisor", county)
    make_user("caller", "caller", county)
    assert browser_for("sup").get("/overview/").status_code == 403
    assert browser_for("caller").get("/overview/").status_code == 403
    anonymous = FreshRequestClient(app, app.response_class, use_cookies=True).get("/overview/")
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/?next=")
    assert browser_for("cityadmin").get("/overview/").status_code == 200


def test_a_supervisor_cannot_pick_another_county_on_the_board(app, city, make_user, browser_for):
    make_user("hr_sup", "supervisor", city["b"])
    page = text(browser_for("hr_sup").get(f"/calls/board?month=2026-11&county={city['a'].id}"))
    assert "新墙镇卫生院" not in page and "岳阳县" not in page.split("<main>")[1]
