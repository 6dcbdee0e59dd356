"""The rectification list (整改): a flagged interview becomes a problem; the list's filters,
masking and scope; assign → close (note required) → reopen with audit rows; roles, another
county (404), CSRF; ``problem_counts``."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, update

from app.core.clock import utc_naive
from app.calls.corrections import edit_answer
from app.calls.interview import context_for, finish_interview, save_answer, start_interview
from app.calls.queue import claim_case
from app.extensions import db
from app.models import AuditLog, Case, Problem, Response
from app.reports.problems import (
    EMPTY_COUNTS,
    ProblemError,
    assign_problem,
    close_problem,
    problem_counts,
    reopen_problem,
)
from tests.calls_support import CALLS, at, drawn_round, committed
from tests.helpers import PASSWORD, csrf_token

# dissatisfied and wants the institution to call back; a phone number in the suggestion
FLAGGED = {"identity": "self", "aware": "yes", "knows_doctor": "yes", "services": ["follow_up"], "service_count": 2,
           "effect": "helpful", "satisfaction": "dissatisfied", "renew": "yes",
           "suggestion": "医生电话13800138000总打不通", "wants_contact": "yes"}
GOOD = {**FLAGGED, "satisfaction": "satisfied", "suggestion": "", "wants_contact": "no"}
# "none" skips the count and the effect items: no service, below the hypertension standard
NO_SERVICE = {"identity": "self", "aware": "yes", "knows_doctor": "yes", "services": ["none"],
              "satisfaction": "satisfied", "renew": "yes", "suggestion": "", "wants_contact": "no"}


@pytest.fixture
def clock(monkeypatch):
    state = {"now": at(23, 9, 30)}
    monkeypatch.setattr("app.calls.routes.clock_now", lambda: state["now"])
    monkeypatch.setattr("app.reports.problem_routes.clock_now", lambda: state["now"])
    monkeypatch.setattr("app.reports.routes.clock_now", lambda: state["now"])
    return state


@pytest.fixture
def setup(county, make_team, make_user, clock):
    return drawn_round(county, make_team, make_user, institutions=("新墙镇卫生院", "筻口镇卫生院"))


def interview(app, setup, answers: dict, *, team=None, minute: int = 0) -> Response:
    """One finished interview of a queued primary case (of ``team`` if given)."""
    stmt = select(Case).where(Case.round_id == setup.round.id, Case.status == "queued", Case.attempt_count == 0)
    if team is not None:
        stmt = stmt.where(Case.team_id == team.id)
    case = db.session.scalars(stmt.order_by(Case.id)).first()
    q = app.extensions["questionnaires"]["v1"]
    when = at(23, 10, minute)
    committed(claim_case, case.id, setup.caller, when, CALLS)
    response = committed(start_interview, case.id, setup.caller, now=when, settings=CALLS)
    for code, value in answers.items():
        committed(save_answer, response.id, setup.caller, {code: value}, questionnaire=q, now=when, settings=CALLS)
    context = context_for(case, app.extensions["vocabulary"])
    response = committed(finish_interview, response.id, setup.caller, questionnaire=q, context=context, now=when,
                                settings=CALLS)
    assert response.status == "complete"
    return response


def problem_of(response: Response) -> Problem | None:
    db.session.rollback()  # a fresh snapshot: requests in another app context committed on their own session
    return db.session.scalar(select(Problem).where(Problem.response_id == response.id))


def token(client, url="/"):
    return csrf_token(client.get(url).get_data(as_text=True))


def sign_in(app, username):
    """A fresh browser signed in as ``username``; call it inside a fresh ``app.app_context()``
    (Flask-Login caches the signed-in user in the app context's ``g``)."""
    client = app.test_client()
    reply = client.post("/", data={"username": username, "password": PASSWORD, "csrf_token": token(client)})
    assert reply.status_code == 302
    return client


def post(client, url, data=None, csrf=True):
    data = dict(data or {})
    if csrf:
        data["csrf_token"] = token(client, "/reports/problems")  # the 403 page has one too
    return client.post(url, data=data)


def audit(problem_id: int) -> list[AuditLog]:
    db.session.rollback()
    return db.session.scalars(
        select(AuditLog).where(AuditLog.target == f"problem:{problem_id}").order_by(AuditLog.id)
    ).all()


# ---------------------------------------------------------------------------
# A flagged interview on the list
# ---------------------------------------------------------------------------


def test_a_flagged_interview_makes_a_problem_shown_masked_on_the_list(app, client, login, setup):
    flagged = interview(app, setup, FLAGGED)
    good = interview(app, setup, GOOD)
    problem = problem_of(flagged)
    assert problem is not None and problem_of(good) is None
    case = db.session.get(Case, flagged.case_id)
    assert problem.flags == "dissatisfied,wants_contact" and problem.status == "open"
    assert (problem.county_id, problem.institution_id, problem.team_id, problem.month) == (
        setup.county.id, case.institution_id, case.team_id, "2026-11")

    login(setup.supervisor.username)
    page = client.get("/reports/problems")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert case.name in text and case.phone not in text and case.phone[:3] + "****" + case.phone[-4:] in text
    assert "不满意" in text and "要求机构联系" in text and "待处理" in text
    assert "医生电话138****8000总打不通" in text and "13800138000" not in text  # the suggestion, phone masked
    assert f"/calls/response/{flagged.id}/view" in text and f"/reports/problems/{problem.id}" in text
    good_case = db.session.get(Case, good.case_id)
    assert good_case.name not in text
    assert "问题清单" in client.get("/calls/board").get_data(as_text=True)  # the nav link

    detail = client.get(f"/reports/problems/{problem.id}").get_data(as_text=True)
    assert case.name in detail and case.phone not in detail and "交办机构" in detail and "138****8000" in detail


def test_filters(app, client, login, setup):
    first, second = setup.teams[0], setup.teams[2]  # teams of the two institutions
    a = problem_of(interview(app, setup, FLAGGED, team=first))
    b = problem_of(interview(app, setup, NO_SERVICE, team=second))
    c = problem_of(interview(app, setup, FLAGGED, team=setup.teams[1]))
    assert b.flags == "no_service,below_standard"
    # c: a problem of last month already closed; a: one of last month still open
    db.session.execute(update(Problem).where(Problem.id == c.id).values(month="2026-10", status="closed"))
    db.session.execute(update(Problem).where(Problem.id == a.id).values(month="2026-10"))
    db.session.commit()
    names = {p.id: db.session.get(Case, db.session.get(Response, p.response_id).case_id).name for p in (a, b, c)}

    login(setup.supervisor.username)

    def shown(query=""):
        text = client.get(f"/reports/problems{query}").get_data(as_text=True)
        return {pid for pid, name in names.items() if f">{name}</a>" in text}

    assert shown() == {a.id, b.id}  # default: still open of any month, and this month
    assert shown("?month=all") == {a.id, b.id, c.id}
    assert shown("?month=2026-10") == {a.id, c.id}
    assert shown("?month=2026-10&status=closed") == {c.id}
    assert shown("?month=all&status=open") == {a.id, b.id}
    assert shown("?month=all&flag=dissatisfied") == {a.id, c.id}
    assert shown("?month=all&flag=below_standard") == {b.id}
    assert shown("?month=all&flag=unaware") == set()
    assert shown("?month=all&flag=%25") == {a.id, b.id, c.id}  # not a flag: ignored
    assert shown(f"?month=all&institution={first.institution_id}") == {a.id, c.id}
    assert shown(f"?month=all&institution={first.institution_id}&team={first.id}") == {a.id}
    assert shown(f"?month=all&team={setup.teams[1].id}") == {c.id}
    assert shown("?month=garbage") == {a.id, b.id}  # a malformed month is the default view
    page = client.get(f"/reports/problems?institution={first.institution_id}").get_data(as_text=True)
    assert first.name in page and "筻口镇卫生院第1团队" not in page  # the team select offers that institution's
    assert "<dt>待处理</dt><dd>1</dd>" in page and "<dt>已整改</dt><dd>0</dd>" in page  # c is last month's, closed
    totals = client.get("/reports/problems?month=all&status=open").get_data(as_text=True)
    assert "<dt>待处理</dt><dd>2</dd>" in totals and "<dt>已整改</dt><dd>1</dd>" in totals  # totals ignore status


def test_admin_sees_every_county_with_a_county_filter(app, setup, make_county, make_team, make_user):
    mine = problem_of(interview(app, setup, FLAGGED))
    other_county = make_county("华容县", "430623")
    other = drawn_round(other_county, make_team, make_user)
    theirs = problem_of(interview(app, other, FLAGGED))
    make_user("cityadmin", "admin")
    names = [db.session.get(Case, db.session.get(Response, p.response_id).case_id).name for p in (mine, theirs)]
    with app.app_context():
        admin = sign_in(app, "cityadmin")
        text = admin.get("/reports/problems").get_data(as_text=True)
        assert all(f">{n}</a>" in text for n in names) and "华容县" in text and "岳阳县" in text
        text = admin.get(f"/reports/problems?county={other_county.id}").get_data(as_text=True)
        assert f">{names[1]}</a>" in text and f">{names[0]}</a>" not in text
        assert admin.get(f"/reports/problems/{mine.id}").status_code == 200
        assert post(admin, f"/reports/problems/{theirs.id}/assign").status_code == 302
    assert problem_of(db.session.get(Response, theirs.response_id)).status == "assigned"


# ---------------------------------------------------------------------------
# Assign, close, reopen
# ---------------------------------------------------------------------------


def test_assign_close_reopen_over_http_with_audit_rows(app, client, login, setup, clock):
    problem = problem_of(interview(app, setup, FLAGGED))
    pid = problem.id
    login(setup.supervisor.username)
    url = f"/reports/problems/{pid}"

    clock["now"] = at(24, 9, 0)
    assert post(client, f"{url}/assign").status_code == 302
    problem = problem_of(problem.response)
    assert problem.status == "assigned" and problem.assigned_by_id == setup.supervisor.id
    assert problem.assigned_at == utc_naive(at(24, 9, 0))
    page = client.get(url).get_data(as_text=True)
    assert "已交办机构" in page and "已交办" in page and "交办给新墙镇卫生院" in page
    # a second press changes nothing
    again = post(client, f"{url}/assign")
    assert again.status_code == 302 and "无需重复交办" in client.get(url).get_data(as_text=True)
    assert len(audit(pid)) == 1

    # the note is required and at most 1000 characters
    blank = post(client, f"{url}/close", {"note": "   "})
    assert blank.status_code == 400 and "请填写整改情况" in blank.get_data(as_text=True)
    long = post(client, f"{url}/close", {"note": "改" * 1001})
    assert long.status_code == 400 and "不能超过1000字" in long.get_data(as_text=True)
    assert problem_of(problem.response).status == "assigned"

    clock["now"] = at(26, 15, 0)
    assert post(client, f"{url}/close", {"note": "  机构已上门随访并致歉  "}).status_code == 302
    problem = problem_of(problem.response)
    assert problem.status == "closed" and problem.note == "机构已上门随访并致歉"
    assert problem.closed_by_id == setup.supervisor.id and problem.closed_at is not None
    page = client.get(url).get_data(as_text=True)
    assert "已整改" in page and "机构已上门随访并致歉" in page and "重新打开" in page
    assert "已整改" in client.get("/reports/problems").get_data(as_text=True)  # this month's closed still listed

    clock["now"] = at(28, 10, 0)
    assert post(client, f"{url}/reopen", {"reason": "回访居民仍不满意"}).status_code == 302
    problem = problem_of(problem.response)
    assert problem.status == "assigned" and problem.note is None and problem.closed_at is None
    page = client.get(url).get_data(as_text=True)
    assert "原整改情况：机构已上门随访并致歉" in page and "回访居民仍不满意" in page

    rows = audit(pid)
    assert [r.action for r in rows] == ["problem_assign", "problem_close", "problem_reopen"]
    assert all(r.user_id == setup.supervisor.id and r.actor == setup.supervisor.username for r in rows)
    close_detail, reopen_detail = json.loads(rows[1].detail), json.loads(rows[2].detail)
    assert close_detail["note"] == "机构已上门随访并致歉" and close_detail["from"] == "assigned"
    assert reopen_detail["old_note"] == "机构已上门随访并致歉" and reopen_detail["reason"] == "回访居民仍不满意"
    assert reopen_detail["closed_by"] == setup.supervisor.username
    assert [r.at for r in rows] == sorted(r.at for r in rows)
    assert [r.at for r in rows] == [utc_naive(at(24, 9, 0)), utc_naive(at(26, 15, 0)), utc_naive(at(28, 10, 0))]


def test_service_transitions_refuse_what_is_not_allowed(app, setup):
    problem = problem_of(interview(app, setup, FLAGGED))
    user = setup.supervisor
    with pytest.raises(ProblemError, match="只有已整改关闭的问题才能重新打开"):
        reopen_problem(db.session, problem, user, at(24, 9))
    with pytest.raises(ProblemError, match="请填写整改情况"):
        close_problem(db.session, problem, user, at(24, 9), " \n ")
    with pytest.raises(ProblemError, match="不能超过1000字"):
        close_problem(db.session, problem, user, at(24, 9), "x" * 1001)
    # straight from open to closed is allowed (the supervisor settled it), 1000 characters fit
    close_problem(db.session, problem, user, at(24, 9), "x" * 1000)
    assert problem.status == "closed" and len(problem.note) == 1000 and problem.assigned_at is None
    with pytest.raises(ProblemError, match="不能再交办"):
        assign_problem(db.session, problem, user, at(24, 10))
    with pytest.raises(ProblemError, match="已整改关闭"):
        close_problem(db.session, problem, user, at(24, 10), "再关一次")
    reopen_problem(db.session, problem, user, at(25, 9))
    assert problem.status == "assigned" and problem.assigned_by_id == user.id and problem.note is None
    with pytest.raises(ProblemError, match="无需重复交办"):
        assign_problem(db.session, problem, user, at(25, 10))
    db.session.commit()
    assert [r.action for r in audit(problem.id)] == ["problem_close", "problem_reopen"]


def test_a_correction_that_raises_a_new_flag_reopens_a_closed_problem(app, setup):
    response = interview(app, setup, {**GOOD, "wants_contact": "yes"})
    problem = problem_of(response)
    assert problem.flags == "wants_contact"
    close_problem(db.session, problem, setup.supervisor, at(24, 9), "已电话联系居民")
    db.session.commit()
    q = app.extensions["questionnaires"]["v1"]
    case = db.session.get(Case, response.case_id)
    context = context_for(case, app.extensions["vocabulary"])

    def correct(item: str, value: str) -> Problem:
        cleaned, errors = q.clean(item, {"value": value}, context, json.loads(response.answers))
        assert not errors
        committed(edit_answer, response.id, setup.supervisor, cleaned, item=item, reason="回听录音核对",
                    questionnaire=q, context=context, now=at(24, 10))
        db.session.commit()
        return problem_of(response)

    # a correction that raises no new flag leaves the closed problem closed
    problem = correct("effect", "very_helpful")
    assert (problem.status, problem.flags) == ("closed", "wants_contact")
    # one that does opens it again, with both flags and the earlier note kept
    problem = correct("satisfaction", "very_dissatisfied")
    assert problem.status == "open" and set(problem.flags.split(",")) == {"dissatisfied", "wants_contact"}
    assert problem.closed_at is None and problem.closed_by_id is None and problem.note == "已电话联系居民"


def test_a_change_someone_else_made_meanwhile_is_refused(app, setup):
    problem = problem_of(interview(app, setup, FLAGGED))
    # another supervisor assigned it after this one loaded the page
    db.session.execute(update(Problem).where(Problem.id == problem.id).values(status="assigned")
                       .execution_options(synchronize_session=False))
    assert problem.status == "open"  # the stale copy
    with pytest.raises(ProblemError, match="刚刚被其他人更改"):
        assign_problem(db.session, problem, setup.supervisor, at(24, 9))
    assert problem.status == "assigned"  # refreshed
    assert db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action.like("problem_%"))) == 0


