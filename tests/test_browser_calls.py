"""The caller's day in a real browser: sign in, take the next case, record 无人接听, take
another, answer the questionnaire (mostly from the keyboard: digit keys choose, Enter saves),
submit it; then the supervisor's board shows the completion. Also the case screen and a
question at a phone's size. Screenshots go to tests/output/calls-*.png (look at them)."""
import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Attempt, Case, Response
from tests.browser import chromium, live_server, require_chromium, sign_in
from tests.calls_support import drawn_round, later
from tests.draws_support import NOW
from tests.helpers import OUTPUT_DIR

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def _shot(page, name: str) -> None:
    page.screenshot(path=str(OUTPUT_DIR / f"calls-{name}.png"), full_page=True)


def _stat(page, label: str) -> str:
    """The number under a label of the home page's counts."""
    return page.locator(".stats div", has=page.locator("dt", has_text=label)).locator("dd").inner_text().strip()


def _fits_the_width(page) -> None:
    """Nothing wider than the viewport (no sideways scrolling, nothing cut off at the right)."""
    overflow = page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          const wide = [...document.querySelectorAll('main *, header *')]
            .filter(e => e.offsetParent !== null && e.getBoundingClientRect().right > width + 1)
            .map(e => e.tagName + '.' + e.className + ': ' + (e.textContent || '').trim().slice(0, 30));
          return {scroll: document.documentElement.scrollWidth, width, wide};
        }"""
    )
    assert overflow["scroll"] <= overflow["width"], overflow
    assert not overflow["wide"], overflow


def _tap_targets(page, selector: str, minimum: float = 44) -> None:
    """Every element matching ``selector`` is at least ``minimum`` CSS pixels high and fully on screen."""
    boxes = page.locator(selector)
    assert boxes.count() > 0, selector
    width = page.viewport_size["width"]
    for i in range(boxes.count()):
        box = boxes.nth(i).bounding_box()
        text = boxes.nth(i).inner_text()
        assert box["height"] >= minimum, (selector, text, box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (selector, text, box)


def _answer_with_keys(page, *keys: str) -> None:
    """Press digit keys to choose options, then Enter to save: the keyboard path."""
    url = page.url
    for key in keys:
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda u: u != url)


def _on_question(page, code: str, title: str) -> None:
    page.wait_for_url(re.compile(rf"/q/{code}$"))
    assert title in page.locator("h1").inner_text()


def test_caller_records_no_answer_then_completes_an_interview(app, county, make_team, make_user, monkeypatch):
    require_chromium()
    OUTPUT_DIR.mkdir(exist_ok=True)
    clock = {"now": NOW}
    monkeypatch.setattr("app.calls.routes.clock_now", lambda: clock["now"])
    monkeypatch.setattr("app.reports.routes.clock_now", lambda: clock["now"])
    setup = drawn_round(county, make_team, make_user)
    caller, supervisor = setup.caller.username, setup.supervisor.username
    primaries = db.session.scalar(
        select(func.count()).select_from(Case).where(Case.round_id == setup.round.id, Case.kind == "primary")
    )
    db.session.rollback()

    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport=DESKTOP, locale="zh-CN")
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        # the caller signs in and lands on the queue
        sign_in(page, base, caller)
        if "/calls/" not in page.url:
            page.click("nav >> text=拨打任务")
        page.wait_for_selector("#next")
        assert _stat(page, "现在可拨") == str(primaries)
        assert _stat(page, "从未拨打") == str(primaries)
        assert _stat(page, "完成访问") == "0"
        assert page.locator("#next").inner_text().strip() == "下一个"
        _shot(page, "01-home")

        # the first case: nobody answers
        page.click("#next")
        page.wait_for_url(re.compile(r"/calls/case/\d+$"))
        first_id = int(page.url.rsplit("/", 1)[1])
        first = db.session.get(Case, first_id)
        first_name, first_phone = first.name, first.phone
        db.session.rollback()
        assert first_name in page.locator("h1").inner_text()
        phone = page.locator("#phone")
        assert phone.get_attribute("href") == f"tel:{first_phone}"
        assert re.sub(r"\s", "", phone.inner_text()) == first_phone
        assert float(phone.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) >= 30
        script = page.locator(".script .reading").inner_text()
        assert f"请问是{first_name}吗" in script and "{name}" not in script
        _shot(page, "02-case")

        clock["now"] = later(NOW, minutes=1)
        page.locator("#not-connected").get_by_role("button", name="无人接听").click()
        page.wait_for_url(re.compile(r"/calls/$"))
        assert "已记录：无人接听。" in page.locator(".flash-success").inner_text()
        assert _stat(page, "等待再拨") == "1"
        _shot(page, "03-home-after-no-answer")

        # another case: the resident answers
        clock["now"] = later(NOW, minutes=2)
        page.click("#next")
        page.wait_for_url(re.compile(r"/calls/case/\d+$"))
        second_id = int(page.url.rsplit("/", 1)[1])
        assert second_id != first_id
        second = db.session.get(Case, second_id)
        second_name, second_phone = second.name, second.phone
        db.session.rollback()
        assert second_name in page.locator("h1").inner_text()
        assert page.locator("#phone").get_attribute("href") == f"tel:{second_phone}"
        assert f"请问是{second_name}吗" in page.locator(".script .reading").inner_text()
        _shot(page, "04-case-second")

        # the case screen at a phone's size: big buttons, nothing cut off
        page.set_viewport_size(PHONE)
        _fits_the_width(page)
        _tap_targets(page, "#start")
        _tap_targets(page, "button.choice")
        _tap_targets(page, "#phone")
        _shot(page, "05-case-phone")
        page.set_viewport_size(DESKTOP)

        page.locator("#connected").get_by_role("button", name=re.compile("开始问卷")).click()

        _on_question(page, "identity", "接听人身份")
        assert second_name in page.locator(".reading").inner_text()
        options = page.locator("label.option")
        assert options.count() == 3  # the child-proxy option is not offered for an adult
        # the relation field only for a family member answering
        relation = page.locator("label.detail")
        assert relation.is_hidden()
        page.keyboard.press("2")  # 家属代答
        assert relation.is_visible()
        _shot(page, "06-question-identity-proxy")
        page.keyboard.press("1")  # no: it is the resident
        assert relation.is_hidden()
        _shot(page, "06-question-identity")
        _answer_with_keys(page)  # 本人接听

        _on_question(page, "aware", "签约知晓")
        _answer_with_keys(page, "1")  # 知道，已签约

        _on_question(page, "knows_doctor", "知晓签约医生")
        note = page.locator(".question .note").inner_text()
        assert "名册中的签约医生：张伟（新墙镇卫生院第" in note and "{" not in note  # for the caller
        # back one question: the saved answer is chosen and has the focus, Enter keeps it
        page.click("text=上一题")
        _on_question(page, "aware", "签约知晓")
        assert page.evaluate("document.activeElement.checked && document.activeElement.value") == "yes"
        _answer_with_keys(page)
        _on_question(page, "knows_doctor", "知晓签约医生")
        _answer_with_keys(page, "1")  # 知道姓名或电话

        _on_question(page, "services", "近3个月接受的服务")
        page.keyboard.press("1")  # 随访
        page.keyboard.press("2")  # 健康体检
        page.keyboard.press("5")  # 健康咨询
        page.keyboard.press("5")  # … and off again
        page.keyboard.press("8")  # 没有接受过服务 clears the others
        checked = page.locator(".options input:checked")
        assert [checked.nth(i).get_attribute("value") for i in range(checked.count())] == ["none"]
        page.keyboard.press("1")  # … and a service clears 没有接受过服务
        page.keyboard.press("2")
        assert [checked.nth(i).get_attribute("value") for i in range(checked.count())] == ["follow_up", "checkup"]
        _shot(page, "07-question-services")
        # the same question at a phone's size
        page.set_viewport_size(PHONE)
        _fits_the_width(page)
        _tap_targets(page, "label.option")
        _tap_targets(page, "#save")
        _shot(page, "08-question-phone")
        page.set_viewport_size(DESKTOP)
        _answer_with_keys(page)

        _on_question(page, "service_count", "近3个月服务次数")
        count = page.locator("input[name=value]")
        count.fill("0")  # services were received: zero is refused, in Chinese
        page.keyboard.press("Enter")
        page.wait_for_selector(".flash-error")
        assert "已选择接受过的服务，次数不能为0" in page.locator(".flash-error").inner_text()
        _shot(page, "09-question-count-error")
        page.locator("input[name=value]").fill("4")
        _answer_with_keys(page)

        _on_question(page, "effect", "服务效果")
        _answer_with_keys(page, "2")  # 有帮助

        _on_question(page, "satisfaction", "总体满意度")
        page.locator("label.option", has_text="非常满意").click()  # the mouse works too
        page.click("#save")

        _on_question(page, "renew", "续约意愿")
        _answer_with_keys(page, "1")  # 愿意

        _on_question(page, "suggestion", "意见建议")
        page.locator("textarea[name=value]").fill("希望医生多来村里随访。")
        page.click("#save")

        _on_question(page, "wants_contact", "是否需要机构联系")
        _answer_with_keys(page, "2")  # 不需要

        page.wait_for_url(re.compile(r"/review$"))
        review = page.locator("table.kv").inner_text()
        for shown in ("本人接听", "随访（面对面、电话或微信）", "健康体检", "4", "有帮助", "非常满意", "愿意",
                      "希望医生多来村里随访。", "不需要"):
            assert shown in review, shown
        assert "健康咨询" not in review
        _shot(page, "10-review")
        page.set_viewport_size(PHONE)
        _fits_the_width(page)
        _tap_targets(page, "#submit")
        _shot(page, "10-review-phone")
        page.set_viewport_size(DESKTOP)
        clock["now"] = later(NOW, minutes=6)
        page.click("text=提交问卷（完成访问）")
        page.wait_for_url(re.compile(r"/calls/$"))
        assert "已记录：完成访问。" in page.locator(".flash-success").inner_text()
        assert _stat(page, "完成访问") == "1"
        assert page.locator("#next").count() == 1  # holds nothing any more
        _shot(page, "11-home-after-complete")
        assert dialogs == []

        # the supervisor sees it on the board
        page.locator(".who").get_by_role("button", name="退出").click()
        page.wait_for_selector("input[name=username]")
        sign_in(page, base, supervisor)
        page.click("nav >> text=调查进度")
        page.wait_for_selector("table.board")
        row = page.locator("table.board tbody tr", has=page.locator("td", has_text="新墙镇卫生院"))
        cells = [c.strip() for c in row.locator("td").all_inner_texts()]
        header = [c.strip() for c in page.locator("table.board thead th").all_inner_texts()]
        values = dict(zip(header, cells))
        assert values["已完成"] == "1", values
        assert values["拨打次数"] == "2", values
        assert values["目标"] == str(primaries), values
        _shot(page, "12-board")

    db.session.rollback()
    db.session.expire_all()
    attempts = db.session.scalars(select(Attempt).order_by(Attempt.id)).all()
    assert [(a.case_id, a.outcome, a.connected) for a in attempts] == [
        (first_id, "no_answer", False),
        (second_id, "complete", True),
    ]
    responses = db.session.scalars(select(Response)).all()
    assert [(r.case_id, r.status) for r in responses] == [(second_id, "complete")]
    done = responses[0]
    assert done.satisfaction == 5 and done.service_count == 4 and done.services == "follow_up,checkup"
    first, second = db.session.get(Case, first_id), db.session.get(Case, second_id)
    assert (first.status, first.outcome, first.attempt_count, first.leased_by_id) == ("queued", "no_answer", 1, None)
    assert (second.status, second.outcome, second.leased_by_id) == ("done", "complete", None)
