"""Sign-in throttling, idle session expiry, the sign-in redirect and the admin's user pages."""
from __future__ import annotations

import html as html_lib
import json
import re
from datetime import datetime, timedelta

import pytest
from flask import g
from flask import session as flask_session
from flask.testing import FlaskClient
from itsdangerous.timed import TimestampSigner
from sqlalchemy import func, select

from app.auth import routes as auth_routes
from app.auth.services import UserError, update_user
from app.auth.sessions import open_session
from app.auth.throttle import (
    ThrottleSettings,
    account_failures,
    account_locked,
    address_blocked,
    address_wait,
    is_throttled,
    normalize_username,
    record_attempt,
)
from app.core.clock import utcnow
from app.extensions import db
from app.models import AuditLog, LoginAttempt, User
from tests.helpers import PASSWORD, csrf_token

T0 = datetime(2026, 11, 23, 2, 0, 0)  # naive UTC, 10:00 in Asia/Shanghai
SETTINGS = ThrottleSettings(max_failures_per_account=5, max_failures_per_address=20, lock_minutes=15)
LOCKED = "登录失败次数过多，请15分钟后再试。"
FAILED = "用户名或密码错误。"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


class FreshRequestClient(FlaskClient):
    """A test client whose every request starts with an empty ``g``.

    The ``app`` fixture keeps one app context open for the whole test, and Flask reuses it for
    each request, so ``g`` (Flask-Login's cached ``current_user``, Flask-WTF's cached CSRF token)
    would survive from one request to the next. In production each request has its own context;
    signing out, session expiry and a second user need that to be tested for real.
    """

    def open(self, *args, **kwargs):
        for key in list(g):
            g.pop(key, None)
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app):
    return FreshRequestClient(app, app.response_class, use_cookies=True)


@pytest.fixture
def new_client(app):
    return lambda: FreshRequestClient(app, app.response_class, use_cookies=True)


@pytest.fixture
def clock(monkeypatch):
    """Pins the time the sign-in view uses; ``clock.now`` can be moved."""

    class Clock:
        now = T0

    monkeypatch.setattr(auth_routes, "utcnow", lambda: Clock.now)
    return Clock


def text(response) -> str:
    return response.get_data(as_text=True)


def flashes(page: str) -> list[str]:
    return [html_lib.unescape(m) for m in re.findall(r'<div class="flash flash-\w+"[^>]*>([^<]*)</div>', page)]


def form_errors(page: str) -> list[str]:
    return [m for m in flashes(page) if "：" in m]


def sign_in(client, username: str, password: str = PASSWORD, ip: str = "10.0.0.1"):
    token = csrf_token(text(client.get("/", environ_base={"REMOTE_ADDR": ip})))
    return client.post(
        "/", data={"username": username, "password": password, "csrf_token": token}, environ_base={"REMOTE_ADDR": ip}
    )


def signed_in(client) -> bool:
    return client.get("/org/").status_code == 200


def post_form(client, url: str, data: dict, token: str | None = "fetch"):
    if token == "fetch":
        token = csrf_token(text(client.get(url)))
    if token is not None:
        data = {**data, "csrf_token": token}
    return client.post(url, data=data)


def attempts() -> list[tuple[str, str, bool]]:
    db.session.expire_all()
    rows = db.session.scalars(select(LoginAttempt).order_by(LoginAttempt.id))
    return [(a.username, a.ip, a.success) for a in rows]


SIGN_IN_ACTIONS = ("login", "login_failed", "logout", "logout_all")


def audit_rows(action: str | None = None) -> list[AuditLog]:
    """The audit rows of ``action``; without one, every row but those of signing in and out."""
    db.session.expire_all()
    stmt = select(AuditLog).order_by(AuditLog.id)
    if action:
        stmt = stmt.where(AuditLog.action == action)
    else:
        stmt = stmt.where(AuditLog.action.not_in(SIGN_IN_ACTIONS))
    return list(db.session.scalars(stmt))


