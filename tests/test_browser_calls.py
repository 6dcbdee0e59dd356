"""The caller's work in a real browser, by keyboard only, at a desktop's and a phone's size:

* a no-answer is one key and one request from one case's panel to the next, with the
  confirmation, the URL of the new case (reload shows it, posts nothing), undo by U, and the
  outcomes that need a note (9 + text + Ctrl+Enter) or a time (7 + date/time + Ctrl+Enter);
* a complete interview: K, digit keys and Enter on every question (Enter makes a new line in
  the text question, Ctrl+Enter saves), the last question finishes and lands on the next
  case's panel: one page load per question and one for the panel;
* an interview interrupted after three questions (通话中断，约定续访) comes back at the agreed
  time and K continues at question 4.

The figures printed here (keys, requests, page loads) are those in docs/calling.md.
Screenshots go to tests/output/calls-*.png (look at them)."""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Attempt, Case, Response
from tests.browser import chromium, live_server, require_chromium, sign_in
from tests.calls_support import at, drawn_round
from tests.helpers import OUTPUT_DIR
from tests.calls_support import clock  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 360, "height": 740}
SIZES = pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["1366x768", "360x740"])

# the questionnaire answered by keys: (item, keys pressed before Enter or Ctrl+Enter)
SINGLE, MULTI, NUMBER, TEXT = "single", "multi", "integer", "text"


# ---------------------------------------------------------------------------
# helpers shared with tests/test_browser_panel.py
# ---------------------------------------------------------------------------


def shot(page, name: str) -> None:
    OUTPUT_DIR.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT_DIR / f"calls-{name}.png"), full_page=True)


def fits_the_width(page) -> None:
    """Nothing wider than the viewport (no sideways scrolling, nothing cut off at the right)."""
    overflow = page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          const wide = [...document.querySelectorAll('main *, header *')]
            .filter(e => e.offsetParent !== null && e.getBoundingClientRect().right > width + 1)
            .map(e => e.tagName + '.' + e.className + ': ' + (e.textContent || '').trim().slice(0, 30));
          return {scroll: document.documentElement.scrollWidth, width, wide, url: location.pathname};
        }"""
    )
    assert overflow["scroll"] <= overflow["width"], overflow
    assert not overflow["wide"], overflow


class Traffic:
    """What the page asked the server for: documents, fetch and XHR (not CSS, scripts, images),
    and the page loads (documents loaded in the tab, a redirect chain being one; the panel's
    history.replaceState changes the address without a load)."""

    def __init__(self, page):
        self.requests: list[tuple[str, str]] = []
        self.loads: list[str] = []
        page.on("request", self._request)
        page.on("domcontentloaded", lambda p: self.loads.append(p.url))

    def _request(self, request) -> None:
        if request.resource_type in ("document", "fetch", "xhr"):
            self.requests.append((request.method, request.url))

    def since(self, mark: tuple[int, int]) -> tuple[list, list]:
        return self.requests[mark[0]:], self.loads[mark[1]:]

    def mark(self) -> tuple[int, int]:
        return len(self.requests), len(self.loads)


class Keys:
    """The keyboard, counting what the caller presses (a typed character is one key)."""

    def __init__(self, page):
        self.page, self.count = page, 0

    def press(self, key: str) -> None:
        self.count += 1
        self.page.keyboard.press(key)

    def type(self, text: str) -> None:
        self.count += len(text)
        self.page.keyboard.type(text)


def panel_case(page) -> int:
    return int(page.locator("form#panel").get_attribute("data-case"))


def db_read(fn):
    """Read what the live server committed, then end the test thread's transaction."""
    db.session.rollback()
    db.session.expire_all()
    try:
        return fn()
    finally:
        db.session.rollback()


def case_name(case_id: int) -> str:
    return db_read(lambda: db.session.get(Case, case_id).name)


def attempts_of(case_id: int) -> list[tuple[int, str]]:
    return db_read(lambda: [(a.number, a.outcome) for a in db.session.scalars(
        select(Attempt).where(Attempt.case_id == case_id).order_by(Attempt.number))])


def focused(page) -> str:
    return page.evaluate("document.activeElement.id || document.activeElement.name || document.activeElement.tagName")