# ---------------------------------------------------------------------------
# Roles, scope, CSRF
# ---------------------------------------------------------------------------


def test_callers_get_403(app, setup):
    problem = problem_of(interview(app, setup, FLAGGED))
    with app.app_context():
        caller = sign_in(app, setup.caller.username)
        assert "问题清单" not in caller.get("/calls/").get_data(as_text=True)
        for url in ("/reports/problems", f"/reports/problems/{problem.id}"):
            assert caller.get(url).status_code == 403, url
        for action in ("assign", "close", "reopen"):
            reply = post(caller, f"/reports/problems/{problem.id}/{action}", {"note": "x", "reason": "x"})
            assert reply.status_code == 403, action
    assert problem_of(problem.response).status == "open" and audit(problem.id) == []


def test_another_countys_supervisor_gets_404(app, setup, make_county, make_team, make_user):
    problem = problem_of(interview(app, setup, FLAGGED))
    name = db.session.get(Case, problem.response.case_id).name
    other = drawn_round(make_county("华容县", "430623"), make_team, make_user)
    with app.app_context():
        intruder = sign_in(app, other.supervisor.username)
        for query in ("", "?month=all", f"?county={setup.county.id}&month=all",
                      f"?institution={problem.institution_id}&month=all"):
            listing = intruder.get(f"/reports/problems{query}")
            assert listing.status_code == 200 and name not in listing.get_data(as_text=True), query
        assert intruder.get(f"/reports/problems/{problem.id}").status_code == 404
        assert intruder.get("/reports/problems/999999").status_code == 404
        for action in ("assign", "close", "reopen"):
            reply = post(intruder, f"/reports/problems/{problem.id}/{action}", {"note": "已整改", "reason": "x"})
            assert reply.status_code == 404, action
    assert problem_of(problem.response).status == "open" and audit(problem.id) == []


