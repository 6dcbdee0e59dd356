"""Least privilege: a caller sees the cases, not the roster; a supervisor sees their county's
roster masked (last four of the ID, the age, never the birth date); a full phone shows only on
the case screen of the caller who holds the case, and each opening is audit-logged."""
from __future__ import annotations

import json
import re
from datetime import timedelta

from sqlalchemy import select

from app.extensions import db
from app.core.clock import utc_naive
from app.models import AuditLog, Case, Resident
from tests.calls_support import at
from tests.helpers import csrf_token
from tests.calls_support import clock, setup  # noqa: F401  (fixtures)


def text(response) -> str:
    return response.get_data(as_text=True)


def phone_views() -> list[AuditLog]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditLog).where(AuditLog.action == "view_phone").order_by(AuditLog.id)))


def test_a_caller_reads_no_roster_page(client, login, setup):
    team = setup.teams[0]
    resident = db.session.scalar(select(Resident).where(Resident.team_id == team.id))
    login(setup.caller.username)

    home = text(client.get("/calls/"))
    assert "机构与团队" not in home
    counties = text(client.get("/org/"))  # counts only, and no way further
    assert resident.name not in counties and f"/org/counties/{setup.county.id}" not in counties
    for url in (f"/org/counties/{setup.county.id}", f"/org/institutions/{team.institution_id}",
                f"/org/teams/{team.id}", f"/org/teams/{team.id}?q={resident.phone[-4:]}"):
        reply = client.get(url)
        assert reply.status_code == 403, url
        assert resident.name not in text(reply) and resident.id_masked not in text(reply)


def test_a_supervisor_sees_the_roster_masked_with_birth_years(client, login, setup):
    team = setup.teams[0]
    login(setup.supervisor.username)
    assert "机构与团队" in text(client.get("/calls/"))

    page = text(client.get(f"/org/teams/{team.id}"))

    residents = db.session.scalars(select(Resident).where(Resident.team_id == team.id)).all()
    assert "<th>出生年份</th>" in page and "出生日期" not in page and "年龄" not in page
    for r in residents:
        assert r.name in page and r.id_masked in page and r.id_masked.startswith("*" * 14)
        assert f"<td>{r.birth_date.year}</td>" in page
        for shown in (r.birth_date.isoformat(), r.birth_date.strftime("%Y%m%d"),
                      f"{r.birth_date.year}年{r.birth_date.month}月{r.birth_date.day}日"):
            assert shown not in page
        assert r.phone not in page


def test_the_roster_reads_the_same_every_day_of_the_year(client, login, setup, monkeypatch):
    """An age computed as of today would tick up on the birthday: watched day by day, it gives
    the birth date, which with the region and the last four is the ID number."""
    team = setup.teams[0]
    login(setup.supervisor.username)

    def roster_on(day: int, month: int) -> str:
        moment = at(day, 9, 30).replace(month=month)
        monkeypatch.setattr("app.filters.clock_now", lambda: moment, raising=False)
        page = text(client.get(f"/org/teams/{team.id}"))
        return page[page.index("<h2>签约居民</h2>"):]

    assert roster_on(2, 1) == roster_on(30, 12)


def test_the_full_phone_is_shown_to_the_holder_only_and_each_opening_is_audited(app, client, login, setup,
                                                                                clock):
    login(setup.caller.username)
    token = csrf_token(text(client.get("/calls/")))
    case_id = int(client.post("/calls/next", data={"csrf_token": token}).headers["Location"].rsplit("/", 1)[1])
    case = db.session.get(Case, case_id)
    phone = case.phone

    screen = text(client.get(f"/calls/case/{case_id}"))
    assert f'href="tel:{phone}"' in screen
    text(client.get(f"/calls/case/{case_id}"))  # a refresh of the same attempt: no second row
    [row] = phone_views()
    assert (row.user_id, row.target) == (setup.caller.id, f"case:{case_id}")
    assert json.loads(row.detail) == {"round": setup.round.id, "attempt": 1}

    # another caller of the county sees the case masked, and nothing is logged for them
    with app.app_context():
        other = app.test_client()
        page = text(other.get("/"))
        other.post("/", data={"username": setup.other.username, "password": "test-password-1",
                              "csrf_token": csrf_token(page)})
        seen = text(other.get(f"/calls/case/{case_id}"))
        assert phone not in seen and f"{phone[:3]}****{phone[-4:]}" in seen
    assert len(phone_views()) == 1

    # a new attempt on the same case is a new opening
    client.post(f"/calls/case/{case_id}/attempt", data={"outcome": "no_answer", "number": "1", "csrf_token": token,
                                                        "then": "home"})
    clock["now"] += timedelta(hours=3)
    db.session.execute(Case.__table__.update().where(Case.id == case_id)  # claimed again
                       .values(leased_by_id=setup.caller.id,
                               lease_expires_at=utc_naive(clock["now"] + timedelta(minutes=20))))
    db.session.commit()
    assert f'href="tel:{phone}"' in text(client.get(f"/calls/case/{case_id}"))
    assert [json.loads(r.detail)["attempt"] for r in phone_views()] == [1, 2]

    # once the lease has run out the caller no longer holds the case: masked, not logged
    clock["now"] += timedelta(hours=1)
    expired = text(client.get(f"/calls/case/{case_id}"))
    assert phone not in expired and re.search(r"tel:", expired) is None
    assert len(phone_views()) == 2


