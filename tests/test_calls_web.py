"""The caller's pages over HTTP: scope (another county's URLs are 404), roles, CSRF, the
whole call from "下一个" to a submitted questionnaire, the case list, assignment, corrections."""
from __future__ import annotations

import re

from sqlalchemy import func, select

from app.extensions import db
from app.models import Attempt, AuditLog, Case, Response
from tests.calls_support import at, case_by, drawn_round, committed
from tests.calls_support import clock, post, setup, sign_in, token  # noqa: F401  (fixtures)


def test_another_countys_cases_answers_and_rounds_are_404(app, client, login, setup, make_county, make_team,
                                                          make_user):
    other_county = make_county("华容县", "430623")
    other = drawn_round(other_county, make_team, make_user)
    case = db.session.scalar(select(Case).where(Case.round_id == setup.round.id, Case.status == "queued"))
    # a response in the first county
    from app.calls.interview import start_interview
    from app.calls.queue import claim_case
    from tests.calls_support import CALLS
    committed(claim_case, case.id, setup.caller, at(23, 9, 30), CALLS)
    response = committed(start_interview, case.id, setup.caller, now=at(23, 9, 31), settings=CALLS)
    rid, cid, round_id = response.id, case.id, setup.round.id

    for intruder in (other.caller, other.supervisor):
        with app.app_context():
            client = sign_in(app, intruder.username)
            # a URL of a role the intruder does not have is 403 whatever the id; all others 404
            staff_only = {f"/calls/response/{rid}/edit/identity", f"/calls/assign/{round_id}"}

            def expected(url):
                return 403 if intruder.role == "caller" and url in staff_only else 404

            for url in (f"/calls/case/{cid}", f"/calls/response/{rid}", f"/calls/response/{rid}/view",
                        f"/calls/response/{rid}/q/identity", f"/calls/response/{rid}/review",
                        f"/calls/response/{rid}/edit/identity", f"/calls/cases?round={round_id}"):
                assert client.get(url).status_code == expected(url), (intruder.role, url)
            for url in (f"/calls/case/{cid}/claim", f"/calls/case/{cid}/attempt", f"/calls/case/{cid}/start",
                        f"/calls/case/{cid}/release", f"/calls/case/{cid}/renew", f"/calls/response/{rid}/finish",
                        f"/calls/response/{rid}/q/identity", f"/calls/assign/{round_id}"):
                reply = post(client, url, {"outcome": "no_answer", "value": "self", "case": str(cid)})
                assert reply.status_code == expected(url), (intruder.role, url, reply.status_code)
            board = client.get("/calls/board")
            if intruder.role == "supervisor":
                text = board.get_data(as_text=True)
                assert "华容县" in text and "岳阳县" not in text
            else:
                assert board.status_code == 403
    db.session.rollback()
    assert case_by(cid).leased_by_id == setup.caller.id  # nothing changed
    assert db.session.scalar(select(func.count()).select_from(Attempt)) == 1


def test_roles_and_csrf(client, login, setup, make_user):
    login(setup.caller.username)
    assert client.get("/calls/board").status_code == 403
    assert client.post("/calls/next", data={}).status_code == 400  # no CSRF token
    assert client.get("/calls/next").status_code == 405  # no state change on GET
    make_user("cityadmin", "admin")
    with client.application.app_context():
        admin = sign_in(client.application, "cityadmin")
        assert admin.get("/calls/").headers["Location"].endswith("/calls/board")
        assert "岳阳县" in admin.get("/calls/board").get_data(as_text=True)


