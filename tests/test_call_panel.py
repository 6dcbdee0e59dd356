"""The dialling panel over HTTP: record-and-next (one POST to the next case's panel, two
callers racing for it), undo, resumable interviews (通话中断，约定续访), the gap, day, hours and
callback rules on every claim path, and inputs kept when the server refuses them."""
from __future__ import annotations

import json
import re
import threading
from datetime import timedelta

from sqlalchemy import func, select

from app.core.clock import utc_naive
from app.extensions import db
from app.models import Attempt, AuditLog, Case, Response
from app.scheduler.month_end import close_round
from tests.calls_support import at, case_by, closing_args, committed
from tests.calls_support import clock, post, setup, sign_in, token  # noqa: F401  (fixtures)

PANEL = re.compile(r'id="panel"\s+data-case="(\d+)"')
NUMBER = re.compile(r'name="number" value="(\d+)"')


def panel_case(reply) -> int:
    match = PANEL.search(reply.get_data(as_text=True))
    assert match, reply.get_data(as_text=True)[:2000]
    return int(match.group(1))


def first_case(client) -> int:
    reply = post(client, "/calls/next")
    assert reply.status_code == 303, reply.status_code
    return int(reply.headers["Location"].rsplit("/", 1)[1])


def attempts(case_id: int) -> list[Attempt]:
    db.session.expire_all()
    return db.session.scalars(select(Attempt).where(Attempt.case_id == case_id).order_by(Attempt.number)).all()


# ---------------------------------------------------------------------------
# record-and-next, undo
# ---------------------------------------------------------------------------


def test_every_outcome_on_the_panel_shows_its_key(client, login, setup):
    login(setup.caller.username)
    page = client.get(f"/calls/case/{first_case(client)}").get_data(as_text=True)
    for code, key in (("no_answer", "1"), ("busy", "2"), ("powered_off", "3"), ("suspended", "4"), ("vacant", "5"),
                      ("not_available", "6"), ("callback", "7"), ("refusal", "8"), ("wrong_person", "9"),
                      ("incapable", "T"), ("deceased", "G"), ("moved", "Q")):
        assert re.search(rf'value="{code}"[^>]*data-key="{key}"[^>]*><kbd>{key}</kbd>', page), code
    assert 'data-key="K"' in page and "开始问卷" in page
    # Enter in a field can never record the first outcome: the form's default button is inert
    first_button = re.search(r'<form[^>]*id="panel".*?(<button[^>]*>)', page, re.S).group(1)
    assert "disabled" in first_button


def test_record_and_next_confirms_and_undo_takes_it_back(client, login, setup, clock):
    login(setup.caller.username)
    a = first_case(client)
    reply = post(client, f"/calls/case/{a}/attempt", {"outcome": "no_answer", "number": "1"})
    b = panel_case(reply)
    page = reply.get_data(as_text=True)
    assert b != a and f"已记录：{case_by(a).name} · 无人接听（第 1 次）" in page
    assert case_by(b).leased_by_id == setup.caller.id and case_by(a).leased_by_id is None
    undo_url = re.search(r'action="(/calls/attempt/\d+/undo)"', page).group(1)

    clock["now"] = at(23, 9, 30) + timedelta(seconds=10)
    back = post(client, undo_url)
    assert back.status_code == 303 and back.headers["Location"].endswith(f"/calls/case/{a}")
    a_case, b_case = case_by(a), case_by(b)
    assert attempts(a) == [] and a_case.attempt_count == 0 and a_case.last_attempt_at is None
    assert a_case.outcome is None and a_case.leased_by_id == setup.caller.id
    assert b_case.leased_by_id is None  # the next case went back to the queue
    log = db.session.scalar(select(AuditLog).where(AuditLog.action == "undo_attempt"))
    assert log is not None and '"outcome": "no_answer"' in log.detail
    # the panel of the case taken back: the same attempt number again, and a different outcome
    screen = client.get(f"/calls/case/{a}").get_data(as_text=True)
    assert "已撤销" in screen and NUMBER.search(screen).group(1) == "1"
    reply = post(client, f"/calls/case/{a}/attempt", {"outcome": "busy", "number": "1"})
    assert reply.status_code == 200 and [x.outcome for x in attempts(a)] == ["busy"]

    # too late: the window (15 s by default) has passed
    undo_url = re.search(r'action="(/calls/attempt/\d+/undo)"', reply.get_data(as_text=True)).group(1)
    clock["now"] = at(23, 9, 31)
    late = post(client, undo_url)
    assert late.status_code == 303 and late.headers["Location"].endswith("/calls/")
    assert "已超过撤销时限" in client.get("/calls/").get_data(as_text=True)
    assert [x.outcome for x in attempts(a)] == ["busy"]