def user_named(username: str) -> User | None:
    db.session.expire_all()
    return db.session.scalar(select(User).where(User.username == username))


def user_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(User))


# ---------------------------------------------------------------------------
# Throttling: the service, with the clock pinned
# ---------------------------------------------------------------------------


def fail(name: str, at: datetime, ip: str = "10.0.0.1") -> None:
    record_attempt(db.session, name, ip, False, now=at)


def test_account_locks_at_five_failures_within_the_window(app):
    for minute in range(4):
        fail("wang", T0 + timedelta(minutes=minute))
    now = T0 + timedelta(minutes=5)
    assert account_failures(db.session, "wang", now=now, settings=SETTINGS) == 4
    assert not account_locked(db.session, "wang", now=now, settings=SETTINGS)

    fail("wang", T0 + timedelta(minutes=4))

    assert account_locked(db.session, "wang", now=now, settings=SETTINGS)
    assert is_throttled(db.session, "wang", "10.9.9.9", now=now, settings=SETTINGS)  # from any address
    assert not account_locked(db.session, "li", now=now, settings=SETTINGS)  # other names are not
    # the first failure leaves the window 15 minutes after it happened
    assert account_locked(db.session, "wang", now=T0 + timedelta(minutes=14, seconds=59), settings=SETTINGS)
    assert not account_locked(db.session, "wang", now=T0 + timedelta(minutes=15, seconds=1), settings=SETTINGS)


def test_failures_admitted_after_a_success_count_whatever_their_clock_time(app):
    """Each attempt's time is taken before it waits for the name's lock: failures admitted
    after a success may carry an earlier time, and still count (admission order is the id)."""
    record_attempt(db.session, "wang", "10.0.0.1", True, now=T0 + timedelta(seconds=2))
    for _ in range(5):
        fail("wang", T0 + timedelta(seconds=1))
    assert account_locked(db.session, "wang", now=T0 + timedelta(minutes=1), settings=SETTINGS)


def test_a_success_resets_the_account_counter(app):
    for minute in range(4):
        fail("wang", T0 + timedelta(minutes=minute))
    record_attempt(db.session, "wang", "10.0.0.1", True, now=T0 + timedelta(minutes=4))
    for minute in range(5, 9):
        fail("wang", T0 + timedelta(minutes=minute))

    now = T0 + timedelta(minutes=10)
    assert account_failures(db.session, "wang", now=now, settings=SETTINGS) == 4
    assert not account_locked(db.session, "wang", now=now, settings=SETTINGS)
    fail("wang", T0 + timedelta(minutes=9))
    assert account_locked(db.session, "wang", now=now, settings=SETTINGS)


def test_an_address_is_slowed_past_twenty_failures_never_locked(app):
    for i in range(19):
        fail(f"guess{i}", T0 + timedelta(seconds=i), ip="203.0.113.7")
    now = T0 + timedelta(seconds=19)
    assert address_wait(db.session, "203.0.113.7", now=now, settings=SETTINGS) == 0
    fail("guess19", now, ip="203.0.113.7")
    # the 20th failure: one second after it; then 2, 4, 8 … seconds, never more than a minute
    assert address_wait(db.session, "203.0.113.7", now=now, settings=SETTINGS) == 1
    assert address_blocked(db.session, "203.0.113.7", now=now, settings=SETTINGS)
    assert not address_blocked(db.session, "203.0.113.7", now=now + timedelta(seconds=1), settings=SETTINGS)
    assert not address_blocked(db.session, "203.0.113.8", now=now, settings=SETTINGS)
    assert is_throttled(db.session, "anyone", "203.0.113.7", now=now, settings=SETTINGS)
    assert not is_throttled(db.session, "anyone", "203.0.113.8", now=now, settings=SETTINGS)
    fail("guess20", now, ip="203.0.113.7")
    assert address_wait(db.session, "203.0.113.7", now=now, settings=SETTINGS) == 2
    for i in range(21, 40):
        fail(f"guess{i}", now, ip="203.0.113.7")
    assert address_wait(db.session, "203.0.113.7", now=now, settings=SETTINGS) == 60
    assert not address_blocked(db.session, "203.0.113.7", now=now + timedelta(seconds=60), settings=SETTINGS)