def test_a_callers_day_over_http(app, client, login, setup, clock):
    login(setup.caller.username)
    home = client.get("/calls/").get_data(as_text=True)
    assert "下一个" in home and "现在可拨" in home
    first = post(client, "/calls/next")
    assert re.search(r"/calls/case/\d+$", first.headers["Location"])
    case_id = int(first.headers["Location"].rsplit("/", 1)[1])
    case = case_by(case_id)
    screen = client.get(f"/calls/case/{case_id}").get_data(as_text=True)
    assert f'href="tel:{case.phone}"' in screen and case.name in screen
    assert "岳阳县卫生健康局" in screen  # the opening script is filled in
    # the dialling panel: the number, the non-contact outcomes, the connected ones, then 开始问卷
    assert screen.index('id="phone"') < screen.index("未接通") < screen.index("无人接听") < screen.index("接通了") \
        < screen.index("号码错误/非本人") < screen.index('name="note"') < screen.index('id="start"')
    # record-and-next: one POST answers with the next case's panel and the confirmation
    done = post(client, f"/calls/case/{case_id}/attempt", {"outcome": "no_answer", "number": "1"})
    assert done.status_code == 200
    page = done.get_data(as_text=True)
    assert f"已记录：{case.name} · 无人接听（第 1 次）" in page
    second_id = int(re.search(r'id="panel"\s+data-case="(\d+)"', page).group(1))
    assert second_id != case_id
    # the same form again (a double click) records nothing more
    again = post(client, f"/calls/case/{case_id}/attempt", {"outcome": "no_answer", "number": "1"})
    assert again.status_code == 200 and "重复提交，未重复记录" in again.get_data(as_text=True)
    assert int(re.search(r'id="panel"\s+data-case="(\d+)"', again.get_data(as_text=True)).group(1)) == second_id
    assert db.session.scalar(select(func.count()).select_from(Attempt)) == 1

    started = post(client, f"/calls/case/{second_id}/start", {"number": "1"})
    first_q = started.headers["Location"]
    assert started.status_code == 303 and first_q.endswith("/q/identity")
    # a forged option is refused with a Chinese message, nothing stored
    bad = post(client, first_q, {"value": "robot"})
    assert bad.status_code == 400 and "请" in bad.get_data(as_text=True)
    answers = [("identity", {"value": "self"}), ("aware", {"value": "yes"}), ("knows_doctor", {"value": "yes"}),
               ("services", {"value": ["follow_up", "checkup"]}), ("service_count", {"value": "0"})]
    url = first_q
    for code, data in answers:
        assert url.endswith(f"/q/{code}"), (url, code)
        reply = post(client, url, data)
        if code == "service_count":
            assert reply.status_code == 400  # services were chosen: the count cannot be 0
            reply = post(client, url, {"value": "3"})
        url = reply.headers["Location"]
    for code, value in (("effect", "helpful"), ("satisfaction", "satisfied"), ("renew", "yes"),
                        ("suggestion", "上门次数再多些"), ("wants_contact", "no")):
        assert url.endswith(f"/q/{code}"), (url, code)
        url = post(client, url, {"value": value}).headers["Location"]
    assert url.endswith("/review")
    review = client.get(url).get_data(as_text=True)
    assert "上门次数再多些" in review and "提交问卷" in review
    response_id = int(url.split("/")[-2])
    finished = post(client, f"/calls/response/{response_id}/finish")
    assert finished.status_code == 200 and "已记录：" in finished.get_data(as_text=True)
    third = re.search(r'id="panel"\s+data-case="(\d+)"', finished.get_data(as_text=True)).group(1)
    repeated = post(client, f"/calls/response/{response_id}/finish")  # a double click: nothing more recorded
    assert re.search(r'id="panel"\s+data-case="(\d+)"', repeated.get_data(as_text=True)).group(1) == third
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Response)) == 1
    response = db.session.get(Response, response_id)
    assert response.status == "complete" and response.service_count == 3 and response.satisfaction == 4
    assert case_by(second_id).outcome == "complete"
    home = client.get("/calls/").get_data(as_text=True)
    assert re.search(r"完成访问</dt><dd>1<", home)


def test_case_list_masks_phones_and_supervisor_assigns(client, login, setup):
    login(setup.supervisor.username)
    page = client.get("/calls/cases").get_data(as_text=True)
    case = db.session.scalar(select(Case).where(Case.round_id == setup.round.id, Case.kind == "primary"))
    assert case.name in page and case.phone not in page
    found = client.get(f"/calls/cases?q={case.phone[-4:]}").get_data(as_text=True)
    assert case.name in found
    ids = [str(c.id) for c in db.session.scalars(select(Case).where(Case.round_id == setup.round.id,
                                                                       Case.status == "queued"))]
    data = {"caller": str(setup.other.id), "case": ids, "csrf_token": token(client, "/calls/cases")}
    assert client.post(f"/calls/assign/{setup.round.id}", data=data).status_code == 302
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Case).where(Case.assigned_to_id == setup.other.id)) == len(ids)
    assert db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "assign_cases")) == 1
    # everything is now the other caller's: the first caller gets nothing
    with client.application.app_context():
        caller = sign_in(client.application, setup.caller.username)
        assert post(caller, "/calls/next").headers["Location"].endswith("/calls/")


def test_supervisor_corrects_an_answer_and_callers_cannot(app, client, login, setup, clock):
    from app.calls.interview import context_for, finish_interview, save_answer, start_interview
    from app.calls.queue import claim_case
    from tests.calls_support import CALLS
    case = db.session.scalar(select(Case).where(Case.round_id == setup.round.id, Case.status == "queued"))
    committed(claim_case, case.id, setup.caller, at(23, 9, 30), CALLS)
    r = committed(start_interview, case.id, setup.caller, now=at(23, 9, 31), settings=CALLS)
    q = app.extensions["questionnaires"]["v1"]
    for code, value in (("identity", "self"), ("aware", "yes"), ("knows_doctor", "yes"), ("services", ["none"]),
                        ("satisfaction", "satisfied"), ("renew", "yes"), ("suggestion", ""), ("wants_contact", "no")):
        committed(save_answer, r.id, setup.caller, {code: value}, questionnaire=q, now=at(23, 9, 32), settings=CALLS)
    ctx = context_for(case, app.extensions["vocabulary"])
    committed(finish_interview, r.id, setup.caller, questionnaire=q, context=ctx, now=at(23, 9, 33), settings=CALLS)

    with app.app_context():
        caller = sign_in(app, setup.caller.username)
        assert caller.get(f"/calls/response/{r.id}/edit/satisfaction").status_code == 403
    db.session.rollback()  # the requests below share this test's session: no stale snapshot
    login(setup.supervisor.username)
    view = client.get(f"/calls/response/{r.id}/view").get_data(as_text=True)
    assert "更正" in view and case.phone not in view
    url = f"/calls/response/{r.id}/edit/satisfaction"
    missing = client.post(url, data={"value": "dissatisfied", "reason": "", "csrf_token": token(client, url)})
    assert "请填写修改原因" in missing.get_data(as_text=True)
    ok = client.post(url, data={"value": "dissatisfied", "reason": "复核录音", "csrf_token": token(client, url)})
    assert ok.status_code == 302
    view = client.get(f"/calls/response/{r.id}/view").get_data(as_text=True)
    assert "复核录音" in view and "不满意" in view
    db.session.rollback()
    assert db.session.get(Response, r.id).satisfaction == 2