def test_posts_without_csrf_are_400(app, client, login, setup):
    problem = problem_of(interview(app, setup, FLAGGED))
    login(setup.supervisor.username)
    for action in ("assign", "close", "reopen"):
        reply = post(client, f"/reports/problems/{problem.id}/{action}", {"note": "已整改"}, csrf=False)
        assert reply.status_code == 400, action
    assert client.get(f"/reports/problems/{problem.id}/assign").status_code == 405  # GET changes nothing
    assert problem_of(problem.response).status == "open" and audit(problem.id) == []


# ---------------------------------------------------------------------------
# Counts per institution
# ---------------------------------------------------------------------------


def test_problem_counts(app, setup, make_county, make_team, make_user):
    first, second = setup.teams[0], setup.teams[2]
    a1 = problem_of(interview(app, setup, FLAGGED, team=first))
    a2 = problem_of(interview(app, setup, FLAGGED, team=first))
    a3 = problem_of(interview(app, setup, NO_SERVICE, team=setup.teams[1]))
    b1 = problem_of(interview(app, setup, NO_SERVICE, team=second))
    interview(app, setup, GOOD, team=second)  # no problem
    user = setup.supervisor
    assign_problem(db.session, a2, user, at(24, 9))
    close_problem(db.session, a3, user, at(24, 9), "已整改")
    db.session.commit()
    other = drawn_round(make_county("华容县", "430623"), make_team, make_user)
    o1 = problem_of(interview(app, other, FLAGGED))

    counts = problem_counts(db.session, [setup.round.id])
    assert counts == {
        first.institution_id: {"open": 1, "assigned": 1, "closed": 1},
        second.institution_id: {"open": 1, "assigned": 0, "closed": 0},
    }
    assert a1.institution_id == first.institution_id and b1.institution_id == second.institution_id
    both = problem_counts(db.session, [setup.round.id, other.round.id])
    assert both[o1.institution_id] == {"open": 1, "assigned": 0, "closed": 0} and len(both) == 3
    assert problem_counts(db.session, county_id=setup.county.id, month="2026-11") == counts
    assert problem_counts(db.session, month=["2026-10", "2026-11"]) == both
    assert problem_counts(db.session, county_id=other.county.id) == {o1.institution_id: both[o1.institution_id]}
    assert problem_counts(db.session, [setup.round.id], county_id=other.county.id) == {}
    assert problem_counts(db.session, month="2026-10") == {}
    assert problem_counts(db.session, []) == {}
    assert problem_counts(db.session, [other.round.id]).get(first.institution_id, EMPTY_COUNTS)["open"] == 0
    with pytest.raises(ValueError):
        problem_counts(db.session)