def test_names_are_stripped_and_cut_to_fifty_and_old_rows_pruned(app):
    assert normalize_username("  wang  ") == "wang"
    assert normalize_username("名" * 60) == "名" * 50
    record_attempt(db.session, "old", "10.0.0.1", False, now=T0 - timedelta(days=2))
    record_attempt(db.session, "  " + "x" * 80, None, False, now=T0)
    db.session.commit()
    assert attempts() == [("x" * 50, "unknown", False)]


def test_settings_come_from_the_config(app):
    settings = ThrottleSettings.from_config(app.config)
    assert (settings.max_failures_per_account, settings.max_failures_per_address, settings.lock_minutes) == (5, 20, 15)
    assert settings.window == timedelta(minutes=15)


# ---------------------------------------------------------------------------
# Throttling: through the sign-in page
# ---------------------------------------------------------------------------


def test_five_failures_lock_the_account_and_even_the_right_password_is_refused(client, make_user, clock):
    make_user("wang", "admin")
    for _ in range(5):
        response = sign_in(client, "wang", "wrong-password")
        assert response.status_code == 200 and flashes(text(response)) == [FAILED]

    response = sign_in(client, "wang", PASSWORD)

    assert response.status_code == 429
    assert flashes(text(response)) == [LOCKED]
    assert not signed_in(client)
    assert attempts() == [("wang", "10.0.0.1", False)] * 6
    # another address does not help: the account itself is locked
    assert sign_in(client, "wang", PASSWORD, ip="10.0.0.99").status_code == 429


def test_the_lock_lifts_once_the_failures_leave_the_window(client, make_user, clock):
    make_user("wang", "admin")
    for _ in range(5):
        sign_in(client, "wang", "wrong-password")
    clock.now = T0 + timedelta(minutes=14, seconds=59)
    assert sign_in(client, "wang", PASSWORD).status_code == 429

    clock.now = T0 + timedelta(minutes=15, seconds=1)
    response = sign_in(client, "wang", PASSWORD)

    assert response.status_code == 302
    assert signed_in(client)
    assert user_named("wang").last_login_at == clock.now
    assert attempts()[-1] == ("wang", "10.0.0.1", True)


def test_refused_attempts_count_so_whoever_keeps_trying_stays_locked(client, make_user, clock):
    make_user("wang", "admin")
    for _ in range(5):
        sign_in(client, "wang", "wrong-password")
    for minute in range(1, 6):
        clock.now = T0 + timedelta(minutes=minute)
        assert sign_in(client, "wang", PASSWORD).status_code == 429

    clock.now = T0 + timedelta(minutes=16)  # the first five have left the window, the refused ones not
    assert sign_in(client, "wang", PASSWORD).status_code == 429
    assert len(attempts()) == 11

    clock.now = T0 + timedelta(minutes=21)  # only the one at minute 16 is left
    assert sign_in(client, "wang", PASSWORD).status_code == 302


def test_a_successful_sign_in_resets_the_count(client, make_user, clock):
    make_user("wang", "admin")
    for _ in range(4):
        sign_in(client, "wang", "wrong-password")
    assert sign_in(client, "wang", PASSWORD).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_token(text(client.get("/org/")))})
    assert not signed_in(client)
    for _ in range(4):
        assert sign_in(client, "wang", "wrong-password").status_code == 200

    assert sign_in(client, "wang", PASSWORD).status_code == 302


