"""Server-side sessions: signing out ends the session for every copy of its cookie, a session
ends SESSION_MAX_HOURS after its sign-in however busy, "退出所有设备" ends them all, an
administrator disabling an account or resetting its password ends its sessions, and signing
in and out is audit-logged (never with a password)."""
from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.auth import routes as auth_routes
from app.extensions import db
from app.models import AuditLog, UserSession
from tests.helpers import PASSWORD, csrf_token
from tests.test_auth import FreshRequestClient, T0, sign_in, text


@pytest.fixture
def client(app):
    return FreshRequestClient(app, app.response_class, use_cookies=True)


@pytest.fixture
def new_client(app):
    return lambda: FreshRequestClient(app, app.response_class, use_cookies=True)


@pytest.fixture
def clock(monkeypatch):
    class Clock:
        now = T0

    monkeypatch.setattr(auth_routes, "utcnow", lambda: Clock.now)
    return Clock


def signed_in(client) -> bool:
    return client.get("/org/").status_code == 200


def copy_of(client, new_client):
    """Another browser holding a copy of this one's session cookie."""
    other = new_client()
    other.set_cookie("session", client.get_cookie("session").value)
    return other


def sign_out(client):
    return client.post("/logout", data={"csrf_token": csrf_token(text(client.get("/account/password")))})


def sessions() -> list[UserSession]:
    db.session.expire_all()
    return list(db.session.scalars(select(UserSession).order_by(UserSession.id)))


def audit_actions() -> list[tuple[str, str]]:
    db.session.expire_all()
    return [(a.action, a.actor) for a in db.session.scalars(select(AuditLog).order_by(AuditLog.id))]


def test_a_copied_cookie_is_refused_once_its_session_signed_out(client, new_client, make_user):
    make_user("wang", "admin")
    assert sign_in(client, "wang").status_code == 302
    thief = copy_of(client, new_client)
    assert signed_in(thief)  # the copy works while the session is open

    assert sign_out(client).status_code == 302

    assert not signed_in(client)
    assert not signed_in(thief)
    [record] = sessions()
    assert record.revoked_at is not None


def test_the_table_keeps_only_a_hash_of_the_token(client, make_user):
    make_user("wang", "admin")
    sign_in(client, "wang", ip="10.0.0.7")
    with client.session_transaction() as cookie:
        token = cookie[auth_routes.SESSION_TOKEN]
    [record] = sessions()
    assert record.token_hash == hashlib.sha256(token.encode()).hexdigest() != token
    assert record.ip == "10.0.0.7" and record.revoked_at is None


def test_a_busy_session_ends_after_twelve_hours(app, client, make_user, clock):
    make_user("wang", "admin")
    assert app.config["SESSION_MAX_HOURS"] == 12
    assert sign_in(client, "wang").status_code == 302
    for step in range(1, 36):  # a request every 20 minutes: never idle
        clock.now = T0 + timedelta(minutes=20 * step)
        assert signed_in(client), step

    clock.now = T0 + timedelta(hours=12)

    assert not signed_in(client)
    assert sign_in(client, "wang").status_code == 302  # a new sign-in opens a new session
    assert signed_in(client)


def test_an_idle_session_ends_on_the_server_too(client, make_user, clock):
    make_user("wang", "admin")
    sign_in(client, "wang")
    clock.now = T0 + timedelta(minutes=29)
    assert signed_in(client)
    clock.now = T0 + timedelta(minutes=59, seconds=1)
    assert not signed_in(client)


def test_last_seen_is_written_at_most_once_a_minute(client, make_user, clock):
    make_user("wang", "admin")
    sign_in(client, "wang")
    clock.now = T0 + timedelta(seconds=59)
    assert signed_in(client)
    assert sessions()[0].last_seen_at == T0
    clock.now = T0 + timedelta(seconds=61)
    assert signed_in(client)
    assert sessions()[0].last_seen_at == T0 + timedelta(seconds=61)