def test_undo_of_a_vacant_number_puts_its_backup_back_unless_taken(app, client, login, setup, clock):
    login(setup.caller.username)
    a = first_case(client)
    reply = post(client, f"/calls/case/{a}/attempt", {"outcome": "vacant", "number": "1"})
    db.session.expire_all()
    backup = db.session.scalar(select(Case).where(Case.replaces_case_id == a))
    assert backup is not None and backup.status == "queued" and case_by(a).status == "done"
    undo_url = re.search(r'action="(/calls/attempt/\d+/undo)"', reply.get_data(as_text=True)).group(1)
    assert post(client, undo_url).status_code == 303
    backup, case = case_by(backup.id), case_by(a)
    assert backup.status == "reserve" and backup.replaces_case_id is None and backup.activated_at is None
    assert case.status == "queued" and case.replacement_state is None and case.outcome is None

    # again (going home, not to the next case), and another caller takes and dials the backup
    reply = post(client, f"/calls/case/{a}/attempt", {"outcome": "vacant", "number": "1", "then": "home"})
    assert reply.status_code == 303
    undo_url = f"/calls/attempt/{attempts(a)[-1].id}/undo"
    db.session.expire_all()
    backup = db.session.scalar(select(Case).where(Case.replaces_case_id == a))
    with app.app_context():
        other = sign_in(app, setup.other.username)
        assert post(other, f"/calls/case/{backup.id}/claim").status_code == 303
        assert post(other, f"/calls/case/{backup.id}/attempt", {"outcome": "busy", "number": "1"}).status_code in (200, 303)
    refused = post(client, undo_url)
    assert refused.status_code == 303
    assert "备用样本已被领取或拨打" in client.get("/calls/").get_data(as_text=True)
    assert case_by(a).status == "done" and [x.outcome for x in attempts(a)] == ["vacant"]


def test_another_callers_attempt_cannot_be_undone(app, client, login, setup):
    login(setup.caller.username)
    a = first_case(client)
    reply = post(client, f"/calls/case/{a}/attempt", {"outcome": "no_answer", "number": "1"})
    undo_url = re.search(r'action="(/calls/attempt/\d+/undo)"', reply.get_data(as_text=True)).group(1)
    with app.app_context():
        other = sign_in(app, setup.other.username)
        refused = post(other, undo_url)
        assert refused.status_code == 303 and refused.headers["Location"].endswith("/calls/")
        assert "找不到可撤销的拨打记录" in other.get("/calls/").get_data(as_text=True)
    assert [x.outcome for x in attempts(a)] == ["no_answer"]
    assert post(client, undo_url).status_code == 303 and attempts(a) == []  # its own caller still may