def test_many_names_from_one_address_slow_the_address_down(client, make_user, clock):
    make_user("wang", "admin")
    for i in range(20):
        response = sign_in(client, f"user{i}", "wrong-password", ip="203.0.113.7")
        assert response.status_code == 200, i

    slowed = sign_in(client, "wang", PASSWORD, ip="203.0.113.7")
    assert slowed.status_code == 429 and flashes(text(slowed)) == ["登录尝试过于频繁，请1秒后再试。"]
    assert not signed_in(client)
    # refused attempts count: the wait doubles with each (2 s after the 21st, 4 s after the 22nd)
    clock.now = T0 + timedelta(seconds=1)
    assert flashes(text(sign_in(client, "wang", PASSWORD, ip="203.0.113.7"))) == ["登录尝试过于频繁，请1秒后再试。"]
    clock.now = T0 + timedelta(seconds=4)
    assert flashes(text(sign_in(client, "wang", PASSWORD, ip="203.0.113.7"))) == ["登录尝试过于频繁，请1秒后再试。"]
    clock.now = T0 + timedelta(seconds=12)
    assert sign_in(client, "wang", PASSWORD, ip="203.0.113.7").status_code == 302
    assert signed_in(client)

    elsewhere = new_client_for(client)
    assert sign_in(elsewhere, "wang", PASSWORD, ip="198.51.100.1").status_code == 302


def new_client_for(client):
    return FreshRequestClient(client.application, client.application.response_class, use_cookies=True)


def test_unknown_names_look_like_wrong_passwords_and_are_locked_too(client, make_user, clock):
    make_user("wang", "admin")
    known = sign_in(client, "wang", "wrong-password")
    unknown = sign_in(client, "ghost", "wrong-password")
    assert (known.status_code, flashes(text(known))) == (unknown.status_code, flashes(text(unknown))) == (200, [FAILED])

    for _ in range(4):
        sign_in(client, "ghost", "wrong-password", ip="10.0.0.2")
    locked = sign_in(client, "ghost", "wrong-password", ip="10.0.0.3")

    assert (locked.status_code, flashes(text(locked))) == (429, [LOCKED])
    assert [a for a in attempts() if a[0] == "ghost"] == [
        ("ghost", "10.0.0.1", False), *[("ghost", "10.0.0.2", False)] * 4, ("ghost", "10.0.0.3", False)
    ]
    assert sign_in(client, "wang", PASSWORD).status_code == 302  # the real account is not affected


def test_names_are_recorded_as_typed_but_stripped(client, make_user, clock):
    make_user("wang", "admin")
    assert sign_in(client, "  wang ", PASSWORD).status_code == 302
    assert attempts() == [("wang", "10.0.0.1", True)]


# ---------------------------------------------------------------------------
# Session: idle expiry, sign-in redirect
# ---------------------------------------------------------------------------


def test_the_session_expires_after_thirty_idle_minutes(app, client, make_user, monkeypatch):
    """Activity keeps the session alive; 30 minutes without a request end it."""
    fake = {"now": 1_800_000_000}
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: fake["now"])
    make_user("wang", "admin")
    assert app.permanent_session_lifetime == timedelta(minutes=30)

    assert sign_in(client, "wang").status_code == 302
    with client.session_transaction() as session:
        assert session.permanent
    cookie = client.get_cookie("session")
    assert cookie.expires is not None  # a cookie that lives on (refreshed), not a browser-session one
    assert "remember_token" not in {c.key for c in client._cookies.values()}

    for _ in range(3):  # each request refreshes the cookie: 87 minutes of work, never 30 idle
        fake["now"] += 29 * 60
        assert client.get("/org/").status_code == 200

    fake["now"] += 31 * 60
    response = client.get("/org/")

    assert response.status_code == 302 and response.headers["Location"].startswith("/?next=")
    assert not signed_in(client)