def arrived(page, selector: str) -> None:
    """The new page shows ``selector`` and has loaded: its deferred script (calls.js, whose
    key handlers the next key press needs) has run."""
    page.wait_for_selector(selector)
    page.wait_for_load_state("load")


def wait_focus(page, name: str) -> None:
    """Wait until the page's autofocus (applied by the browser a moment after loading) has put
    the focus on this element (id, name or tag); fail if it never does."""
    page.wait_for_function(
        """name => { const e = document.activeElement;
                     return !!e && (e.id || e.name || e.tagName) === name; }""", arg=name, timeout=5000)


def tab_to(page, keys: Keys, name: str, *, back: bool = False, most: int = 40) -> None:
    """Tab (or Shift+Tab) until the element with this id (or name or tag) has the focus."""
    for _ in range(most):
        if focused(page) == name:
            return
        keys.press("Shift+Tab" if back else "Tab")
    assert focused(page) == name


_FIELD_ORDER: dict[int, tuple[bool, bool]] = {}


def _learn_fields(page) -> tuple[bool, bool]:
    """How this Chromium shows date and time fields, found once by typing into probes: a
    Chinese ICU locale shows yyyy/mm/dd and 24 hours; a build without one (Debian's headless
    chromium here) shows mm/dd/yyyy and hh:mm AM/PM, whatever the page's locale."""
    if id(page) not in _FIELD_ORDER:
        values = []
        for kind, typed in (("date", "12252026"), ("time", "0930")):
            page.evaluate("""kind => { const i = document.createElement('input'); i.type = kind; i.id = 'probe';
                                       document.body.append(i); i.focus(); }""", kind)
            page.keyboard.type(typed)
            values.append(page.evaluate("""() => { const i = document.getElementById('probe');
                                                   const v = i.value; i.remove(); return v; }"""))
        _FIELD_ORDER[id(page)] = (values[0] == "2026-12-25", values[1] == "")
    return _FIELD_ORDER[id(page)]


def date_digits(page, iso: str) -> str:
    """The keys a person types into a date field for the day ``iso``, in the field's order."""
    us, _ = _learn_fields(page)
    year, month, day = iso.split("-")
    return f"{month}{day}{year}" if us else f"{year}{month}{day}"


def time_keys(page, hhmm: str) -> str:
    """The keys a person types into a time field for ``hhmm`` (with A or P where it asks)."""
    _, twelve = _learn_fields(page)
    hour, minute = int(hhmm[:2]), hhmm[2:]
    if not twelve:
        return hhmm
    return f"{(hour - 1) % 12 + 1:02d}{minute}{'P' if hour >= 12 else 'A'}"


def start_the_day(page, base: str, username: str, keys: Keys) -> int:
    """Sign in through the form, then 下一个 by the keyboard (it has the focus): the panel."""
    page.goto(base + "/")
    date_digits(page, "2026-11-23")  # learn the date field's order now, not while a field has the focus
    sign_in(page, base, username)
    if not re.search(r"/calls/$", page.url):
        page.goto(base + "/calls/")
    arrived(page, "#next")
    wait_focus(page, "next")  # autofocus: Enter takes the next case
    keys.press("Enter")
    arrived(page, "form#panel")
    return panel_case(page)


@pytest.fixture
def setup(county, make_team, make_user, clock):
    made = drawn_round(county, make_team, make_user)
    db.session.rollback()
    return made


# ---------------------------------------------------------------------------
# 1. a no-answer: one key, one request
# ---------------------------------------------------------------------------


