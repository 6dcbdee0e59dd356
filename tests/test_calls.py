"""The caller's rules against the database, with a pinned clock: the queue's order, leases,
attempt limits, calling hours, callbacks, replacement, the questionnaire's life, the close."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, update

from app.calls import outcomes as oc
from app.reports.board import board_rows
from app.calls.rules import CallHoursError, parse_hours
from app.calls.corrections import edit_answer
from app.calls.interview import context_for, finish_interview, save_answer, start_interview
from app.calls.attempts import record_attempt
from app.calls.queue import claim_case, claim_next, queue_counts, release
from app.calls.guards import CallError
from app.draws.services import DrawError, redraw_round
from app.scheduler.month_end import close_round
from app.extensions import db
from app.models import AnswerEdit, Attempt, AuditLog, Case, Response
from tests.calls_support import CALLS, SETTINGS, at, case_by, closing_args, committed, drawn_round, later


@pytest.fixture
def setup(county, make_team, make_user):
    return drawn_round(county, make_team, make_user)


def q(app):
    return app.extensions["questionnaires"]["v1"]


def claim(setup, user=None, now=None):
    return committed(claim_next, setup.round.id, user or setup.caller, now or at(23, 9), CALLS)


def attempt(case, user, outcome, now, **kw):
    return committed(record_attempt, case.id, user, outcome=outcome, now=now, settings=CALLS, **kw)


# ---------------------------------------------------------------------------
# Outcomes and calling hours (no database)
# ---------------------------------------------------------------------------


def test_outcome_table_has_the_required_codes_and_consistent_flags():
    labels = {o.label for o in oc.OUTCOMES.values()}
    for required in ("完成访问", "部分完成", "拒访", "中途终止", "约定回访", "本人不在", "无人接听", "占线", "关机",
                     "停机", "空号", "号码错误/非本人", "听力或语言障碍", "本人已故", "已迁出/已解约"):
        assert required in labels
    for o in oc.OUTCOMES.values():
        assert o.aapor in oc.AAPOR_LABELS
        assert o.contact == (o.aapor in ("I", "P", "R", "O")), o.code  # CON1's numerator
        assert not (o.replace and o.aapor in ("I", "P", "R"))  # an interview or a refusal is never replaced
    assert {o.code for o in oc.choices(False)} == {"no_answer", "busy", "powered_off", "suspended", "vacant"}
    assert "complete" not in {o.code for o in oc.choices(True)}  # the questionnaire records it


def test_disposition_final_wins_and_is_never_overwritten():
    assert oc.disposition(["no_answer", "busy"]) == "no_answer"
    assert oc.disposition(["no_answer", "not_available", "busy"]) == "not_available"  # once reached: NC
    assert oc.disposition(["callback", "no_answer"]) == "callback"
    assert oc.disposition(["no_answer", "vacant"]) == "vacant"
    assert oc.merge("refusal", "no_answer") == "refusal"
    assert oc.merge("complete", "callback") == "complete"
    assert oc.merge("busy", "powered_off") == "powered_off"
    assert oc.merge(None, "busy") == "busy"
    assert oc.aapor_class("open_at_close") == "UH" and oc.aapor_class("moved") == "NE"


def test_calling_hours_parse_and_boundaries():
    assert CALLS.in_hours(at(23, 8, 30)) and CALLS.in_hours(at(23, 11, 59))
    assert not CALLS.in_hours(at(23, 12, 0)) and not CALLS.in_hours(at(23, 14, 29))
    assert CALLS.in_hours(at(23, 20, 29)) and not CALLS.in_hours(at(23, 20, 30))
    assert not CALLS.in_hours(at(23, 7, 0))
    for bad in ("8-12", "12:00-08:30", "08:30-12:00,11:00-13:00", "25:00-26:00", ""):
        with pytest.raises(CallHoursError):
            parse_hours(bad)


# ---------------------------------------------------------------------------
# The queue and leases
# ---------------------------------------------------------------------------


def test_two_callers_never_get_the_same_case_and_a_held_case_comes_back(setup):
    first = claim(setup)
    second = claim(setup, setup.other)
    assert first.id != second.id
    assert claim(setup).id == first.id  # "下一个" while holding a case returns it: no hoarding
    assert case_by(first.id).leased_by_id == setup.caller.id


def test_an_expired_lease_returns_the_case_to_the_queue(setup):
    held = claim(setup, now=at(23, 9))
    assert claim(setup, setup.other, now=at(23, 9, 10)).id != held.id
    # 20 minutes later the lease is gone: the other caller (after finishing theirs) may take it
    db.session.execute(update(Case).where(Case.id != held.id).values(status="done"))
    db.session.commit()
    assert claim(setup, setup.other, now=at(23, 9, 21)).id == held.id
    with pytest.raises(CallError, match="其他调查员"):
        attempt(held, setup.caller, "no_answer", at(23, 9, 22))


def test_release_puts_the_case_back(setup):
    held = claim(setup)
    assert committed(release, held.id, setup.caller)
    assert case_by(held.id).leased_by_id is None
    assert not committed(release, held.id, setup.other)


def test_queue_order_callbacks_then_untried_then_retries_by_deficit(setup, county, make_team):
    # a callback due now comes before everything
    c1 = claim(setup, now=at(23, 9))
    attempt(c1, setup.caller, "callback", at(23, 9, 1), callback_at=at(23, 10))
    c2 = claim(setup, now=at(23, 9, 2))
    attempt(c2, setup.caller, "no_answer", at(23, 9, 3))
    assert claim(setup, setup.other, now=at(23, 10, 0)).id == c1.id  # due callback first, whoever set it
    committed(release, c1.id, setup.other)
    # untried cases come before a retry whose gap has passed
    nxt = claim(setup, now=at(23, 11, 30))
    assert nxt.id not in (c1.id, c2.id) and nxt.attempt_count == 0 or nxt.id == c1.id


def test_institution_furthest_from_target_first(county, make_team, make_user):
    s = drawn_round(county, make_team, make_user, per_team=(12,), institutions=("甲卫生院", "乙卫生院"))
    # 乙 already has 5 completes: 甲 is further from its target and is offered first
    yi = db.session.scalars(select(Case).where(Case.round_id == s.round.id, Case.institution_name == "乙卫生院",
                                               Case.kind == "primary").limit(5)).all()
    for c in yi:
        c.status, c.outcome = "done", "complete"
    db.session.commit()
    for _ in range(3):
        got = claim(s, now=at(23, 9))
        assert got.institution_name == "甲卫生院"
        committed(release, got.id, s.caller)
        db.session.execute(update(Case).where(Case.id == got.id).values(assigned_to_id=s.other.id))
        db.session.commit()


def test_minimum_gap_and_two_day_spread(setup):
    c = claim(setup, now=at(23, 9))
    attempt(c, setup.caller, "no_answer", at(23, 9, 1))
    db.session.execute(update(Case).where(Case.id != c.id, Case.status == "queued").values(status="done"))
    db.session.commit()
    assert claim(setup, now=at(23, 10, 0)) is None  # inside the 2-hour gap
    second = claim(setup, now=at(23, 11, 2))
    assert second.id == c.id
    attempt(second, setup.caller, "busy", at(23, 11, 3))
    # the third (last) attempt must be on another day than the first two
    assert claim(setup, now=at(23, 19, 0)) is None
    with pytest.raises(CallError, match="明天"):
        committed(claim_case, c.id, setup.caller, at(23, 19, 0), CALLS)
    third = claim(setup, now=at(24, 9, 0))
    assert third.id == c.id


def test_outside_calling_hours_only_own_due_callbacks(setup):
    c = claim(setup, now=at(23, 9))
    attempt(c, setup.caller, "callback", at(23, 9, 1), callback_at=at(23, 11, 50))
    assert claim(setup, now=at(23, 12, 30)).id == c.id  # overdue, set by this caller
    committed(release, c.id, setup.caller)
    assert claim(setup, setup.other, now=at(23, 12, 30)) is None  # not theirs, and out of hours
    with pytest.raises(CallError, match="拨打时段"):
        committed(claim_case, c.id, setup.other, at(23, 12, 30), CALLS)
    counts = queue_counts(db.session, setup.round.id, setup.caller, at(23, 12, 30), CALLS)
    assert counts.callbacks_due == 1 and counts.callable_now == 1


def test_callback_must_be_future_inside_hours_and_this_month(setup):
    c = claim(setup, now=at(23, 9))
    for when, message in ((at(23, 8), "晚于现在"), (at(23, 13), "拨打时段"), (at(23, 21), "拨打时段"),
                          (later(at(30, 9), days=1), "本月"), (None, "日期和时间")):
        with pytest.raises(CallError, match=message):
            attempt(c, setup.caller, "callback", at(23, 9, 1), callback_at=when)
    assert db.session.scalar(select(func.count()).select_from(Attempt)) == 0  # nothing half-written
    attempt(c, setup.caller, "callback", at(23, 9, 1), callback_at=at(24, 15))
    assert case_by(c.id).callback_at is not None and case_by(c.id).status == "queued"


def test_repeated_submit_records_one_attempt(setup):
    c = claim(setup)
    attempt(c, setup.caller, "no_answer", at(23, 9, 1), expected_number=1)
    with pytest.raises(CallError):
        attempt(c, setup.caller, "no_answer", at(23, 9, 1), expected_number=1)
    assert db.session.scalar(select(func.count()).select_from(Attempt).where(Attempt.case_id == c.id)) == 1


def test_note_required_and_unknown_outcomes(setup):
    c = claim(setup)
    with pytest.raises(CallError, match="说明"):
        attempt(c, setup.caller, "moved", at(23, 9, 1))
    with pytest.raises(CallError, match="未知"):
        attempt(c, setup.caller, "teleported", at(23, 9, 1))
    with pytest.raises(CallError, match="问卷"):
        attempt(c, setup.caller, "complete", at(23, 9, 1))


# ---------------------------------------------------------------------------
# Replacement
# ---------------------------------------------------------------------------


def test_vacant_number_activates_the_next_backup_of_the_same_team(setup):
    c = claim(setup)
    attempt(c, setup.caller, "vacant", at(23, 9, 1))
    ended = case_by(c.id)
    assert ended.status == "done" and ended.outcome == "vacant" and ended.replacement_state == "replaced"
    backup = db.session.scalar(select(Case).where(Case.replaces_case_id == c.id))
    assert backup.kind == "backup" and backup.status == "queued" and backup.team_id == c.team_id
    assert backup.replacement_reason == "空号" and backup.activated_by_id == setup.caller.id
    first_of_team = db.session.scalar(
        select(func.min(Case.position)).where(Case.round_id == setup.round.id, Case.kind == "backup",
                                              Case.team_id == c.team_id)
    )
    assert backup.position == first_of_team


def test_exhausted_attempts_replace_and_then_other_team_then_shortfall(setup):
    c = claim(setup, now=at(23, 9))
    # take away this team's backups: the replacement must come from the other team
    db.session.execute(update(Case).where(Case.kind == "backup", Case.team_id == c.team_id).values(status="closed"))
    db.session.commit()
    attempt(c, setup.caller, "no_answer", at(23, 9, 1))
    for when in (at(23, 11, 5), at(24, 9, 0)):
        db.session.execute(update(Case).where(Case.id == c.id).values(leased_by_id=setup.caller.id,
                                                                       lease_expires_at=later(when, minutes=20).replace(tzinfo=None)))
        db.session.commit()
        attempt(c, setup.caller, "no_answer", when)
    ended = case_by(c.id)
    assert ended.attempt_count == 3 and ended.status == "done" and ended.outcome == "no_answer"
    backup = db.session.scalar(select(Case).where(Case.replaces_case_id == c.id))
    assert backup.team_id != c.team_id and "3次" in backup.replacement_reason
    # no backup left at all: the ended case says so and the board counts a shortfall
    db.session.execute(update(Case).where(Case.status == "reserve").values(status="closed"))
    db.session.commit()
    nxt = claim(setup, now=at(24, 9, 5))
    attempt(nxt, setup.caller, "suspended", at(24, 9, 6))
    assert case_by(nxt.id).replacement_state == "none_left"
    [rp] = board_rows(db.session, [setup.round.id], at(24, 10))
    assert rp.total.shortfall >= 1 and rp.total.replacements == 1


def test_a_final_outcome_ends_the_case(setup):
    c = claim(setup)
    attempt(c, setup.caller, "refusal", at(23, 9, 1))
    assert case_by(c.id).status == "done"
    assert db.session.scalar(select(func.count()).select_from(Case).where(Case.replaces_case_id == c.id)) == 0
    with pytest.raises(CallError, match="已结束"):
        attempt(c, setup.caller, "no_answer", at(23, 11, 5))
    with pytest.raises(CallError):
        committed(claim_case, c.id, setup.caller, at(24, 9), CALLS)
    assert case_by(c.id).outcome == "refusal"


# ---------------------------------------------------------------------------
# The questionnaire's life
# ---------------------------------------------------------------------------


def answer(app, response, code, value, detail=None, when=None):
    ctx = context_for(db.session.get(Case, response.case_id), app.extensions["vocabulary"])
    cleaned, errors = q(app).clean(code, {"value": value, "detail": detail or ""}, ctx,
                                   json.loads(response.answers))
    assert not errors, errors
    return committed(save_answer, response.id, setup_user(response), cleaned, questionnaire=q(app),
                       now=when or at(23, 9, 5), settings=CALLS)


def setup_user(response):
    from app.models import User
    return db.session.get(User, response.caller_id)


def full_interview(app, response, satisfaction="satisfied", count=0, services=("none",)):
    response = answer(app, response, "identity", "self")
    response = answer(app, response, "aware", "yes")
    response = answer(app, response, "knows_doctor", "no")
    response = answer(app, response, "services", list(services))
    if "none" not in services:
        response = answer(app, response, "service_count", count)
        response = answer(app, response, "effect", "helpful")
    response = answer(app, response, "satisfaction", satisfaction)
    response = answer(app, response, "renew", "yes")
    response = answer(app, response, "suggestion", "希望多上门")
    return answer(app, response, "wants_contact", "yes")


def test_complete_interview_derives_indicators_and_flags(app, setup):
    c = claim(setup)
    response = committed(start_interview, c.id, setup.caller, now=at(23, 9, 2), settings=CALLS, expected_number=1)
    again = committed(start_interview, c.id, setup.caller, now=at(23, 9, 2), settings=CALLS)
    assert again.id == response.id  # a repeated start does not open a second attempt
    response = full_interview(app, response, satisfaction="dissatisfied")
    ctx = context_for(case_by(c.id), app.extensions["vocabulary"])
    done = committed(finish_interview, response.id, setup.caller, questionnaire=q(app), context=ctx,
                            now=at(23, 9, 8), settings=CALLS)
    assert done.status == "complete" and done.satisfaction == 2 and done.aware is True
    assert set(done.flags.split(",")) == {"no_service", "below_standard", "dissatisfied", "wants_contact"}
    ended = case_by(c.id)
    assert ended.status == "done" and ended.outcome == "complete" and ended.leased_by_id is None
    # a repeated submit changes nothing and creates nothing
    committed(finish_interview, response.id, setup.caller, questionnaire=q(app), context=ctx,
                     now=at(23, 9, 9), settings=CALLS)
    assert db.session.scalar(select(func.count()).select_from(Response)) == 1
    assert db.session.scalar(select(func.count()).select_from(Attempt)) == 1


def test_incomplete_cannot_be_submitted_and_a_drop_keeps_what_was_asked(app, setup):
    c = claim(setup)
    r = committed(start_interview, c.id, setup.caller, now=at(23, 9, 2), settings=CALLS)
    r = answer(app, r, "identity", "self")
    ctx = context_for(case_by(c.id), app.extensions["vocabulary"])
    with pytest.raises(CallError, match="未回答"):
        committed(finish_interview, r.id, setup.caller, questionnaire=q(app), context=ctx, now=at(23, 9, 3),
                         settings=CALLS)
    dropped = committed(finish_interview, r.id, setup.caller, questionnaire=q(app), context=ctx,
                               now=at(23, 9, 3), settings=CALLS, breakoff=True)
    assert dropped.status == "breakoff" and json.loads(dropped.answers) == {"identity": "self"}
    assert case_by(c.id).outcome == "breakoff" and case_by(c.id).status == "done"

    c2 = claim(setup, now=at(23, 9, 10))
    r2 = committed(start_interview, c2.id, setup.caller, now=at(23, 9, 11), settings=CALLS)
    for code, value in (("identity", "self"), ("aware", "yes"), ("knows_doctor", "yes"), ("services", ["none"]),
                        ("satisfaction", "very_satisfied")):
        r2 = answer(app, r2, code, value)
    partial = committed(finish_interview, r2.id, setup.caller, questionnaire=q(app), context=ctx,
                               now=at(23, 9, 15), settings=CALLS, breakoff=True)
    assert partial.status == "partial" and partial.satisfaction == 5
    assert oc.aapor_class(case_by(c2.id).outcome) == "P"


def test_failed_identity_ends_politely_as_not_available(app, setup):
    c = claim(setup)
    r = committed(start_interview, c.id, setup.caller, now=at(23, 9, 2), settings=CALLS)
    r = answer(app, r, "identity", "unavailable")
    assert r.status == "ended"
    ended = case_by(c.id)
    assert ended.status == "queued" and ended.last_outcome == "not_available" and ended.leased_by_id is None
    with pytest.raises(CallError):
        answer(app, r, "aware", "yes")


def test_changing_a_branch_drops_answers_of_the_other_branch(app, setup):
    c = claim(setup)
    r = committed(start_interview, c.id, setup.caller, now=at(23, 9, 2), settings=CALLS)
    for code, value in (("identity", "self"), ("aware", "yes"), ("knows_doctor", "yes")):
        r = answer(app, r, code, value)
    r = answer(app, r, "aware", "no")  # the caller goes back: the resident never contracted
    assert set(json.loads(r.answers)) == {"identity", "aware"} and r.current_item == "suggestion"


def test_open_interview_and_undialled_cases_at_close(app, setup):
    c = claim(setup)
    r = committed(start_interview, c.id, setup.caller, now=at(23, 9, 2), settings=CALLS)
    for code, value in (("identity", "self"), ("aware", "yes"), ("knows_doctor", "yes"), ("services", ["none"]),
                        ("satisfaction", "satisfied")):
        r = answer(app, r, code, value)
    d = claim(setup, setup.other, now=at(23, 9, 3))
    attempt(d, setup.other, "not_available", at(23, 9, 4))
    assert committed(close_round, setup.round.id, now=at(30, 23, 59), actor="test", **closing_args())
    assert db.session.get(Response, r.id).status == "partial"
    assert case_by(c.id).status == "done" and case_by(c.id).outcome == "partial"
    assert case_by(d.id).status == "closed" and case_by(d.id).outcome == "not_available"
    untouched = db.session.scalar(select(Case).where(Case.round_id == setup.round.id, Case.attempt_count == 0,
                                                     Case.kind == "primary"))
    assert untouched.status == "closed" and untouched.outcome == "open_at_close"
    with pytest.raises(CallError, match="关闭"):
        claim(setup, now=at(30, 23, 59))


def test_redraw_refused_once_a_call_was_recorded(setup):
    c = claim(setup)
    attempt(c, setup.caller, "busy", at(23, 9, 1))
    with pytest.raises(DrawError, match="拨打记录"):
        committed(redraw_round, setup.round.id, now=at(23, 9, 2), settings=SETTINGS, actor="admin")


def test_supervisor_correction_keeps_old_and_new_and_rederives(app, setup):
    c = claim(setup)
    r = committed(start_interview, c.id, setup.caller, now=at(23, 9, 2), settings=CALLS)
    r = full_interview(app, r, satisfaction="satisfied", services=("follow_up",), count=2)
    ctx = context_for(case_by(c.id), app.extensions["vocabulary"])
    r = committed(finish_interview, r.id, setup.caller, questionnaire=q(app), context=ctx, now=at(23, 9, 8),
                         settings=CALLS)
    assert "dissatisfied" not in (r.flags or "")
    cleaned, errors = q(app).clean("satisfaction", {"value": "very_dissatisfied"}, ctx, json.loads(r.answers))
    assert not errors
    with pytest.raises(CallError, match="原因"):
        committed(edit_answer, r.id, setup.supervisor, cleaned, item="satisfaction", reason=" ", questionnaire=q(app),
                    context=ctx, now=at(24, 10))
    committed(edit_answer, r.id, setup.supervisor, cleaned, item="satisfaction", reason="回听录音，居民实际表示非常不满意",
                questionnaire=q(app), context=ctx, now=at(24, 10))
    db.session.commit()
    r = db.session.get(Response, r.id)
    assert r.satisfaction == 1 and "dissatisfied" in r.flags
    edit = db.session.scalar(select(AnswerEdit))
    assert json.loads(edit.old_value) == {"satisfaction": "satisfied"}
    assert json.loads(edit.new_value) == {"satisfaction": "very_dissatisfied"}
    assert edit.user_id == setup.supervisor.id
    assert db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "answer_edit")) == 1
    # an item that decides the path cannot be changed
    cleaned, _ = q(app).clean("aware", {"value": "no"}, ctx, json.loads(r.answers))
    with pytest.raises(CallError, match="跳转"):
        committed(edit_answer, r.id, setup.supervisor, cleaned, item="aware", reason="x", questionnaire=q(app),
                    context=ctx, now=at(24, 10))