def test_sign_in_sends_each_role_to_its_work(app, new_client, make_user, make_county):
    county = make_county("岳阳县", "430621")
    make_user("city", "admin")
    make_user("sup", "supervisor", county)
    make_user("caller", "caller", county)

    # the city overview, the county's progress board, the call queue
    for username, home in (("city", "/overview/"), ("sup", "/calls/board"), ("caller", "/calls/")):
        c = new_client()
        response = sign_in(c, username)
        assert (response.status_code, response.headers["Location"]) == (302, home), username
        assert c.get("/").headers["Location"] == home  # the front page, signed in
    # a safe ?next= still wins
    c = new_client()
    token = csrf_token(text(c.get("/")))
    response = c.post("/?next=/admin/users", data={"username": "city", "password": PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/admin/users"


# ---------------------------------------------------------------------------
# Users page: access
# ---------------------------------------------------------------------------


@pytest.fixture
def county(make_county):
    return make_county("岳阳县", "430621")


@pytest.fixture
def admin(client, make_user, login):
    user = make_user("cityadmin", "admin")
    login("cityadmin")
    return user


@pytest.mark.parametrize("role", ["supervisor", "caller"])
def test_county_staff_cannot_manage_users(client, make_user, login, county, role):
    make_user("staff", role, county)
    login("staff")
    for url in ("/admin/users", "/admin/users/new", "/admin/users/1/edit"):
        assert client.get(url).status_code == 403, url
    response = post_form(client, "/admin/users/new", {"username": "x", "role": "admin",
                                                      "password": "long-enough-1", "confirm": "long-enough-1"},
                         token=csrf_token(text(client.get("/org/"))))
    assert response.status_code == 403
    assert user_count() == 1
    assert "用户管理" not in text(client.get("/org/"))


def test_visitors_are_sent_to_sign_in(client):
    response = client.get("/admin/users")
    assert response.status_code == 302 and response.headers["Location"].startswith("/?next=")


def test_the_list_shows_users_and_filters_by_county_and_role(client, admin, make_user, make_county, county):
    other = make_county("华容县", "430623")
    make_user("yy_caller", "caller", county)
    make_user("yy_sup", "supervisor", county)
    make_user("hr_caller", "caller", other)
    admin.last_login_at = datetime(2026, 11, 23, 1, 5)  # 09:05 in Asia/Shanghai
    db.session.commit()
    user_named("hr_caller").is_enabled = False
    db.session.commit()

    page = text(client.get("/admin/users"))
    assert "用户管理" in page and 'href="/admin/users"' in page  # the nav link
    rows = re.findall(r"<tr[^>]*>\s*<td>([^<]+)</td>\s*<td>([^<]+)</td>\s*<td>([^<]+)</td>\s*<td>([^<]+)</td>"
                      r"\s*<td>([^<]+)</td>\s*<td><span[^>]*>([^<]+)</span></td>\s*<td>([^<]+)</td>", page)
    assert {r[0]: r[1:] for r in rows} == {
        "cityadmin": ("—", "市级管理员", "—", "—", "启用", "2026-11-23 09:05"),
        "yy_caller": ("—", "调查员", "岳阳县", "—", "启用", "从未登录"),
        "yy_sup": ("—", "县级督导", "岳阳县", "—", "启用", "从未登录"),
        "hr_caller": ("—", "调查员", "华容县", "—", "停用", "从未登录"),
    }

    def names(query: str) -> set[str]:
        return set(re.findall(r"<tr[^>]*>\s*<td>([^<]+)</td>", text(client.get("/admin/users" + query))))

    assert names(f"?county={county.id}") == {"yy_caller", "yy_sup"}
    assert names("?role=caller") == {"yy_caller", "hr_caller"}
    assert names(f"?county={county.id}&role=caller") == {"yy_caller"}
    assert names("?county=none") == {"cityadmin"}
    assert names("?county=abc&role=boss") == {"cityadmin", "yy_caller", "yy_sup", "hr_caller"}  # ignored


# ---------------------------------------------------------------------------
# Users page: create
# ---------------------------------------------------------------------------


def new_user(client, **fields):
    data = {"username": "wang", "real_name": "王五", "role": "caller", "county": "", "password": "caller-pass-1",
            "confirm": "caller-pass-1"}
    data.update(fields)
    return post_form(client, "/admin/users/new", data)


def test_admin_creates_a_caller_who_can_then_sign_in(client, admin, county, new_client):
    page = text(client.get("/admin/users/new"))
    assert "新建用户" in page and "岳阳县" in page

    response = new_user(client, username=" wang ", county=str(county.id))

    assert response.status_code == 302 and response.headers["Location"] == "/admin/users"
    listing = text(client.get("/admin/users"))
    assert "已创建用户 wang（王五，调查员），首次登录时须修改密码。" in flashes(listing) and "wang" in listing
    user = user_named("wang")
    assert (user.role, user.county_id, user.is_enabled) == ("caller", county.id, True)
    assert (user.real_name, user.must_change_password) == ("王五", True)
    [row] = audit_rows("user_create")
    assert (row.user_id, row.actor, row.target) == (admin.id, "cityadmin", f"user:{user.id} wang")
    assert json.loads(row.detail) == {"role": "caller", "county": "岳阳县", "enabled": True, "real_name": "王五",
                                      "phone": None, "must_change_password": True}
    assert "caller-pass-1" not in row.detail

    caller = new_client()
    first = sign_in(caller, "wang", "caller-pass-1")
    assert first.status_code == 302 and first.headers["Location"] == "/account/password"  # a temporary password
    assert caller.get("/org/").headers["Location"] == "/account/password"


def test_a_county_chosen_for_an_admin_is_ignored(client, admin, county):
    assert new_user(client, username="city2", role="admin", county=str(county.id)).status_code == 302
    assert user_named("city2").county_id is None
    assert json.loads(audit_rows("user_create")[0].detail)["county"] is None


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"password": "short", "confirm": "short"}, "初始密码：密码至少10位，不超过200个字符"),
        ({"confirm": "something-else"}, "确认密码：两次输入的密码不一致"),
        ({"role": "supervisor", "county": ""}, "所属县区：县级督导和调查员必须指定所属县区"),
        ({"role": "caller", "county": "999999"}, "所属县区：请选择有效的县区"),
        ({"role": "boss"}, "角色：请选择有效的角色"),
        ({"username": "  "}, "用户名：请输入用户名"),
        ({"username": "wang li"}, "用户名：用户名不能包含空格或换行"),
        ({"username": "x" * 51}, "用户名：用户名不超过50个字符"),
    ],
    ids=["short-password", "confirm-differs", "supervisor-without-county", "unknown-county", "unknown-role",
         "blank-name", "name-with-space", "name-too-long"],
)
def test_invalid_input_is_shown_in_chinese(client, admin, county, fields, error):
    response = new_user(client, **{"county": str(county.id), **fields})

    assert response.status_code == 400
    page = text(response)
    assert error in form_errors(page)
    assert "新建用户" in page and "Traceback" not in page and "Not a valid" not in page
    assert user_count() == 1 and audit_rows() == []


