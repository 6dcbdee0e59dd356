"""The caller's pages on a small screen, in a real browser:

* the first screen of the dialling panel shows the phone number and the five non-contact
  outcomes without scrolling, at 1366×768, 390×844 and 360×740, with and without the
  confirmation of the outcome just recorded above it;
* at 360×740 no caller page is wider than the screen: home with callbacks listed, the panel
  with a history of attempts with long notes, a question of each widget kind, the
  interruption form shown again with its error, the review page, the case list and a
  finished response.

Screenshots go to tests/output/calls-*.png (look at them)."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Response
from tests.browser import chromium, live_server, require_chromium
from tests.calls_support import at, drawn_round
from tests.helpers import OUTPUT_DIR
from tests.test_browser_calls import (PHONE, Keys, arrived, answer, attempts_of, date_digits, db_read, fits_the_width,
                                      panel_case, shot, start_the_day, tab_to, time_keys)
from tests.calls_support import clock  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

FIRST_SCREENS = [{"width": 1366, "height": 768}, {"width": 390, "height": 844}, {"width": 360, "height": 740}]
LONG_NOTE = ("居民的女儿接的电话，说老人这几天在县人民医院住院做白内障手术，出院后要在岳阳市区的儿子家住一段时间，"
             "请下周二上午九点以后再打她本人的手机，不要在中午打扰老人休息。")


@pytest.fixture
def setup(county, make_team, make_user, clock):
    made = drawn_round(county, make_team, make_user,
                       institutions=("新墙镇中心卫生院（岳阳县第二人民医院）", "筻口镇卫生院"))
    db.session.rollback()
    return made


def in_first_screen(page) -> None:
    """The phone number and the five non-contact outcomes inside the window, not scrolled."""
    boxes = page.evaluate(
        """() => {
          window.scrollTo(0, 0);
          const els = [document.getElementById('phone'), ...document.querySelectorAll('#not-connected button.choice')];
          return {height: window.innerHeight, width: window.innerWidth, scrolled: window.scrollY, boxes: els.map(e => {
            const r = e.getBoundingClientRect();
            return {text: e.textContent.trim(), top: r.top, bottom: r.bottom, left: r.left, right: r.right};
          })};
        }"""
    )
    assert boxes["scrolled"] == 0 and len(boxes["boxes"]) == 6, boxes
    for box in boxes["boxes"]:
        assert box["top"] >= 0 and box["bottom"] <= boxes["height"], (box, boxes["height"])
        assert box["left"] >= 0 and box["right"] <= boxes["width"], (box, boxes["width"])


def test_the_number_and_the_non_contact_outcomes_are_on_the_first_screen(app, setup, clock):
    require_chromium()
    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport=FIRST_SCREENS[0], locale="zh-CN")
        keys = Keys(page)
        OUTPUT_DIR.mkdir(exist_ok=True)
        start_the_day(page, base, setup.caller.username, keys)
        for size in FIRST_SCREENS:
            tag = f"{size['width']}x{size['height']}"
            page.set_viewport_size(size)
            page.reload()
            arrived(page, "form#panel")
            in_first_screen(page)
            page.screenshot(path=str(OUTPUT_DIR / f"calls-first-screen-{tag}.png"))  # the window only
            keys.press("1")  # and with the confirmation of the case just recorded above it
            arrived(page, "#recorded")
            in_first_screen(page)
            page.screenshot(path=str(OUTPUT_DIR / f"calls-first-screen-recorded-{tag}.png"))


def checked(page, name: str) -> None:
    """No sideways overflow on this page, and a full-page screenshot of it."""
    fits_the_width(page)
    shot(page, f"{name}-360")


def test_no_caller_page_is_wider_than_a_small_phone(app, setup, clock):
    require_chromium()
    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport=PHONE, locale="zh-CN")
        keys = Keys(page)
        a = start_the_day(page, base, setup.caller.username, keys)

        # A: nobody answers
        keys.press("1")
        arrived(page, "#recorded")
        checked(page, "recorded")
        b = panel_case(page)

        # B: a complete interview; a question of each widget kind, the review page on the way
        keys.press("K")
        page.wait_for_url(re.compile(r"/q/identity$"))
        checked(page, "question-single")
        response_b = int(re.search(r"/response/(\d+)/", page.url).group(1))
        answer(page, keys, "identity", "1")
        answer(page, keys, "aware", "1")
        answer(page, keys, "knows_doctor", "1")
        page.wait_for_url(re.compile(r"/q/services$"))
        keys.press("1")
        checked(page, "question-multi")
        answer(page, keys, "services")
        page.wait_for_url(re.compile(r"/q/service_count$"))
        checked(page, "question-integer")
        answer(page, keys, "service_count", "3")
        answer(page, keys, "effect", "1")
        answer(page, keys, "satisfaction", "2")
        answer(page, keys, "renew", "1")
        page.wait_for_url(re.compile(r"/q/suggestion$"))
        keys.type("希望签约医生每个月能来村卫生室坐诊一次，量血压、测血糖不用跑到镇上，"
                  "另外希望家庭医生的电话能一直打得通。Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        checked(page, "question-text")
        keys.press("Control+Enter")
        page.wait_for_url(re.compile(r"/q/wants_contact$"))
        page.goto(f"{base}/calls/response/{response_b}/review")
        page.wait_for_selector("table.answers")
        checked(page, "review")
        page.goto(f"{base}/calls/response/{response_b}/q/wants_contact")
        answer(page, keys, "wants_contact", "1")
        arrived(page, "#recorded")
        c = panel_case(page)
        page.goto(f"{base}/calls/response/{response_b}/view")
        page.wait_for_selector("table.answers")
        checked(page, "response")

        # C: interrupted after three questions; the form refused (no time), then accepted
        page.goto(f"{base}/calls/case/{c}")
        arrived(page, "form#panel")
        date_digits(page, "2026-11-24")
        keys.press("K")
        answer(page, keys, "identity", "1")
        answer(page, keys, "aware", "1")
        answer(page, keys, "knows_doctor", "2")
        page.wait_for_url(re.compile(r"/q/services$"))
        page.locator("details#interrupt summary").click()
        page.locator("#resume_date").focus()
        keys.type(date_digits(page, "2026-11-24"))
        page.locator("#interrupt-form textarea").fill(LONG_NOTE)
        page.locator("#interrupted").click()
        arrived(page, "#interrupt-error")
        checked(page, "interrupt-error")
        tab_to(page, keys, "resume_time")
        keys.type(time_keys(page, "1000"))
        with page.expect_navigation():
            keys.press("Control+Enter")
        arrived(page, "#recorded")
        d = panel_case(page)

        # D: a callback at 11:40 with a long note; then the case handed out again: 本人不在
        page.fill("#note", LONG_NOTE)
        page.fill("#callback_date", "2026-11-23")
        page.fill("#callback_time", "11:40")
        with page.expect_navigation():
            page.locator("button[data-key='7']").click()
        assert attempts_of(d) == [(1, "callback")]
        page.locator("#release").click()
        page.wait_for_url(re.compile(r"/calls/$"))
        clock["now"] = at(23, 11, 40)
        page.reload()
        page.locator("#next").click()
        arrived(page, "form#panel")
        assert panel_case(page) == d
        page.fill("#note", LONG_NOTE + "（第二次：儿子说她还在医院）")
        with page.expect_navigation():
            page.locator("button[data-key='6']").click()
        # F: a callback tomorrow afternoon, so that tomorrow's list has two
        page.fill("#callback_date", "2026-11-24")
        page.fill("#callback_time", "15:00")
        with page.expect_navigation():
            page.locator("button[data-key='7']").click()
        assert "约定 11月24日 15:00 回访" in page.locator("#recorded").inner_text()
        page.locator("#release").click()
        page.wait_for_url(re.compile(r"/calls/$"))

        # the next morning: home lists the day's callbacks; D's panel with its two attempts
        clock["now"] = at(24, 9, 0)
        page.reload()
        page.wait_for_selector("#callback-list li")
        assert page.locator("#callback-list li").count() == 2
        checked(page, "home")
        page.goto(f"{base}/calls/case/{d}")
        page.locator("button", has_text="领取并拨打").click()
        arrived(page, "form#panel")
        assert page.locator("ol.history-list li").count() == 2
        assert LONG_NOTE in page.locator("ol.history-list").inner_text()
        in_first_screen(page)
        checked(page, "panel-history")
        page.goto(f"{base}/calls/cases")
        page.wait_for_selector("#assign")
        checked(page, "cases")

    assert attempts_of(a) == [(1, "no_answer")] and attempts_of(b) == [(1, "complete")]
    assert attempts_of(c) == [(1, "interrupted")]
    assert attempts_of(d) == [(1, "callback"), (2, "not_available")]
    status = db_read(lambda: db.session.scalar(select(Response.status).where(Response.id == response_b)))
    assert status == "complete"