@SIZES
def test_a_no_answer_is_one_key_and_one_request(app, setup, clock, size):
    require_chromium()
    tag = str(size["width"])
    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport=size, locale="zh-CN")
        traffic, keys = Traffic(page), Keys(page)
        first = start_the_day(page, base, setup.caller.username, keys)
        assert page.locator("#phone").get_attribute("href").startswith("tel:")
        shot(page, f"panel-{tag}")

        # "1" records 无人接听: the answer to that one request is the next case's panel
        keys.count, mark = 0, traffic.mark()
        keys.press("1")
        arrived(page, "#recorded")
        requests, loads = traffic.since(mark)
        print(f"\n[{tag}] no-answer: keys={keys.count} requests={len(requests)} {requests} loads={len(loads)}")
        assert keys.count == 1
        assert [method for method, _ in requests] == ["POST"] and requests[0][1].endswith(f"/calls/case/{first}/attempt")
        assert page.locator("#recorded").inner_text().startswith(f"已记录：{case_name(first)} · 无人接听（第 1 次）")
        second = panel_case(page)
        assert second != first
        assert page.url == f"{base}/calls/case/{second}"  # the new case's address, not the POST's
        assert attempts_of(first) == [(1, "no_answer")]
        shot(page, f"recorded-{tag}")

        # U within the window: the case is back, the same attempt number, no attempt recorded
        clock["now"] = at(23, 9, 30) + timedelta(seconds=5)
        mark = traffic.mark()
        keys.press("U")
        page.wait_for_url(f"{base}/calls/case/{first}")
        arrived(page, "form#panel")
        requests, loads = traffic.since(mark)
        assert [m for m, _ in requests] == ["POST", "GET"] and len(loads) == 1, (requests, loads)
        assert panel_case(page) == first
        assert "已撤销" in page.locator(".flash-info").first.inner_text()
        assert page.locator("form#panel input[name=number]").input_value() == "1"
        assert "第 1 次拨打" in page.locator(".case-head .unit").inner_text()
        assert page.locator("ol.history-list li").count() == 0 and "尚未拨打" in page.inner_text("main")
        assert attempts_of(first) == []
        shot(page, f"undone-{tag}")

        # again, and this time reload the next case's page: a GET of that case, nothing posted
        keys.press("1")
        arrived(page, "#recorded")
        second = panel_case(page)
        mark = traffic.mark()
        page.reload()
        arrived(page, "form#panel")
        requests, _ = traffic.since(mark)
        assert requests == [("GET", f"{base}/calls/case/{second}")]
        assert panel_case(page) == second and page.locator("#recorded").count() == 0
        assert attempts_of(first) == [(1, "no_answer")]

        # an outcome that needs a note: 9 goes to the note, Ctrl+Enter records
        keys.count, mark = 0, traffic.mark()
        keys.press("9")
        assert focused(page) == "note"
        assert page.locator("button[data-key='9']").get_attribute("class").split().count("chosen") == 1
        keys.type("接电话的是其儿媳，说号码登记错了")
        shot(page, f"note-pending-{tag}")
        keys.press("Control+Enter")
        arrived(page, "#recorded")
        requests, _ = traffic.since(mark)
        assert len(requests) == 1 and keys.count == 1 + len("接电话的是其儿媳，说号码登记错了") + 1
        assert page.locator("#recorded").inner_text().startswith(f"已记录：{case_name(second)} · 号码错误/非本人（第 1 次）")
        assert attempts_of(second) == [(1, "wrong_person")]
        third = panel_case(page)

        # a callback: 7 fills today's date and goes to the time; the day is changed by keyboard too
        keys.press("7")
        assert focused(page) == "callback_time"
        assert page.locator("#callback_date").input_value() == "2026-11-23"
        keys.type(time_keys(page, "1500"))
        digits = date_digits(page, "2026-11-24")
        tab_to(page, keys, "callback_date", back=True)  # back through the time's parts to the date
        while focused(page) == "callback_date":  # … through the date's parts, out of it
            keys.press("Shift+Tab")
        keys.press("Tab")  # … and in again at its first part
        keys.type(digits)
        assert page.locator("#callback_date").input_value() == "2026-11-24", page.locator("#callback_date").input_value()
        assert page.locator("#callback_time").input_value() == "15:00"
        shot(page, f"callback-pending-{tag}")
        mark = traffic.mark()
        with page.expect_navigation():  # this panel shows a confirmation too: wait for the next one
            keys.press("Control+Enter")
        arrived(page, "#recorded")
        assert len(traffic.since(mark)[0]) == 1
        assert f"{case_name(third)} · 约定回访（第 1 次），约定 11月24日 15:00 回访" in page.locator("#recorded").inner_text()
        assert attempts_of(third) == [(1, "callback")]
        assert panel_case(page) not in (first, second, third)
        fits_the_width(page)


