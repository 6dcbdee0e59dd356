"""A caller's own day on the home page (/calls/) and its poller's endpoint (/calls/day.json):
their attempts, contacts and completes today and this month, their callbacks due today
(sorted, masked, marked 已到期 once due), the count of later ones, and the county's remaining
work in one line. Only the signed-in user's own work in their county's current round counts:
never another caller's, never another county's. The clock is pinned as in test_calls_web.py."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.calls.outcomes import OUTCOMES
from app.core.clock import local, utc_naive
from app.extensions import db
from app.models import Attempt, AuditLog, Case
from tests.calls_support import at, case_by, drawn_round
from tests.helpers import PASSWORD, csrf_token

TODAY = at(23, 9, 30).date()


@pytest.fixture
def clock(monkeypatch):
    state = {"now": at(23, 9, 30)}
    monkeypatch.setattr("app.calls.routes.clock_now", lambda: state["now"])
    return state


@pytest.fixture
def setup(county, make_team, make_user, clock):
    return drawn_round(county, make_team, make_user)


@pytest.fixture
def elsewhere(setup, make_county, make_team, make_user):
    """Another county with its own round, callers and supervisor."""
    return drawn_round(make_county("华容县", "430623"), make_team, make_user)


def sign_in(app, username):
    """A browser session of its own (inside a fresh app context: Flask-Login caches the user in g)."""
    client = app.test_client()
    token = csrf_token(client.get("/").get_data(as_text=True))
    reply = client.post("/", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert reply.status_code == 302
    return client


def queued(round_, n=None) -> list[Case]:
    cases = db.session.scalars(
        select(Case).where(Case.round_id == round_.id, Case.status == "queued").order_by(Case.id)
    ).all()
    return list(cases[:n] if n else cases)


def add_attempt(case: Case, caller, outcome: str | None, when) -> None:
    number = (db.session.scalar(select(func.max(Attempt.number)).where(Attempt.case_id == case.id)) or 0) + 1
    db.session.add(Attempt(case_id=case.id, round_id=case.round_id, number=number, caller_id=caller.id,
                           started_at=utc_naive(when), ended_at=None if outcome is None else utc_naive(when),
                           outcome=outcome, connected=outcome is not None and OUTCOMES[outcome].connected))
    db.session.commit()


def set_callback(case: Case, user, when, status: str = "queued") -> None:
    case.callback_at, case.callback_by_id, case.status = utc_naive(when), user.id, status
    db.session.commit()


def figures(page: str) -> dict[str, int]:
    return {key: int(value) for key, value in re.findall(r'data-fig="([a-z.]+)">(\d+)<', page)}


def listed(page: str) -> list[int]:
    """The case ids of the callbacks listed on the home page, in order."""
    section = page[page.index('id="callback-list"'):page.index('id="callback-none"')]
    return [int(i) for i in re.findall(r'data-case="(\d+)"', section)]


def independent_count(caller, round_) -> dict[str, int]:
    """The figures counted here from every attempt row, in Python, by local calendar day."""
    mine = [a for a in db.session.scalars(select(Attempt)).all()
            if a.caller_id == caller.id and a.round_id == round_.id]
    today = [a for a in mine if local(a.started_at).date() == TODAY]
    month = [a for a in mine if local(a.started_at).strftime("%Y-%m") == round_.month]

    def three(rows):
        return (len(rows), sum(1 for a in rows if a.outcome and OUTCOMES[a.outcome].contact),
                sum(1 for a in rows if a.outcome == "complete"))

    (ta, tc, tk), (ma, mc, mk) = three(today), three(month)
    return {"today.attempts": ta, "today.contacts": tc, "today.completes": tk,
            "month.attempts": ma, "month.contacts": mc, "month.completes": mk}


def test_figures_count_my_own_attempts_today_and_this_month(app, client, login, setup, elsewhere):
    cases = queued(setup.round, 10)
    me = setup.caller
    # today (local): one of each kind, including the first minutes after local midnight
    add_attempt(cases[0], me, "no_answer", at(23, 0, 5))  # 16:05 UTC on the 22nd: still today here
    add_attempt(cases[1], me, "refusal", at(23, 8, 40))
    add_attempt(cases[2], me, "complete", at(23, 8, 50))
    add_attempt(cases[3], me, "callback", at(23, 9, 0))  # reached someone, not a contact
    add_attempt(cases[4], me, "deceased", at(23, 9, 10))  # a contact (with a relative)
    add_attempt(cases[5], me, None, at(23, 9, 25))  # on the phone right now
    # earlier this month
    add_attempt(cases[0], me, "busy", at(22, 23, 55))  # yesterday, five minutes before midnight
    add_attempt(cases[6], me, "complete", at(2, 10, 0))
    add_attempt(cases[7], me, "partial", at(1, 0, 1))
    # another caller's attempts, today
    add_attempt(cases[8], setup.other, "complete", at(23, 9, 5))
    add_attempt(cases[8], setup.other, "no_answer", at(23, 9, 6))
    add_attempt(cases[9], setup.supervisor, "refusal", at(23, 9, 7))
    # another county's round: neither its callers' attempts nor one filed there under my id
    there = queued(elsewhere.round, 2)
    add_attempt(there[0], elsewhere.caller, "complete", at(23, 9, 1))
    add_attempt(there[1], me, "complete", at(23, 9, 2))

    expected = independent_count(me, setup.round)
    assert expected == {"today.attempts": 6, "today.contacts": 3, "today.completes": 1,
                        "month.attempts": 9, "month.contacts": 5, "month.completes": 2}
    login(me.username)
    page = client.get("/calls/").get_data(as_text=True)
    assert {k: v for k, v in figures(page).items() if k != "later"} == expected
    data = client.get("/calls/day.json").get_json()
    assert data["today"] == {"attempts": 6, "contacts": 3, "completes": 1}
    assert data["month"] == {"attempts": 9, "contacts": 5, "completes": 2}

    # the other caller sees their own figures, the supervisor theirs
    with app.app_context():
        other = sign_in(app, setup.other.username).get("/calls/day.json").get_json()
    assert other["today"] == {"attempts": 2, "contacts": 1, "completes": 1}
    with app.app_context():
        supervisor = sign_in(app, setup.supervisor.username)
        assert supervisor.get("/calls/day.json").get_json()["today"] == {"attempts": 1, "contacts": 1, "completes": 0}
        assert figures(supervisor.get("/calls/").get_data(as_text=True))["month.contacts"] == 1


def test_callbacks_due_today_sorted_masked_and_mine_only(app, client, login, setup, elsewhere):
    cases = queued(setup.round, 10)
    me = setup.caller
    set_callback(cases[0], me, at(23, 15, 0))
    set_callback(cases[1], me, at(23, 10, 30))
    set_callback(cases[2], me, at(23, 9, 0))  # due half an hour ago
    set_callback(cases[3], me, at(22, 18, 0))  # yesterday's, never called back: overdue, listed first
    set_callback(cases[4], me, at(24, 9, 0))  # tomorrow: counted as later, not listed
    set_callback(cases[5], me, at(25, 16, 0))
    set_callback(cases[6], setup.other, at(23, 11, 0))  # another caller's callback
    set_callback(cases[7], me, at(23, 11, 30), status="done")  # ended since
    there = queued(elsewhere.round, 1)[0]
    set_callback(there, me, at(23, 12, 0))  # filed in another county's round
    set_callback(queued(elsewhere.round, 2)[1], elsewhere.caller, at(23, 9, 15))

    login(me.username)
    page = client.get("/calls/").get_data(as_text=True)
    order = [cases[3].id, cases[2].id, cases[1].id, cases[0].id]
    assert listed(page) == order
    # each with its local time, a link to the case, the institution and the masked phone
    for case, time in zip([cases[2], cases[1], cases[0]], ["09:00", "10:30", "15:00"]):
        item = re.search(rf'<li class="callback[^"]*" data-case="{case.id}".*?</li>', page, re.S).group(0)
        assert f'<span class="when">{time}</span>' in item
        assert f'href="/calls/case/{case.id}">{case.name}</a>' in item
        assert case.institution_name in item
        assert f"{case.phone[:3]}****{case.phone[-4:]}" in item and case.phone not in page
    assert "11月22日 18:00" in page
    due = re.findall(r'<li class="callback due" data-case="(\d+)" data-due>', page)
    assert [int(i) for i in due] == [cases[3].id, cases[2].id]
    assert page.count("已到期") == 2
    assert re.search(r'以后几天还有您约定的回访 <strong data-fig="later">2</strong> 个', page)
    for stranger in (cases[6], cases[7], there):
        assert f'data-case="{stranger.id}"' not in page

    data = client.get("/calls/day.json").get_json()
    assert [c["case_id"] for c in data["callbacks"]] == order
    assert data["later"] == 2
    assert data["callbacks"][1] == {
        "case_id": cases[2].id, "name": cases[2].name, "time": "09:00", "due": True,
        "url": f"/calls/case/{cases[2].id}", "institution": cases[2].institution_name,
        "phone": f"{cases[2].phone[:3]}****{cases[2].phone[-4:]}",
    }
    assert [c["due"] for c in data["callbacks"]] == [True, True, False, False]
    assert not any(c.phone in str(data) for c in cases)

    # the other county's caller: only their own callback, nothing of this county
    with app.app_context():
        theirs = sign_in(app, elsewhere.caller.username).get("/calls/day.json").get_json()
    assert [c["case_id"] for c in theirs["callbacks"]] == [queued(elsewhere.round, 2)[1].id]
    assert theirs["later"] == 0


def test_a_callback_set_over_http_falls_due_in_day_json(app, client, login, setup, clock):
    login(setup.caller.username)
    token = csrf_token(client.get("/calls/").get_data(as_text=True))
    case_id = int(client.post("/calls/next", data={"csrf_token": token}).headers["Location"].rsplit("/", 1)[1])
    reply = client.post(f"/calls/case/{case_id}/attempt", data={
        "csrf_token": token, "outcome": "callback", "number": "1",
        "callback_date": TODAY.isoformat(), "callback_time": "10:30"})
    assert reply.status_code == 302 and case_by(case_id).callback_at is not None

    page = client.get("/calls/").get_data(as_text=True)
    assert listed(page) == [case_id] and "已到期" not in page
    assert figures(page)["today.attempts"] == 1 and figures(page)["today.contacts"] == 0
    before = client.get("/calls/day.json").get_json()
    assert before["callbacks"] == [{"case_id": case_id, "name": case_by(case_id).name, "time": "10:30", "due": False,
                                    "url": f"/calls/case/{case_id}", "institution": case_by(case_id).institution_name,
                                    "phone": before["callbacks"][0]["phone"]}]
    assert before["today"] == {"attempts": 1, "contacts": 0, "completes": 0}

    clock["now"] = at(23, 10, 29)
    assert client.get("/calls/day.json").get_json()["callbacks"][0]["due"] is False
    clock["now"] = at(23, 10, 30)  # its time has come: due, with no page reload
    after = client.get("/calls/day.json").get_json()
    assert [(c["case_id"], c["time"], c["due"]) for c in after["callbacks"]] == [(case_id, "10:30", True)]
    assert "已到期" in client.get("/calls/").get_data(as_text=True)

    # the next day the callback is an overdue one from yesterday, shown with its date
    clock["now"] = at(24, 9, 0)
    next_day = client.get("/calls/day.json").get_json()
    assert next_day["callbacks"][0]["time"] == "11月23日 10:30" and next_day["callbacks"][0]["due"] is True
    assert next_day["today"] == {"attempts": 0, "contacts": 0, "completes": 0}
    assert next_day["month"] == {"attempts": 1, "contacts": 0, "completes": 0}


def test_day_json_is_for_callers_and_supervisors_and_changes_nothing(app, client, login, setup, make_user):
    add_attempt(queued(setup.round, 1)[0], setup.caller, "complete", at(23, 9, 0))
    anonymous = client.get("/calls/day.json")
    assert anonymous.status_code == 302 and not anonymous.is_json  # to the sign-in page
    make_user("cityadmin", "admin")
    with app.app_context():
        assert sign_in(app, "cityadmin").get("/calls/day.json").status_code == 403
    assert client.post("/calls/day.json").status_code in (400, 405)

    login(setup.caller.username)
    audit_rows = db.session.scalar(select(func.count()).select_from(AuditLog))
    reply = client.get("/calls/day.json")
    assert reply.status_code == 200 and reply.is_json
    assert "no-store" in reply.headers["Cache-Control"]
    assert reply.get_json()["today"]["completes"] == 1
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(AuditLog)) == audit_rows
    assert db.session.scalar(select(func.count()).select_from(Attempt)) == 1


def test_home_page_layout_button_first_notice_and_county_line(client, login, setup):
    login(setup.caller.username)
    page = client.get("/calls/").get_data(as_text=True)
    # the big button comes before everything else on the page, and has the focus
    main = page[page.index("<main>"):]
    assert main.index('id="next"') < main.index('id="my-day"') < main.index('id="county-line"')
    assert re.search(r'<button[^>]*id="next"[^>]*autofocus', page)
    assert re.search(r'id="callback-notice" role="status" aria-live="polite"', page)
    assert 'data-url="/calls/day.json"' in page and 'src="/static/day.js"' in page
    # callbacks are a list of cards, not a table that could be wider than a phone
    day_part = page[page.index('id="my-day"'):page.index('id="figures-title"')]
    assert "<table" not in day_part and '<ol class="callbacks"' in day_part
    # the county's remaining work, in one line, from the queue counts
    open_cases = db.session.scalar(
        select(func.count()).select_from(Case).where(Case.round_id == setup.round.id, Case.status == "queued"))
    line = page[page.index('id="county-line"'):]
    line = re.sub(r"<[^>]+>", "", line[:line.index("</dl>")])
    assert f"全县还有 {open_cases} 个样本未结束" in line
    assert "现在可拨" in line and "等待再拨" in line and "通话中" in line


def test_no_round_yet_and_a_held_case(app, client, login, setup, make_county, make_user, clock):
    quiet = make_county("平江县", "430626")
    make_user("quiet", "caller", quiet)
    with app.app_context():
        lonely = sign_in(app, "quiet")
        assert "尚未抽样" in lonely.get("/calls/").get_data(as_text=True)
        data = lonely.get("/calls/day.json").get_json()
    assert data["callbacks"] == [] and data["today"] == {"attempts": 0, "contacts": 0, "completes": 0}

    # a caller holding a case: 继续拨打 keeps the first place and the focus
    login(setup.caller.username)
    token = csrf_token(client.get("/calls/").get_data(as_text=True))
    client.post("/calls/next", data={"csrf_token": token})
    page = client.get("/calls/").get_data(as_text=True)
    main = page[page.index("<main>"):]
    assert re.search(r'id="continue"[^>]*autofocus', page)
    assert main.index('id="continue"') < main.index('id="my-day"')


def test_today_and_month_follow_shanghai_days(app, client, login, setup, clock):
    """At 00:30 local the day just begun is today, though UTC still reads the day before."""
    case = queued(setup.round, 1)[0]
    add_attempt(case, setup.caller, "no_answer", at(23, 23, 50))
    clock["now"] = at(24, 0, 30)
    assert utc_naive(clock["now"]).day == 23
    login(setup.caller.username)
    data = client.get("/calls/day.json").get_json()
    assert data["today"]["attempts"] == 0 and data["month"]["attempts"] == 1
    clock["now"] = at(23, 23, 59) + timedelta(seconds=30)
    assert client.get("/calls/day.json").get_json()["today"]["attempts"] == 1


FITS_THE_WIDTH = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('main *, header *')]
    .filter(e => e.offsetParent !== null && e.getBoundingClientRect().right > width + 1)
    .map(e => e.tagName + '.' + e.className + ': ' + (e.textContent || '').trim().slice(0, 30));
  return {scroll: document.documentElement.scrollWidth, width, wide};
}"""