def test_two_callers_racing_for_the_next_case_get_different_ones(app, setup, clock):
    """Both record an outcome at the same moment; each answer's panel is a different case and
    no case is held by two callers."""
    clients, cases, tokens = {}, {}, {}
    for user in (setup.caller, setup.other):
        with app.app_context():
            clients[user.username] = client = sign_in(app, user.username)
            cases[user.username] = first_case(client)
            tokens[user.username] = token(client)
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def work(name):
        with app.app_context():
            barrier.wait()
            try:
                results[name] = clients[name].post(
                    f"/calls/case/{cases[name]}/attempt",
                    data={"outcome": "no_answer", "number": "1", "csrf_token": tokens[name]})
            except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
                results[name] = exc

    threads = [threading.Thread(target=work, args=(name,)) for name in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    nexts = {}
    for name, reply in results.items():
        assert not isinstance(reply, Exception), reply
        assert reply.status_code == 200, (name, reply.status_code)
        nexts[name] = panel_case(reply)
    assert len(set(nexts.values())) == 2 and not set(nexts.values()) & set(cases.values())
    db.session.rollback()  # the requests ran in other sessions: read what they committed
    for name, case_id in nexts.items():
        user = setup.caller if name == setup.caller.username else setup.other
        assert db.session.get(Case, case_id).leased_by_id == user.id
    held = db.session.execute(select(Case.leased_by_id, func.count()).where(Case.leased_by_id.is_not(None))
                              .group_by(Case.leased_by_id)).all()
    assert sorted(n for _, n in held) == [1, 1]
    assert db.session.scalar(select(func.count()).select_from(Attempt)) == 2


# ---------------------------------------------------------------------------
# the rules on every path
# ---------------------------------------------------------------------------


def test_the_gap_rule_holds_on_every_claim_path(app, client, login, setup, clock):
    login(setup.caller.username)
    a = first_case(client)
    old_panel = client.get(f"/calls/case/{a}").get_data(as_text=True)
    assert post(client, f"/calls/case/{a}/attempt", {"outcome": "no_answer", "number": "1"}).status_code == 200

    # Back / a link from the list: the case screen says when, and offers no 领取
    clock["now"] = at(23, 9, 31)
    screen = client.get(f"/calls/case/{a}").get_data(as_text=True)
    assert "领取并拨打" not in screen and "不足 120 分钟" in screen and "11:30后可再拨" in screen
    # the claim POST itself (an old page, or a crafted request): refused with the same message
    refused = post(client, f"/calls/case/{a}/claim")
    assert refused.status_code == 409 and "11:30后可再拨" in refused.get_data(as_text=True)
    assert case_by(a).leased_by_id is None
    # a stale tab still showing the panel of attempt 1: nothing recorded
    stale_number = NUMBER.search(old_panel).group(1)
    stale = post(client, f"/calls/case/{a}/attempt", {"outcome": "no_answer", "number": stale_number})
    assert stale.status_code == 200 and "重复提交，未重复记录" in stale.get_data(as_text=True)
    assert len(attempts(a)) == 1 and panel_case(stale) != a  # the case the caller holds now
    # another caller cannot either
    with app.app_context():
        other = sign_in(app, setup.other.username)
        assert post(other, f"/calls/case/{a}/claim").status_code == 409
    # 下一个 does not hand it out before the gap: release the held case, then ask for more
    for _ in range(40):
        reply = post(client, "/calls/next")
        if reply.headers["Location"].endswith("/calls/"):
            break
        held = int(reply.headers["Location"].rsplit("/", 1)[1])
        assert held != a
        post(client, f"/calls/case/{held}/attempt", {"outcome": "busy", "number": "1"})
    # after the gap the same claim succeeds
    clock["now"] = at(23, 11, 31)
    assert post(client, f"/calls/case/{a}/claim").status_code == 303
    assert case_by(a).leased_by_id == setup.caller.id


def test_the_day_hours_and_callback_rules_hold_on_the_claim_path(client, login, setup, clock):
    login(setup.caller.username)
    a = first_case(client)
    post(client, f"/calls/case/{a}/attempt", {"outcome": "no_answer", "number": "1"})
    clock["now"] = at(23, 15, 0)
    assert post(client, f"/calls/case/{a}/claim").status_code == 303
    post(client, f"/calls/case/{a}/attempt", {"outcome": "busy", "number": "2"})
    # the third (last) attempt waits for another day than the first
    clock["now"] = at(23, 18, 0)
    refused = post(client, f"/calls/case/{a}/claim")
    assert refused.status_code == 409 and "最后一次拨打须与第一次不在同一天" in refused.get_data(as_text=True)
    assert "11月24日 08:30起可再拨" in refused.get_data(as_text=True)
    # outside calling hours
    clock["now"] = at(24, 7, 0)
    refused = post(client, f"/calls/case/{a}/claim")
    assert refused.status_code == 409 and "不在拨打时段内" in refused.get_data(as_text=True)
    assert "08:30起可拨" in refused.get_data(as_text=True)
    # a callback agreed for later: not before its time
    clock["now"] = at(24, 9, 0)
    b = first_case(client)
    post(client, f"/calls/case/{b}/attempt", {"outcome": "callback", "number": "1", "callback_date": "2026-11-24",
                                              "callback_time": "16:00"})
    clock["now"] = at(24, 15, 0)
    refused = post(client, f"/calls/case/{b}/claim")
    assert refused.status_code == 409 and "约定 16:00 回访" in refused.get_data(as_text=True)
    clock["now"] = at(24, 16, 0)
    assert post(client, f"/calls/case/{b}/claim").status_code == 303


# ---------------------------------------------------------------------------
# inputs survive errors
# ---------------------------------------------------------------------------


def test_a_refused_outcome_keeps_what_was_typed_next_to_the_field(client, login, setup, clock):
    login(setup.caller.username)
    a = first_case(client)
    missing = post(client, f"/calls/case/{a}/attempt", {"outcome": "wrong_person", "number": "1", "note": " ",
                                                        "callback_date": "2026-11-24"})
    page = missing.get_data(as_text=True)
    assert missing.status_code == 400 and 'id="note-error"' in page and "必须填写说明" in page
    assert page.index('id="note-error"') > page.index('name="note"')  # beside the field, not at the top
    assert 'value="2026-11-24"' in page and PANEL.search(page)  # still the panel of this case, held
    assert attempts(a) == [] and case_by(a).leased_by_id == setup.caller.id

    bad = post(client, f"/calls/case/{a}/attempt", {"outcome": "callback", "number": "1", "note": "下午两点后方便",
                                                    "callback_date": "2026-11-23", "callback_time": "13:00"})
    page = bad.get_data(as_text=True)
    assert bad.status_code == 400 and 'id="callback-error"' in page and "拨打时段内" in page
    assert "下午两点后方便" in page and 'value="2026-11-23"' in page and 'value="13:00"' in page
    garbled = post(client, f"/calls/case/{a}/attempt", {"outcome": "callback", "number": "1", "note": "留言",
                                                        "callback_date": "明天", "callback_time": "9点"})
    page = garbled.get_data(as_text=True)
    assert garbled.status_code == 400 and "格式不正确" in page and 'value="明天"' in page and "留言" in page
    assert attempts(a) == []


# ---------------------------------------------------------------------------
# resumable interviews
# ---------------------------------------------------------------------------


FIRST = (("identity", {"value": "self"}), ("aware", {"value": "yes"}), ("knows_doctor", {"value": "yes"}))
REST = (("services", {"value": ["follow_up"]}), ("service_count", {"value": "2"}), ("effect", {"value": "helpful"}),
        ("satisfaction", {"value": "satisfied"}), ("renew", {"value": "yes"}), ("suggestion", {"value": ""}),
        ("wants_contact", {"value": "no"}))


def _start(client, case_id) -> tuple[int, str]:
    number = NUMBER.search(client.get(f"/calls/case/{case_id}").get_data(as_text=True)).group(1)
    reply = post(client, f"/calls/case/{case_id}/start", {"number": number})
    assert reply.status_code == 303, reply.get_data(as_text=True)[:500]
    url = reply.headers["Location"]
    return int(re.search(r"/response/(\d+)/q/", url).group(1)), url


def _answer(client, url, items):
    for code, data in items:
        assert url.endswith(f"/q/{code}"), (url, code)
        reply = post(client, url, data)
        assert reply.status_code == 303, reply.get_data(as_text=True)[:800]
        url = reply.headers["Location"]
    return url


def _interrupted(client, case_id, items, day="2026-11-23", time="15:00", **extra):
    """Start the case's interview, answer ``items``, and record 通话中断 with a callback at
    ``day`` ``time``; returns the response id and the reply (the next panel, or home)."""
    rid, url = _start(client, case_id)
    _answer(client, url, items)
    return rid, post(client, f"/calls/response/{rid}/interrupt", {"callback_date": day, "callback_time": time, **extra})


def test_an_interrupted_interview_resumes_where_it_stopped(client, login, setup, clock):
    login(setup.caller.username)
    a = first_case(client)
    rid, url = _start(client, a)
    url = _answer(client, url, FIRST)
    assert url.endswith("/q/services")
    # the callback time is required, and what was typed survives the refusal
    missing = post(client, f"/calls/response/{rid}/interrupt", {"callback_date": "2026-11-23", "note": "信号不好"})
    page = missing.get_data(as_text=True)
    assert missing.status_code == 400 and 'id="interrupt-error"' in page and "信号不好" in page
    assert "请填写回访时间" in page
    assert 'value="2026-11-23"' in page and "4. " in page  # the question the caller was on
    assert db.session.get(Response, rid).status == "in_progress"
    stopped = post(client, f"/calls/response/{rid}/interrupt",
                   {"callback_date": "2026-11-23", "callback_time": "15:00", "note": "信号不好"})
    assert stopped.status_code == 200 and "通话中断，约定续访" in stopped.get_data(as_text=True)
    db.session.expire_all()
    response, case = db.session.get(Response, rid), case_by(a)
    assert response.status == "interrupted"
    assert set(json.loads(response.answers)) == {"identity", "aware", "knows_doctor"}
    assert [x.outcome for x in attempts(a)] == ["interrupted"] and attempts(a)[0].connected
    assert case.status == "queued" and case.outcome == "interrupted" and case.callback_by_id == setup.caller.id
    # release what 下一个 handed out, then at the agreed time the case comes back first
    other = panel_case(stopped)
    post(client, f"/calls/case/{other}/release")
    clock["now"] = at(23, 15, 0)
    assert first_case(client) == a
    screen = client.get(f"/calls/case/{a}").get_data(as_text=True)
    assert "上次通话中断，已答 3 题" in screen and "继续问卷" in screen
    again, url = _start(client, a)
    assert again == rid and url.endswith("/q/services")  # the same response, at the first unanswered item
    *middle, last = REST
    # only the last item saves and finishes; the ones before it go on to the next question
    assert "保存并完成访问" not in client.get(url).get_data(as_text=True)
    url = _answer(client, url, middle)
    assert url.endswith("/q/wants_contact")
    question = client.get(url).get_data(as_text=True)
    assert 'name="finish" value="1"' in question and "保存并完成访问" in question and "结束语" in question
    finished = post(client, url, last[1] | {"finish": "1"})
    assert finished.status_code == 200 and PANEL.search(finished.get_data(as_text=True))  # straight to the next
    db.session.expire_all()
    response, case = db.session.get(Response, rid), case_by(a)
    assert response.status == "complete" and response.satisfaction == 4
    assert [x.outcome for x in attempts(a)] == ["interrupted", "complete"]
    assert response.attempt_id == attempts(a)[1].id and case.outcome == "complete" and case.status == "done"
    assert db.session.scalar(select(func.count()).select_from(Response).where(Response.case_id == a)) == 1


def test_only_an_explicit_refusal_to_continue_is_a_breakoff(client, login, setup):
    login(setup.caller.username)
    a = first_case(client)
    rid, url = _start(client, a)
    _answer(client, url, FIRST)
    reply = post(client, f"/calls/response/{rid}/finish", {"breakoff": "1"})
    assert reply.status_code == 200
    db.session.expire_all()
    assert db.session.get(Response, rid).status == "breakoff"
    case = case_by(a)
    assert case.outcome == "breakoff" and case.status == "done" and case.replacement_state is None


def test_interviews_still_interrupted_at_month_close_end_by_the_breakoff_rule(client, login, setup, clock):
    login(setup.caller.username)
    a = first_case(client)
    rid_a, reply = _interrupted(client, a, FIRST, "2026-11-25", "09:00")
    b = panel_case(reply)
    rid_b, _ = _interrupted(client, b, FIRST + REST[:4], "2026-11-25", "09:00")  # through the satisfaction item
    assert committed(close_round, setup.round.id, now=at(30, 23, 59), actor="test", **closing_args())
    db.session.expire_all()
    assert db.session.get(Response, rid_a).status == "breakoff" and case_by(a).outcome == "breakoff"
    assert db.session.get(Response, rid_b).status == "partial" and case_by(b).outcome == "partial"
    assert db.session.get(Response, rid_b).satisfaction == 4
    # the attempts keep what happened on the phone
    assert [x.outcome for x in attempts(a)] == ["interrupted"] and case_by(a).status in ("done", "closed")


# ---------------------------------------------------------------------------
# what a stale page, a slip or a bad value cannot do
# ---------------------------------------------------------------------------


def test_a_stale_panel_cannot_end_a_resumed_interview(client, login, setup, clock):
    login(setup.caller.username)
    a = first_case(client)
    rid, reply = _interrupted(client, a, FIRST)
    other = panel_case(reply)
    post(client, f"/calls/case/{other}/release")
    clock["now"] = at(23, 15, 0)
    assert first_case(client) == a
    old_panel = client.get(f"/calls/case/{a}").get_data(as_text=True)
    assert _start(client, a)[0] == rid  # resumed in this tab
    stale = post(client, f"/calls/case/{a}/attempt", {"outcome": "callback", "number": NUMBER.search(old_panel).group(1),
                                                      "callback_date": "2026-11-24", "callback_time": "09:00"})
    assert stale.status_code == 409 and "本次通话已开始问卷" in stale.get_data(as_text=True)
    db.session.expire_all()
    response = db.session.get(Response, rid)
    assert response.status == "in_progress" and set(json.loads(response.answers)) == {"identity", "aware", "knows_doctor"}


def test_a_waiting_interview_settles_when_the_case_ends_otherwise(client, login, setup, clock):
    login(setup.caller.username)
    a = first_case(client)
    rid_a, reply = _interrupted(client, a, FIRST + REST[:4])  # through satisfaction: a partial if it ends now
    b = panel_case(reply)
    rid_b, _ = _interrupted(client, b, FIRST, then="home")  # not as far: a break-off if it ends now
    clock["now"] = at(23, 15, 0)
    # a: the resident refuses at the callback; the interview that reached satisfaction stands
    assert post(client, f"/calls/case/{a}/claim").status_code == 303
    post(client, f"/calls/case/{a}/attempt", {"outcome": "refusal", "number": "2", "then": "home"})
    db.session.expire_all()
    case_a = case_by(a)
    assert db.session.get(Response, rid_a).status == "partial" and db.session.get(Response, rid_a).satisfaction == 4
    assert case_a.status == "done" and case_a.outcome == "partial" and case_a.replacement_state is None
    assert db.session.scalar(select(func.count()).select_from(Case).where(Case.replaces_case_id == a)) == 0
    # b: the number is now vacant; the short interview ends as a break-off, the case is replaced
    assert post(client, f"/calls/case/{b}/claim").status_code == 303
    post(client, f"/calls/case/{b}/attempt", {"outcome": "vacant", "number": "2", "then": "home"})
    db.session.expire_all()
    case_b = case_by(b)
    assert db.session.get(Response, rid_b).status == "breakoff"
    assert case_b.outcome == "vacant" and case_b.replacement_state == "replaced"


def test_no_callback_promised_once_the_attempts_are_used_up(client, login, setup, clock):
    login(setup.caller.username)
    a = first_case(client)
    post(client, f"/calls/case/{a}/release")
    db.session.execute(Case.__table__.update().where(Case.id == a).values(
        attempt_count=4, last_outcome="callback", outcome="callback", first_attempt_at=utc_naive(at(20, 9, 0)),
        last_attempt_at=utc_naive(at(22, 9, 0)), callback_at=utc_naive(at(23, 9, 0)), callback_by_id=setup.caller.id))
    db.session.commit()
    assert post(client, f"/calls/case/{a}/claim").status_code == 303
    rid, url = _start(client, a)  # the fifth and last attempt
    assert "不能再约定续访" in client.get(url).get_data(as_text=True)
    _answer(client, url, FIRST)
    refused = post(client, f"/calls/response/{rid}/interrupt", {"callback_date": "2026-11-24", "callback_time": "09:00"})
    assert refused.status_code in (302, 303) and db.session.get(Response, rid).status == "in_progress"
    db.session.expire_all()
    assert case_by(a).status == "queued" and case_by(a).replacement_state is None


def test_a_resumed_interview_belongs_to_the_caller_who_finishes_it(app, client, login, setup, clock):
    login(setup.caller.username)
    a = first_case(client)
    rid, _ = _interrupted(client, a, FIRST, then="home")
    clock["now"] = at(23, 15, 30)
    with app.app_context():
        other = sign_in(app, setup.other.username)
        assert post(other, f"/calls/case/{a}/claim").status_code == 303
        reply = post(other, f"/calls/case/{a}/start", {"number": "2"})
        assert reply.headers["Location"].endswith(f"/calls/response/{rid}/q/services")
    db.session.rollback()  # the other caller's requests ran in another session
    response = db.session.get(Response, rid)
    assert response.caller_id == setup.other.id and response.started_at == utc_naive(at(23, 15, 30))


def test_odd_values_get_a_message_not_a_500(client, login, setup):
    login(setup.caller.username)
    a = first_case(client)
    for number in ("²", "①", "99999999999999999999", "-1"):
        reply = post(client, f"/calls/case/{a}/attempt", {"outcome": "no_answer", "number": number, "then": "home"})
        assert reply.status_code in (303, 400, 409), (number, reply.status_code)
        if reply.status_code == 303:  # a number it cannot read is no number: recorded once
            break
    a = first_case(client)
    for day, clock_ in (("0001-01-01", "00:00"), ("9999-12-31", "23:59"), ("2026-13-01", "09:00")):
        reply = post(client, f"/calls/case/{a}/attempt", {"outcome": "callback", "number": "1",
                                                          "callback_date": day, "callback_time": clock_})
        assert reply.status_code == 400 and "格式不正确" in reply.get_data(as_text=True), day
    for outcome in ("complete", "interrupted", "robot", ""):
        reply = post(client, f"/calls/case/{a}/attempt", {"outcome": outcome, "number": "1"})
        assert reply.status_code == 400, outcome
    assert attempts(a) == []


def test_a_lease_run_out_authorises_nothing(client, login, setup, clock):
    login(setup.caller.username)
    a = first_case(client)
    clock["now"] = at(23, 12, 30)  # lease run out, and outside calling hours
    reply = post(client, f"/calls/case/{a}/attempt", {"outcome": "no_answer", "number": "1"})
    assert reply.status_code == 409 and "领取已超时" in reply.get_data(as_text=True)
    assert attempts(a) == []
    assert post(client, f"/calls/case/{a}/claim").status_code == 409  # not in calling hours
    clock["now"] = at(23, 14, 30)
    assert post(client, f"/calls/case/{a}/claim").status_code == 303
    assert post(client, f"/calls/case/{a}/attempt", {"outcome": "no_answer", "number": "1"}).status_code == 200


def test_an_undo_form_names_its_attempt(client, login, setup):
    login(setup.caller.username)
    a = first_case(client)
    reply = post(client, f"/calls/case/{a}/attempt", {"outcome": "no_answer", "number": "1"})
    page = reply.get_data(as_text=True)
    undo_url = re.search(r'action="(/calls/attempt/\d+/undo)"', page).group(1)
    assert f'name="case" value="{a}"' in page and 'name="number" value="1"' in page
    wrong = post(client, undo_url, {"case": str(a), "number": "2"})
    assert wrong.status_code == 303 and wrong.headers["Location"].endswith("/calls/") and len(attempts(a)) == 1
    assert post(client, undo_url, {"case": str(a), "number": "1"}).status_code == 303 and attempts(a) == []


def test_a_case_claimed_from_the_list_puts_back_the_one_held(client, login, setup):
    login(setup.caller.username)
    a = first_case(client)
    b = db.session.scalar(select(Case.id).where(Case.round_id == setup.round.id, Case.status == "queued",
                                                Case.id != a).order_by(Case.id))
    assert post(client, f"/calls/case/{b}/claim").status_code == 303
    assert case_by(b).leased_by_id == setup.caller.id and case_by(a).leased_by_id is None