def test_a_username_can_be_used_once(client, admin, county, make_user):
    make_user("taken", "caller", county)
    response = new_user(client, username="taken", county=str(county.id))
    assert response.status_code == 400
    assert "用户名“taken”已存在（不区分大小写）。" in flashes(text(response))
    assert user_count() == 2 and audit_rows() == []


# ---------------------------------------------------------------------------
# Users page: edit
# ---------------------------------------------------------------------------


def edit(client, user_id: int, **fields):
    return post_form(client, f"/admin/users/{user_id}/edit", fields)


def test_edit_changes_role_county_and_state_and_audits_it(client, admin, county, make_county, make_user):
    other = make_county("华容县", "430623")
    user = make_user("wang", "caller", county)
    page = text(client.get(f"/admin/users/{user.id}/edit"))
    assert "编辑用户 wang" in page
    assert re.search(rf'<option selected value="{county.id}">岳阳县</option>', page)
    assert re.search(r'<option selected value="caller">调查员</option>', page)
    assert 'id="enabled" name="enabled" type="checkbox" value="y"' in page and "checked" in page

    response = edit(client, user.id, role="supervisor", county=str(other.id), enabled="y")

    assert response.status_code == 302
    assert "已保存用户 wang 的修改。" in flashes(text(client.get("/admin/users")))
    user = user_named("wang")
    assert (user.role, user.county_id, user.is_enabled) == ("supervisor", other.id, True)
    [row] = audit_rows("user_update")
    assert (row.actor, row.target) == ("cityadmin", f"user:{user.id} wang")
    assert json.loads(row.detail) == {"role": ["caller", "supervisor"], "county": ["岳阳县", "华容县"]}

    # submitting the same values again changes nothing and logs nothing
    assert edit(client, user.id, role="supervisor", county=str(other.id), enabled="y").status_code == 302
    assert len(audit_rows("user_update")) == 1


