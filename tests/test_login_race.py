"""The sign-in throttle holds under parallel requests: each attempt is counted, under a lock
of its user name and address, before its password is checked, so of a burst only as many
as the limit get their password checked. Threads with connections of their own fire the
burst through the sign-in page at once, on both databases."""
from __future__ import annotations

import threading
import traceback

import pytest
from sqlalchemy import select

from app.auth import routes as auth_routes
from app.extensions import db
from app.models import LoginAttempt
from tests.helpers import PASSWORD, csrf_token

pytestmark = pytest.mark.slow

LIMIT = 5


def _burst(make_app, monkeypatch, passwords: list[str]) -> tuple[list[int], dict[str, int]]:
    """Sign in as "wang" once per password, all at the same moment, each from its own address
    (only the account's lock is at stake); returns the status codes in order and how many
    passwords were checked, by password."""
    db.session.remove()
    racing = make_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": len(passwords) + 2, "max_overflow": 0})
    checked: dict[str, int] = {}
    lock = threading.Lock()
    real_check = auth_routes._password_matches

    def counting_check(user, password):
        with lock:
            checked[password] = checked.get(password, 0) + 1
        return real_check(user, password)

    monkeypatch.setattr(auth_routes, "_password_matches", counting_check)
    barrier = threading.Barrier(len(passwords))
    codes: list[int | None] = [None] * len(passwords)
    errors: list[str] = []

    def worker(n: int, password: str) -> None:
        try:
            client = racing.test_client()
            ip = {"REMOTE_ADDR": f"10.1.0.{n + 1}"}
            token = csrf_token(client.get("/", environ_base=ip).get_data(as_text=True))
            barrier.wait(timeout=60)
            response = client.post("/", data={"username": "wang", "password": password, "csrf_token": token},
                                   environ_base=ip)
            codes[n] = response.status_code
        except BaseException:
            with lock:
                errors.append(traceback.format_exc())

    threads = [threading.Thread(target=worker, args=(n, p)) for n, p in enumerate(passwords)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    with racing.app_context():
        db.engine.dispose()
    assert not errors, errors[0]
    return codes, checked


def _attempts() -> list[LoginAttempt]:
    db.session.expire_all()
    return list(db.session.scalars(select(LoginAttempt).order_by(LoginAttempt.id)))


def test_of_nineteen_parallel_wrong_passwords_only_five_are_checked(app, make_user, monkeypatch, make_app):
    make_user("wang", "admin")

    codes, checked = _burst(make_app, monkeypatch, [f"wrong-password-{n}" for n in range(19)])

    assert sum(checked.values()) == LIMIT
    assert sorted(codes) == [200] * LIMIT + [429] * (19 - LIMIT)
    assert [(a.username, a.success) for a in _attempts()] == [("wang", False)] * 19


def test_a_right_password_in_a_burst_gets_in_only_before_the_limit(app, make_user, monkeypatch, make_app):
    make_user("wang", "admin")
    passwords = [f"wrong-password-{n}" for n in range(9)] + [PASSWORD]

    codes, checked = _burst(make_app, monkeypatch, passwords)

    rows = _attempts()
    assert len(rows) == 10
    successes = [n for n, row in enumerate(rows) if row.success]
    if codes[-1] == 302:  # signed in: its attempt was counted while fewer than five had failed
        assert len(successes) == 1 and successes[0] < LIMIT
        assert checked[PASSWORD] == 1
    else:  # refused unchecked: five attempts had been counted before it
        assert codes[-1] == 429 and successes == [] and PASSWORD not in checked
        assert sum(checked.values()) == LIMIT