def test_call_list_downloads_are_audited(client, login, setup):
    login(setup.supervisor.username)
    for fmt in ("xlsx", "csv"):
        with client.get(f"/draws/{setup.round.id}/call-list.{fmt}") as reply:
            assert reply.status_code == 200 and reply.get_data()
    db.session.rollback()
    actions = db.session.scalars(select(AuditLog.action).where(AuditLog.action.like("export.call_list%"))).all()
    assert actions == ["export.call_list", "export.call_list"]


def switch(client, login, username: str) -> None:
    """Sign out, then in as someone else."""
    client.post("/logout", data={"csrf_token": csrf_token(text(client.get("/calls/")))})
    login(username)


def _close(setup) -> None:
    from app.scheduler.month_end import close_round
    from tests.calls_support import closing_args, committed
    assert committed(close_round, setup.round.id, now=at(30, 23, 59), actor="test", **closing_args())


def test_a_caller_opens_no_reserve_case_and_no_case_of_a_closed_round_they_did_not_work(client, login, setup):
    login(setup.caller.username)
    token = csrf_token(text(client.get("/calls/")))
    worked = int(client.post("/calls/next", data={"csrf_token": token}).headers["Location"].rsplit("/", 1)[1])
    client.post(f"/calls/case/{worked}/attempt", data={"outcome": "no_answer", "number": "1", "csrf_token": token})
    reserve = db.session.scalar(select(Case).where(Case.round_id == setup.round.id, Case.status == "reserve"))
    untouched = db.session.scalar(select(Case).where(Case.round_id == setup.round.id, Case.status == "queued",
                                                     Case.id != worked))
    assert reserve is not None and untouched is not None
    reserve_id, untouched_id, untouched_name = reserve.id, untouched.id, untouched.name

    # the open round: its queue, but never a backup not yet activated
    assert client.get(f"/calls/case/{untouched_id}").status_code == 200
    refused = client.get(f"/calls/case/{reserve_id}")
    assert refused.status_code == 404 and reserve.name not in text(refused)
    # the supervisor sees every case, reserve included
    switch(client, login, setup.supervisor.username)
    assert client.get(f"/calls/case/{reserve_id}").status_code == 200

    _close(setup)
    assert client.get(f"/calls/case/{untouched_id}").status_code == 200
    switch(client, login, setup.caller.username)
    for case_id in (reserve_id, untouched_id):
        reply = client.get(f"/calls/case/{case_id}")
        assert reply.status_code == 404 and untouched_name not in text(reply), case_id
    # the case they dialled stays theirs to read
    assert client.get(f"/calls/case/{worked}").status_code == 200
    # and the other caller, who never dialled it, cannot
    switch(client, login, setup.other.username)
    assert client.get(f"/calls/case/{worked}").status_code == 404


def test_a_caller_lists_only_the_open_round_of_their_county(client, login, setup):
    name = db.session.scalar(select(Case.name).where(Case.round_id == setup.round.id, Case.status == "queued"))
    login(setup.caller.username)
    assert name in text(client.get("/calls/cases"))
    assert name in text(client.get(f"/calls/cases?round={setup.round.id}"))
    backup = db.session.scalar(select(Case.name).where(Case.round_id == setup.round.id, Case.status == "reserve"))
    page = text(client.get("/calls/cases?status=reserve"))
    assert backup not in page and 'value="reserve"' not in page

    _close(setup)

    for url in (f"/calls/cases?round={setup.round.id}", f"/calls/cases?round={setup.round.id}&status=reserve",
                "/calls/cases"):
        reply = client.get(url)
        assert reply.status_code in (200, 404) and name not in text(reply), url
    assert client.get(f"/calls/cases?round={setup.round.id}").status_code == 404
    switch(client, login, setup.supervisor.username)
    assert name in text(client.get(f"/calls/cases?round={setup.round.id}"))


def test_a_roster_phone_search_is_limited_and_logged_like_the_case_lists(app, client, login, setup, monkeypatch):
    """The team roster's last-four search is a phone search like the case list's: audited with
    the query masked, and counted against the same per-user limit (one audit action)."""
    monkeypatch.setitem(app.config, "CASE_SEARCH_MAX_PER_10_MIN", 3)
    team = setup.teams[0]
    resident = db.session.scalars(select(Resident).where(Resident.team_id == team.id).order_by(Resident.id)).first()
    resident.name = "王秀英"  # the seeded names (居民3424) hold digits a name search would find
    db.session.commit()
    login(setup.supervisor.username)
    for _ in range(3):
        assert resident.name in text(client.get(f"/org/teams/{team.id}", query_string={"q": resident.phone[-4:]}))

    refused = client.get(f"/org/teams/{team.id}", query_string={"q": resident.phone[-4:]})

    assert refused.status_code == 429 and "电话号码查询过于频繁" in text(refused)
    assert resident.name not in text(refused)
    db.session.rollback()
    rows = db.session.scalars(select(AuditLog).where(AuditLog.action == "case_search").order_by(AuditLog.id)).all()
    assert [r.target for r in rows] == [f"team:{team.id}"] * 4
    assert all(json.loads(r.detail)["query"] == resident.phone[-4:] for r in rows)
    assert [json.loads(r.detail)["refused"] for r in rows] == [False, False, False, True]
    # names are still searched, and are not counted
    assert resident.name in text(client.get(f"/org/teams/{team.id}", query_string={"q": resident.name}))