def test_a_disabled_user_cannot_sign_in_and_loses_open_sessions(client, admin, county, make_user, new_client):
    user = make_user("wang", "caller", county)
    caller = new_client()
    assert sign_in(caller, "wang").status_code == 302 and signed_in(caller)

    response = edit(client, user.id, role="caller", county=str(county.id))  # "enabled" unchecked

    assert response.status_code == 302
    assert user_named("wang").is_enabled is False
    assert json.loads(audit_rows("user_update")[0].detail) == {"enabled": [True, False]}
    assert not signed_in(caller)  # the open session ends at once
    refused = sign_in(caller, "wang")
    assert refused.status_code == 200 and flashes(text(refused)) == [FAILED]
    assert attempts()[-1] == ("wang", "10.0.0.1", False)
    assert "停用" in text(client.get("/admin/users"))

    assert edit(client, user.id, role="caller", county=str(county.id), enabled="y").status_code == 302
    assert sign_in(new_client(), "wang").status_code == 302


def reset(client, user_id: int, **fields):
    return post_form(client, f"/admin/users/{user_id}/password", fields)


def test_a_reset_password_replaces_the_old_one_and_is_never_logged(client, admin, county, make_user, new_client):
    user = make_user("wang", "caller", county)
    response = reset(client, user.id, mode="manual", password="brand-new-pass", confirm="brand-new-pass")
    assert response.status_code == 302
    [row] = audit_rows("user_password_reset")
    assert json.loads(row.detail) == {"generated": False, "unlocked": False}
    assert "brand-new-pass" not in row.detail
    assert sign_in(new_client(), "wang", PASSWORD).status_code == 200
    assert sign_in(new_client(), "wang", "brand-new-pass").headers["Location"] == "/account/password"
    assert user_named("wang").must_change_password


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"role": "supervisor", "county": ""}, "所属县区：县级督导和调查员必须指定所属县区"),
        ({"phone": "8221234"}, "手机（可不填）：手机号码“8221234”无效：固定电话缺少区号"),
    ],
    ids=["supervisor-without-county", "landline-without-area-code"],
)
def test_invalid_edits_are_refused_in_chinese(client, admin, county, make_user, fields, error):
    user = make_user("wang", "caller", county)
    response = edit(client, user.id, **{"role": "caller", "county": str(county.id), "enabled": "y", **fields})
    assert response.status_code == 400
    assert error in form_errors(text(response))
    assert user_named("wang").role == "caller" and audit_rows() == []


def test_a_reset_ends_the_sessions_opened_with_the_old_password(client, admin, county, make_user, new_client):
    user = make_user("wang", "caller", county)
    phone, desk = new_client(), new_client()
    assert sign_in(phone, "wang").status_code == 302 and sign_in(desk, "wang").status_code == 302
    assert signed_in(phone) and signed_in(desk)

    response = reset(client, user.id, mode="manual", password="brand-new-pass", confirm="brand-new-pass")

    assert response.status_code == 302
    assert not signed_in(phone) and not signed_in(desk)
    assert sign_in(phone, "wang", password="brand-new-pass").status_code == 302
    assert phone.get("/org/").headers["Location"] == "/account/password"
    # an unchanged save of the account leaves its sessions alone
    assert edit(client, user.id, role="caller", county=str(county.id), enabled="y").status_code == 302
    assert phone.get("/account/password").status_code == 200