# ---------------------------------------------------------------------------
# 2. a complete interview by keyboard
# ---------------------------------------------------------------------------


def answer(page, keys: Keys, code: str, *typed: str) -> None:
    """On question ``code``: press the keys, then Enter (Ctrl+Enter in the text question)."""
    page.wait_for_url(re.compile(rf"/q/{code}$"))
    page.wait_for_selector("form#answer")
    for key in typed:
        keys.press(key)
    keys.press("Control+Enter" if page.locator("form#answer textarea").count() else "Enter")


@SIZES
def test_an_interview_by_keyboard_is_one_page_load_per_question(app, setup, clock, size):
    require_chromium()
    tag = str(size["width"])
    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport=size, locale="zh-CN")
        traffic, keys = Traffic(page), Keys(page)
        case_id = start_the_day(page, base, setup.caller.username, keys)
        keys.count, mark = 0, traffic.mark()
        keys.press("k")  # 开始问卷 (a letter key is taken either case)

        page.wait_for_url(re.compile(r"/q/identity$"))
        # not the last question: it neither finishes nor shows the closing words
        assert page.locator("#save").inner_text().startswith("保存，下一题")
        assert page.locator("input[name=finish]").count() == 0 and page.locator(".closing").count() == 0
        answer(page, keys, "identity", "1")  # 本人接听
        answer(page, keys, "aware", "1")
        answer(page, keys, "knows_doctor", "1")
        page.wait_for_url(re.compile(r"/q/services$"))
        assert page.locator("input[name=finish]").count() == 0
        for key in ("1", "2", "5", "5"):  # toggles: 随访, 健康体检, 健康咨询 on and off again
            keys.press(key)
        checked = page.locator(".options input:checked")
        assert [checked.nth(i).get_attribute("value") for i in range(checked.count())] == ["follow_up", "checkup"]
        shot(page, f"question-multi-{tag}")
        answer(page, keys, "services")
        page.wait_for_url(re.compile(r"/q/service_count$"))
        wait_focus(page, "value")
        shot(page, f"question-number-{tag}")
        answer(page, keys, "service_count", "4")
        answer(page, keys, "effect", "2")  # 有帮助
        page.wait_for_url(re.compile(r"/q/satisfaction$"))
        shot(page, f"question-{tag}")
        answer(page, keys, "satisfaction", "1")  # 非常满意
        answer(page, keys, "renew", "1")  # 愿意

        # the text question: Enter is a new line and sends nothing; Ctrl+Enter saves
        page.wait_for_url(re.compile(r"/q/suggestion$"))
        wait_focus(page, "value")
        before = traffic.mark()
        keys.type("希望医生多来村里随访。")
        keys.press("Enter")
        keys.type("量血压不用排队。")
        assert page.locator("textarea[name=value]").input_value() == "希望医生多来村里随访。\n量血压不用排队。"
        assert traffic.since(before) == ([], []) and page.url.endswith("/q/suggestion")
        shot(page, f"question-text-{tag}")
        keys.press("Control+Enter")

        # the last question saves and finishes in one POST: its answer is the next case's panel
        page.wait_for_url(re.compile(r"/q/wants_contact$"))
        assert page.locator("form#answer input[name=finish]").input_value() == "1"
        assert page.locator("#save").inner_text().startswith("保存并完成访问") and page.locator(".closing").count() == 1
        shot(page, f"question-last-{tag}")
        keys.press("2")  # 不需要
        keys.press("Enter")
        arrived(page, "#recorded")
        requests, loads = traffic.since(mark)
        questions = 10
        print(f"\n[{tag}] complete interview of {questions} questions: keys={keys.count} "
              f"page loads={len(loads)} requests={len(requests)}")
        assert len(loads) == questions + 1, loads  # K, then one per question, the last being the panel
        # each page answers one POST (the last one with the next panel, not a redirect)
        assert [m for m, _ in requests].count("POST") == questions + 1
        assert len(requests) == 2 * questions + 1, requests
        assert page.locator("#recorded").inner_text().startswith(f"已记录：{case_name(case_id)} · 完成访问")
        assert panel_case(page) != case_id and page.url == f"{base}/calls/case/{panel_case(page)}"
        shot(page, f"after-complete-{tag}")

    def stored():
        response = db.session.scalar(select(Response).where(Response.case_id == case_id))
        case = db.session.get(Case, case_id)
        return (response.status, json.loads(response.answers), response.satisfaction, response.service_count,
                response.services, case.status, case.outcome)

    status, answers, satisfaction, count, services, case_status, outcome = db_read(stored)
    assert (status, case_status, outcome) == ("complete", "done", "complete")
    assert satisfaction == 5 and count == 4 and services == "follow_up,checkup"
    # a form sends a textarea's new line as CRLF; the two lines are kept
    assert answers["suggestion"].splitlines() == ["希望医生多来村里随访。", "量血压不用排队。"]
    assert answers["wants_contact"] == "no" and len(answers) == 10