def test_sign_out_everywhere_ends_every_session_of_the_account(client, new_client, make_user):
    make_user("wang", "admin")
    make_user("li", "admin")
    laptop, phone, colleague = client, new_client(), new_client()
    for browser, name in ((laptop, "wang"), (phone, "wang"), (colleague, "li")):
        assert sign_in(browser, name).status_code == 302
    page = text(laptop.get("/account/password"))
    assert "退出所有设备" in page

    response = laptop.post("/account/sessions/revoke", data={"csrf_token": csrf_token(page)})

    assert response.status_code == 302
    assert not signed_in(laptop) and not signed_in(phone)
    assert signed_in(colleague)
    assert ("logout_all", "wang") in audit_actions()
    # without the form's token nothing happens
    assert sign_in(laptop, "wang").status_code == 302
    assert laptop.post("/account/sessions/revoke").status_code == 400
    assert signed_in(laptop)


def test_changing_ones_password_ends_the_other_sessions_server_side(client, new_client, make_user):
    make_user("wang", "admin")
    other = new_client()
    sign_in(client, "wang")
    sign_in(other, "wang")
    page = text(client.get("/account/password"))
    response = client.post("/account/password", data={
        "current": PASSWORD, "password": "a-new-password-42", "confirm": "a-new-password-42",
        "csrf_token": csrf_token(page)})
    assert response.status_code == 302
    assert signed_in(client) and not signed_in(other)
    assert [r.revoked_at is None for r in sessions()] == [True, False]


def test_disabling_or_resetting_an_account_revokes_its_sessions(client, new_client, make_user, county):
    make_user("boss", "admin")
    wang = make_user("wang", "caller", county)
    li = make_user("li", "caller", county)
    sign_in(client, "boss")
    wang_browser, li_browser = new_client(), new_client()
    sign_in(wang_browser, "wang")
    sign_in(li_browser, "li")

    page = text(client.get(f"/admin/users/{wang.id}/edit"))
    client.post(f"/admin/users/{wang.id}/edit", data={
        "role": "caller", "county": str(county.id), "real_name": "", "phone": "", "csrf_token": csrf_token(page)})
    page = text(client.get(f"/admin/users/{li.id}/password"))
    client.post(f"/admin/users/{li.id}/password", data={"mode": "generate", "csrf_token": csrf_token(page)})

    by_user = {r.user_id: r.revoked_at for r in sessions()}
    assert by_user[wang.id] is not None and by_user[li.id] is not None
    assert not signed_in(wang_browser) and not signed_in(li_browser)
    assert signed_in(client)


def test_signing_in_and_out_is_audited_without_the_password(client, make_user):
    make_user("wang", "admin")
    sign_in(client, "wang", "wrong-password-9")
    sign_in(client, "ghost\u202e" + "x" * 44, "wrong-password-9")  # a control character is dropped
    sign_in(client, "wang")
    sign_out(client)

    actions = audit_actions()
    assert actions == [("login_failed", "wang"), ("login_failed", "ghost" + "x" * 44), ("login", "wang"),
                       ("logout", "wang")]
    db.session.expire_all()
    assert not any("wrong-password" in (a.detail or "") + a.actor for a in db.session.scalars(select(AuditLog)))


def test_rows_of_long_ended_sessions_are_pruned_at_sign_in(client, new_client, make_user, clock):
    make_user("wang", "admin")
    sign_in(client, "wang")
    clock.now = T0 + timedelta(days=7, seconds=1)
    sign_in(new_client(), "wang")
    assert [r.created_at for r in sessions()] == [clock.now]


@pytest.mark.parametrize("hours", [0, 169])
def test_a_session_lifetime_beyond_the_rows_kept_is_refused_at_start(hours):
    from app.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="SESSION_MAX_HOURS"):
        load_config({"SESSION_MAX_HOURS": hours})