def test_an_admin_changing_their_own_password_stays_signed_in_here_only(client, admin, new_client):
    other = new_client()
    assert sign_in(other, "cityadmin").status_code == 302 and signed_in(other)

    response = post_form(client, "/account/password",
                         {"current": PASSWORD, "password": "brand-new-pass", "confirm": "brand-new-pass"})

    assert response.status_code == 302
    assert signed_in(client) and not signed_in(other)
    # and the reset page is not the way to one's own password
    assert client.get(f"/admin/users/{admin.id}/password").headers["Location"] == "/account/password"


def test_a_session_without_the_password_mark_is_refused(app, admin):
    token = open_session(db.session, admin, now=utcnow(), ip=None, user_agent=None)
    db.session.commit()
    with app.test_request_context():
        assert auth_routes.load_user(admin.get_id()) is None  # no server-side session in the cookie
        flask_session[auth_routes.SESSION_TOKEN] = token
        assert auth_routes.load_user(str(admin.id)) is None  # a cookie from before the mark existed
        assert auth_routes.load_user(f"{admin.id}.0000000000000000") is None
        assert auth_routes.load_user(admin.get_id()) == admin


def test_an_admin_cannot_disable_or_demote_themselves(client, admin, county):
    response = edit(client, admin.id, role="admin", county="")
    assert response.status_code == 400 and "不能停用自己的账号。" in flashes(text(response))

    response = edit(client, admin.id, role="supervisor", county=str(county.id), enabled="y")
    assert response.status_code == 400 and "不能取消自己的市级管理员角色。" in flashes(text(response))

    me = user_named("cityadmin")
    assert (me.role, me.is_enabled) == ("admin", True) and audit_rows() == []
    assert signed_in(client)


def test_another_admin_can_be_disabled(client, admin, make_user):
    other = make_user("city2", "admin")
    assert edit(client, other.id, role="admin", county="").status_code == 302
    assert user_named("city2").is_enabled is False


def test_update_user_service_refuses_self_lockout(app, make_user, county):
    me = make_user("me", "admin")
    with pytest.raises(UserError, match="不能停用自己的账号"):
        update_user(db.session, me, role="admin", county_id=None, enabled=False, actor=me)
    with pytest.raises(UserError, match="必须指定所属县区"):
        update_user(db.session, me, role="caller", county_id=None, enabled=True, actor=make_user("other", "admin"))
    with pytest.raises(UserError, match="所选县区不存在"):
        update_user(db.session, me, role="caller", county_id=424242, enabled=True, actor=me)


def test_unknown_user_is_404(client, admin):
    assert client.get("/admin/users/9999/edit").status_code == 404


# ---------------------------------------------------------------------------
# CSRF, GET
# ---------------------------------------------------------------------------


def test_posts_without_csrf_token_are_refused(client, admin, county, make_user):
    user = make_user("wang", "caller", county)
    created = post_form(client, "/admin/users/new", {"username": "li", "role": "caller", "county": str(county.id),
                                                     "password": "long-enough-1", "confirm": "long-enough-1"},
                        token=None)
    edited = post_form(client, f"/admin/users/{user.id}/edit", {"role": "admin", "county": "", "enabled": "y"},
                       token=None)

    for response in (created, edited):
        assert response.status_code == 400
        assert "表单已过期或来源无效" in text(response)
    assert user_count() == 2 and user_named("wang").role == "caller" and audit_rows() == []


def test_get_requests_change_nothing(client, admin, county, make_user):
    user = make_user("wang", "caller", county)
    for url in ("/admin/users", "/admin/users/new", f"/admin/users/{user.id}/edit",
                f"/admin/users/{user.id}/edit?role=admin&enabled=&county="):
        assert client.get(url).status_code == 200, url
    wang = user_named("wang")
    assert (wang.role, wang.is_enabled, wang.county_id) == ("caller", True, county.id)
    assert user_count() == 2 and audit_rows() == []