# ---------------------------------------------------------------------------
# 3. interrupted, and resumed at the agreed time
# ---------------------------------------------------------------------------


def test_an_interrupted_interview_resumes_at_question_4(app, setup, clock):
    require_chromium()
    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport=PHONE, locale="zh-CN")
        keys = Keys(page)
        case_id = start_the_day(page, base, setup.caller.username, keys)
        keys.press("K")
        answer(page, keys, "identity", "1")
        answer(page, keys, "aware", "1")
        answer(page, keys, "knows_doctor", "2")
        page.wait_for_url(re.compile(r"/q/services$"))

        # to 通话中断 by Tab, open it with Enter, the date and time by keys
        for _ in range(30):
            if page.evaluate("document.activeElement.tagName") == "SUMMARY":
                break
            keys.press("Tab")
        assert page.evaluate("document.activeElement.textContent.trim()") == "通话中断，约定续访"
        keys.press("Enter")
        assert page.locator("details#interrupt").get_attribute("open") is not None
        digits = date_digits(page, "2026-11-23")
        keys.press("Tab")
        assert focused(page) == "resume_date"
        keys.type(digits)
        assert page.locator("#resume_date").input_value() == "2026-11-23"
        # no time yet: refused, the form is shown again open, with what was typed
        tab_to(page, keys, "note")
        keys.type("信号不好，下午再打")
        keys.press("Control+Enter")
        arrived(page, "#interrupt-error")
        assert page.locator("details#interrupt").get_attribute("open") is not None
        assert page.locator("#resume_date").input_value() == "2026-11-23"
        assert page.locator("#interrupt-form textarea").input_value() == "信号不好，下午再打"
        assert page.locator(".question h1").inner_text().startswith("4.")
        fits_the_width(page)
        shot(page, "interrupt-error-360")
        wait_focus(page, "resume_date")  # autofocus on the refused form
        tab_to(page, keys, "resume_time")
        keys.type(time_keys(page, "1500"))
        keys.press("Control+Enter")
        arrived(page, "#recorded")
        assert "通话中断，约定续访（第 1 次），约定 11月23日 15:00 回访" in page.locator("#recorded").inner_text()
        held = panel_case(page)
        assert held != case_id

        # put the next case back; at 15:00 the interrupted case is due and comes first
        page.locator("#release").focus()
        keys.press("Enter")
        page.wait_for_url(re.compile(r"/calls/$"))
        clock["now"] = at(23, 15, 0)
        page.reload()
        arrived(page, "#next")
        due = page.locator("#callback-list li.due")
        assert due.count() == 1 and due.get_attribute("data-case") == str(case_id)
        shot(page, "home-callback-due-360")
        keys.press("Enter")
        arrived(page, "form#panel")
        assert panel_case(page) == case_id
        assert "上次通话中断，已答 3 题" in page.locator("#resume").inner_text()
        assert "继续问卷" in page.locator("#start").inner_text()
        shot(page, "resume-360")
        keys.press("K")
        page.wait_for_url(re.compile(r"/q/services$"))
        assert page.locator(".question h1").inner_text().startswith("4. ")

    response = db_read(lambda: db.session.scalar(select(Response).where(Response.case_id == case_id)))
    assert response.status == "in_progress" and set(json.loads(response.answers)) == {"identity", "aware", "knows_doctor"}
    assert attempts_of(case_id) == [(1, "interrupted"), (2, None)]
    assert db_read(lambda: db.session.scalar(select(func.count()).select_from(Response))) == 1