@pytest.mark.browser
def test_in_a_browser_at_360px_a_callback_falling_due_is_announced(app, setup, clock):
    """The page at a small phone's width fits the screen; when day.js polls (here: the tab
    becomes visible again) after a callback's time has come, the notice names it and links
    to it, the list marks it 已到期 and the figures follow, without reloading the page."""
    from tests.browser import chromium, live_server, require_chromium, sign_in as browser_sign_in
    from tests.helpers import OUTPUT_DIR

    require_chromium()
    OUTPUT_DIR.mkdir(exist_ok=True)
    cases = queued(setup.round, 3)
    set_callback(cases[0], setup.caller, at(23, 9, 0))
    set_callback(cases[1], setup.caller, at(23, 10, 30))
    set_callback(cases[2], setup.caller, at(26, 10, 0))
    add_attempt(cases[0], setup.caller, "callback", at(22, 15, 0))
    clock["now"] = at(23, 10, 29)
    name = cases[1].name
    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport={"width": 360, "height": 740}, locale="zh-CN")
        browser_sign_in(page, base, setup.caller.username)
        page.goto(base + "/calls/")
        page.wait_for_selector("#next")
        assert page.evaluate("document.activeElement.id") == "next"
        overflow = page.evaluate(FITS_THE_WIDTH)
        assert overflow["scroll"] <= overflow["width"] and not overflow["wide"], overflow
        assert page.locator("#callback-list li").count() == 2
        assert page.locator("#callback-list li.due").count() == 1
        assert page.locator("#callback-notice").inner_text() == ""
        page.screenshot(path=str(OUTPUT_DIR / "caller-day-360.png"), full_page=True)

        clock["now"] = at(23, 10, 30)
        db.session.rollback()  # a fresh snapshot: SQLite lets an old reader not write
        add_attempt(cases[0], setup.caller, "refusal", at(23, 10, 5))
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
        notice = page.locator("#callback-notice")
        notice.locator("a").wait_for()
        assert notice.locator(".message").inner_text() == f"回访时间到：{name}（10:30）"
        assert notice.locator("a").get_attribute("href") == f"/calls/case/{cases[1].id}"
        assert page.locator("#callback-list li.due").count() == 2
        assert page.locator('[data-fig="today.attempts"]').inner_text() == "1"
        assert page.locator('[data-fig="today.contacts"]').inner_text() == "1"
        overflow = page.evaluate(FITS_THE_WIDTH)
        assert overflow["scroll"] <= overflow["width"] and not overflow["wide"], overflow
        page.screenshot(path=str(OUTPUT_DIR / "caller-day-360-due.png"), full_page=True)
        # announced once: the next poll does not repeat it after it was dismissed
        notice.get_by_role("button", name="知道了").click()
        page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
        page.wait_for_load_state("networkidle")
        assert notice.inner_text() == ""
