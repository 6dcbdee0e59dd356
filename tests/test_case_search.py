"""The case list's phone search is no oracle: the exact number or exactly the last four digits
match, any other run of digits matches nothing, every phone search is audit-logged with the
query masked, and a user gets at most CASE_SEARCH_MAX_PER_10_MIN of them in ten minutes."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditLog, Case
from tests.calls_support import clock, setup  # noqa: F401  (fixtures)



def text(response) -> str:
    return response.get_data(as_text=True)


def a_case(setup) -> Case:
    return db.session.scalar(select(Case).where(Case.round_id == setup.round.id, Case.kind == "primary")
                             .order_by(Case.id))


def searches() -> list[AuditLog]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditLog).where(AuditLog.action == "case_search").order_by(AuditLog.id)))


def test_only_the_exact_number_or_the_last_four_digits_find_a_phone(client, login, setup):
    case = a_case(setup)
    login(setup.caller.username)

    def found(q: str) -> bool:
        reply = client.get("/calls/cases", query_string={"q": q})
        assert reply.status_code == 200
        return case.name in text(reply)

    assert found(case.phone[-4:])  # the four digits every list shows
    assert found(case.phone)
    assert found(f"{case.phone[:3]} {case.phone[3:7]}-{case.phone[7:]}")  # as people type it
    for n in (5, 6, 7, 8, 10):  # a longer suffix would confirm the masked digits
        assert not found(case.phone[-n:]), n
    assert not found(case.phone[:7])  # nor a prefix
    assert found(case.name)  # names as before

    rows = searches()
    assert len(rows) == 9  # each phone search, none for the name
    for row in rows:
        assert row.user_id == setup.caller.id and row.target == f"round:{setup.round.id}"
        assert case.phone not in row.detail and case.phone[-8:] not in row.detail
    assert json.loads(rows[0].detail) == {"query": case.phone[-4:], "refused": False}
    assert json.loads(rows[1].detail)["query"] == "*******" + case.phone[-4:]


def test_phone_searches_are_limited_per_user_with_a_chinese_message(app, client, login, setup, clock, monkeypatch):
    monkeypatch.setitem(app.config, "CASE_SEARCH_MAX_PER_10_MIN", 3)
    case = a_case(setup)
    login(setup.caller.username)
    for _ in range(3):
        assert case.name in text(client.get("/calls/cases", query_string={"q": case.phone[-4:]}))

    refused = client.get("/calls/cases", query_string={"q": case.phone[-4:]})

    assert refused.status_code == 429
    page = text(refused)
    assert "电话号码查询过于频繁" in page and "10 分钟最多 3 次" in page
    assert case.name not in page
    # names are still searched
    assert case.name in text(client.get("/calls/cases", query_string={"q": case.name}))
    assert [json.loads(r.detail)["refused"] for r in searches()] == [False, False, False, True]

    clock["now"] += timedelta(minutes=11)  # the window has passed
    assert case.name in text(client.get("/calls/cases", query_string={"q": case.phone}))


@pytest.mark.slow
def test_parallel_phone_searches_never_pass_the_limit(app, client, login, setup, make_app):
    """Forty phone searches of one user at the same moment, limit thirty: each is counted under
    the user's lock before the next one counts, so exactly thirty are run (and logged as such)."""
    import threading
    import traceback

    searches_at_once, limit = 40, 30
    last_four = a_case(setup).phone[-4:]
    login(setup.caller.username)
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    db.session.remove()
    racing = make_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": searches_at_once + 2, "max_overflow": 0},
                      CASE_SEARCH_MAX_PER_10_MIN=limit)
    barrier = threading.Barrier(searches_at_once)
    codes: list[int | None] = [None] * searches_at_once
    errors: list[str] = []

    def worker(n: int) -> None:
        try:
            browser = racing.test_client()
            browser.set_cookie(racing.config["SESSION_COOKIE_NAME"], cookie)
            barrier.wait(timeout=60)
            codes[n] = browser.get("/calls/cases", query_string={"q": last_four}).status_code
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(searches_at_once)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    with racing.app_context():
        db.engine.dispose()

    assert not errors, errors[0]
    assert sorted(codes) == [200] * limit + [429] * (searches_at_once - limit)
    rows = searches()
    assert len(rows) == searches_at_once
    assert sum(not json.loads(r.detail)["refused"] for r in rows) == limit
