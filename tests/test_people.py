"""People: real names and phones, the password rules, the own and the forced password change,
an admin's unlock and reset, case-insensitive user names, bulk creation from a sheet (web and
CLI), and real names wherever a person reads who did something."""
from __future__ import annotations

import html as html_lib
import io
import json
import os
import re
import stat
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select
from werkzeug.routing import IntegerConverter

from app.auth import importer as importer_module
from app.auth.passwords import COMMON_PASSWORDS, generate_password, password_problem
from app.auth.services import UserError, create_user, login_key
from app.auth.throttle import ThrottleSettings, address_failures
from app.extensions import db
from app.models import Attempt, AuditLog, LoginAttempt, User
from app.core.clock import utcnow
from app.core.spreadsheets import write_xlsx
from tests.helpers import PASSWORD, csrf_token
from tests.test_auth import FreshRequestClient  # a client that forgets g between requests

CHANGE = "/account/password"
NEW_PASSWORD = "Yueyang-survey-7"


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


@pytest.fixture
def client(app):
    return FreshRequestClient(app, app.response_class, use_cookies=True)


@pytest.fixture
def new_client(app):
    return lambda: FreshRequestClient(app, app.response_class, use_cookies=True)


def text(response) -> str:
    return response.get_data(as_text=True)


def flashes(page: str) -> list[str]:
    return [html_lib.unescape(m) for m in re.findall(r'<div class="flash flash-\w+"[^>]*>([^<]*)</div>', page)]


def sign_in(client, username: str, password: str = PASSWORD, ip: str = "10.0.0.1"):
    token = csrf_token(text(client.get("/", environ_base={"REMOTE_ADDR": ip})))
    return client.post("/", data={"username": username, "password": password, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": ip})


def signed_in(client) -> bool:
    return client.get("/org/").status_code == 200


def post_form(client, url: str, data: dict, token_from: str | None = None):
    token = csrf_token(text(client.get(token_from or url)))
    return client.post(url, data={**data, "csrf_token": token})


def user_named(username: str) -> User | None:
    db.session.expire_all()
    return db.session.scalar(select(User).where(User.username == username))


def user_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(User))


def audit_rows(action: str) -> list[AuditLog]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


def goes_to_change(response) -> bool:
    return response.status_code in (302, 303) and response.headers["Location"] == CHANGE


@pytest.fixture
def county(make_county):
    return make_county("岳阳县", "430621")


@pytest.fixture
def admin(client, make_user):
    user = make_user("cityadmin", "admin", real_name="周建国")
    assert sign_in(client, "cityadmin").status_code == 302
    return user


# ---------------------------------------------------------------------------
# Password rules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password, username, message",
    [
        ("short-pw1", "wang", "密码至少10位。"),
        ("x" * 150 + "y" * 51, "wang", "密码不超过200个字符。"),
        ("good-pass\x07word", "wang", "密码不能包含控制字符或换行。"),
        ("7777777777777", "wang", "密码不能由同一个字符重复组成。"),
        ("ZhangSan2026", "zhangsan2026", "密码不能与用户名相同，也不能包含用户名。"),
        ("my-Wang-2026-pw", "wang", "密码不能与用户名相同，也不能包含用户名。"),
        ("1234567890", "wang", "该密码过于常见，很容易被猜中，请换一个。"),
        ("12345678910", "wang", "该密码过于常见，很容易被猜中，请换一个。"),
        ("QwertyUIOP", "wang", "该密码过于常见，很容易被猜中，请换一个。"),
        ("Password123", "wang", "该密码过于常见，很容易被猜中，请换一个。"),
        ("woaini1314", "wang", "该密码过于常见，很容易被猜中，请换一个。"),
        ("A123456789", "wang", "该密码过于常见，很容易被猜中，请换一个。"),
        ("admin12345", "wang", "该密码过于常见，很容易被猜中，请换一个。"),
    ],
    ids=["short", "too-long", "control", "one-character", "equals-name", "contains-name", "digits", "digits-11",
         "keyboard", "password123", "woaini", "a123", "admin"],
)
def test_each_password_rule_refuses_with_its_message(password, username, message):
    assert password_problem(password, username) == message


def test_good_passwords_pass_the_rules():
    assert password_problem(NEW_PASSWORD, "wang") is None
    assert password_problem("believe-it-2026", "li") is None  # a two-letter name is not searched for
    assert password_problem("li", "li") == "密码至少10位。"
    assert len(COMMON_PASSWORDS) >= 100
    assert all(password_problem(generate_password(), "wang") is None for _ in range(50))


def test_the_rules_apply_to_the_service_the_web_and_the_cli(app, client, admin, county, runner):
    with pytest.raises(UserError, match="该密码过于常见"):
        create_user(db.session, "li", "caller", "1234567890", "岳阳县", real_name="李四")
    page = post_form(client, "/admin/users/new", {"username": "li", "real_name": "李四", "role": "caller",
                                                  "county": str(county.id), "password": "Password123",
                                                  "confirm": "Password123"})
    assert page.status_code == 400
    assert "初始密码：该密码过于常见，很容易被猜中，请换一个" in flashes(text(page))
    page = post_form(client, "/admin/users/new", {"username": "lisi", "real_name": "李四", "role": "caller",
                                                  "county": str(county.id), "password": "lisi-2026-pw",
                                                  "confirm": "lisi-2026-pw"})
    assert page.status_code == 400
    assert "初始密码：密码不能与用户名相同，也不能包含用户名" in flashes(text(page))
    result = runner.invoke(args=["users", "create", "lisi", "--role", "caller", "--county", "岳阳县", "--name", "李四",
                                 "--password-stdin"], input="aaaaaaaaaaaa\n")
    assert result.exit_code == 1 and "密码不能由同一个字符重复组成。" in result.output
    db.session.rollback()
    assert user_count() == 1


# ---------------------------------------------------------------------------
# Own password change
# ---------------------------------------------------------------------------


def change(client, current: str, new: str, confirm: str | None = None):
    return post_form(client, CHANGE, {"current": current, "password": new, "confirm": confirm or new})


@pytest.mark.parametrize("role", ["admin", "supervisor", "caller"])
def test_every_role_reaches_the_change_page_from_the_top_bar(client, make_user, county, role):
    make_user("wang", role, county if role != "admin" else None, real_name="王五")
    sign_in(client, "wang")
    page = text(client.get("/org/"))
    assert f'href="{CHANGE}"' in page and "修改密码" in page
    assert "王五 · " in page  # the top bar names the person, not the login
    assert client.get(CHANGE).status_code == 200


def test_a_wrong_current_password_is_refused_and_counted(client, make_user):
    make_user("wang", "admin")
    sign_in(client, "wang")
    response = change(client, "not-my-password", NEW_PASSWORD)
    assert response.status_code == 400 and "当前密码不正确。" in flashes(text(response))
    assert user_named("wang").check_password(PASSWORD)
    assert db.session.scalars(select(LoginAttempt.success).order_by(LoginAttempt.id)).all()[-1] is False
    assert audit_rows("password_change") == []


@pytest.mark.parametrize(
    "new, confirm, message",
    [
        (PASSWORD, None, "新密码不能与当前密码相同。"),
        ("1234567890", None, "该密码过于常见，很容易被猜中，请换一个。"),
        ("wang-wang-2026", None, "密码不能与用户名相同，也不能包含用户名。"),
        ("short", None, "新密码：密码至少10位，不超过200个字符"),
        (NEW_PASSWORD, "something-else", "确认新密码：两次输入的新密码不一致"),
    ],
    ids=["same", "common", "contains-name", "short", "confirm-differs"],
)
def test_a_bad_new_password_is_refused(client, make_user, new, confirm, message):
    make_user("wang", "admin")
    sign_in(client, "wang")
    response = change(client, PASSWORD, new, confirm)
    assert response.status_code == 400 and message in flashes(text(response))
    assert user_named("wang").check_password(PASSWORD)


def test_five_wrong_current_passwords_lock_the_change_page(client, make_user):
    make_user("wang", "admin")
    sign_in(client, "wang")
    for _ in range(5):
        assert change(client, "not-my-password", NEW_PASSWORD).status_code == 400
    locked = change(client, PASSWORD, NEW_PASSWORD)
    assert locked.status_code == 429 and "密码错误次数过多，请15分钟后再试。" in flashes(text(locked))
    assert user_named("wang").check_password(PASSWORD)


def test_a_change_keeps_this_session_ends_the_others_and_clears_the_flag(client, make_user, new_client):
    make_user("wang", "admin", must_change_password=True)
    other = new_client()
    assert goes_to_change(sign_in(other, "wang"))
    assert goes_to_change(sign_in(client, "wang"))

    response = change(client, PASSWORD, NEW_PASSWORD)

    assert response.status_code == 302 and response.headers["Location"] != CHANGE
    user = user_named("wang")
    assert user.must_change_password is False and user.password_changed_at is not None
    assert user.check_password(NEW_PASSWORD)
    assert signed_in(client)  # this session goes on
    assert other.get("/org/").headers["Location"].startswith("/?next=")  # the other one ended
    [row] = audit_rows("password_change")
    assert (row.actor, row.target, json.loads(row.detail)) == ("wang", f"user:{user.id} wang", {"forced": True})
    assert NEW_PASSWORD not in row.detail and PASSWORD not in row.detail
    assert sign_in(new_client(), "wang", NEW_PASSWORD).headers["Location"] != CHANGE


# ---------------------------------------------------------------------------
# The forced change at first sign-in
# ---------------------------------------------------------------------------


def _sample_value(converter) -> object:
    name = type(converter).__name__
    if isinstance(converter, IntegerConverter):
        return 1
    if name == "AnyConverter":
        return next(iter(converter.items)) if hasattr(converter, "items") else "x"
    return "x"


def _urls(app, *, with_arguments: bool):
    """(method, url) for every rule of the app but the few a temporary password may reach."""
    open_endpoints = {"static", "auth.change_password", "auth.logout"}
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in open_endpoints or rule.endpoint.endswith(".static"):
            continue
        if bool(rule.arguments) != with_arguments:
            continue
        values = {name: _sample_value(rule._converters[name]) for name in rule.arguments}
        if any(v is None for v in values.values()):
            continue
        url = rule.build(values, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, url))
    return found


@pytest.mark.parametrize("role", ["admin", "supervisor", "caller"])
def test_a_temporary_password_reaches_no_page_but_the_change_page(app, client, make_user, county, role):
    make_user("temp", role, county if role != "admin" else None, must_change_password=True)
    first = sign_in(client, "temp")
    assert goes_to_change(first)
    token = csrf_token(text(client.get(CHANGE)))
    plain, with_ids = _urls(app, with_arguments=False), _urls(app, with_arguments=True)
    assert len(plain) > 20 and len(with_ids) > 20
    for method, url in plain + with_ids + [("GET", "/no/such/page"), ("GET", "/calls/next")]:
        if method == "GET":
            response = client.get(url)
        else:
            response = client.open(url, method=method, data={"csrf_token": token})
        assert goes_to_change(response), (method, url, response.status_code)
    # the change page itself, signing out and static files still answer
    assert client.get(CHANGE).status_code == 200
    with client.get("/static/app.css") as css:
        assert css.status_code == 200
    assert b"<nav>" not in client.get(CHANGE).data  # no links to pages it cannot reach
    assert db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action != "login")) == 0
    logout = client.post("/logout", data={"csrf_token": token})
    assert logout.status_code == 302 and logout.headers["Location"] == "/"
    assert client.get("/org/").headers["Location"].startswith("/?next=")


def test_sign_in_sends_a_temporary_password_to_the_change_page_whatever_next_says(client, make_user):
    make_user("temp", "admin", must_change_password=True)
    token = csrf_token(text(client.get("/")))
    response = client.post("/?next=/admin/users", data={"username": "temp", "password": PASSWORD, "csrf_token": token})
    assert goes_to_change(response)
    assert "临时密码" in text(client.get(CHANGE))
    assert change(client, PASSWORD, NEW_PASSWORD).status_code == 302
    assert client.get("/admin/users").status_code == 200


# ---------------------------------------------------------------------------
# Unlock and reset
# ---------------------------------------------------------------------------


def lock(client, username: str, ip: str = "203.0.113.9") -> None:
    for _ in range(5):
        assert sign_in(client, username, "wrong-password", ip=ip).status_code == 200
    assert sign_in(client, username, PASSWORD, ip=ip).status_code == 429


def test_an_admin_unlocks_a_locked_account(client, admin, make_user, county, new_client):
    user = make_user("wang", "caller", county, real_name="王五")
    attacker = new_client()
    lock(attacker, "WANG")  # any spelling of the name locks the one account
    listing = text(client.get("/admin/users"))
    row = re.search(r"<tr[^>]*>\s*<td>wang</td>.*?</tr>", listing, re.S).group(0)
    assert "已锁定" in row and "解锁" in row
    assert "已锁定" not in re.search(r"<tr[^>]*>\s*<td>cityadmin</td>.*?</tr>", listing, re.S).group(0)
    assert sign_in(new_client(), "wang", PASSWORD, ip="10.0.0.7").status_code == 429

    assert client.post(f"/admin/users/{user.id}/unlock").status_code == 400  # no CSRF token
    response = post_form(client, f"/admin/users/{user.id}/unlock", {}, token_from="/admin/users")

    assert response.status_code == 302
    assert "已解锁 王五（wang）的账号。" in flashes(text(client.get("/admin/users")))
    [row] = audit_rows("user_unlock")
    assert (row.actor, row.target) == ("cityadmin", f"user:{user.id} wang")
    settings = ThrottleSettings()
    # the attempts stay on record: the attacker's address still counts its failures
    assert address_failures(db.session, "203.0.113.9", now=utcnow(), settings=settings) == 6
    assert sign_in(new_client(), "wang", PASSWORD, ip="10.0.0.7").status_code == 302
    # nothing to unlock: nothing written
    post_form(client, f"/admin/users/{user.id}/unlock", {}, token_from="/admin/users")
    assert len(audit_rows("user_unlock")) == 1


def test_a_generated_reset_is_shown_once_and_forces_a_change(client, admin, make_user, county, new_client):
    user = make_user("wang", "caller", county, real_name="王五")
    phone = new_client()
    assert sign_in(phone, "wang").status_code == 302 and signed_in(phone)
    lock(new_client(), "wang")

    page = post_form(client, f"/admin/users/{user.id}/password", {"mode": "generate"})

    assert page.status_code == 200
    temporary = re.search(r'class="temporary-password"><code>([^<]+)</code>', text(page)).group(1)
    assert password_problem(temporary, "wang") is None
    wang = user_named("wang")
    assert wang.must_change_password and wang.check_password(temporary)
    assert not signed_in(phone)  # the open session ended
    [row] = audit_rows("user_password_reset")
    assert json.loads(row.detail) == {"generated": True, "unlocked": True} and temporary not in row.detail
    assert goes_to_change(sign_in(new_client(), "wang", temporary))  # the lock went with the old password


def test_a_typed_reset_follows_the_rules(client, admin, make_user, county):
    user = make_user("wang", "caller", county)
    response = post_form(client, f"/admin/users/{user.id}/password",
                         {"mode": "manual", "password": "1234567890", "confirm": "1234567890"})
    assert response.status_code == 400
    assert "临时密码：该密码过于常见，很容易被猜中，请换一个" in flashes(text(response))
    response = post_form(client, f"/admin/users/{user.id}/password", {"mode": "manual", "password": ""})
    assert response.status_code == 400 and "临时密码：请输入临时密码" in flashes(text(response))
    assert user_named("wang").check_password(PASSWORD) and audit_rows("user_password_reset") == []


@pytest.mark.parametrize("role", ["supervisor", "caller"])
def test_only_admins_reset_and_unlock(client, make_user, county, role):
    target = make_user("wang", "caller", county)
    make_user("staff", role, county)
    sign_in(client, "staff")
    token = csrf_token(text(client.get("/org/")))
    for url in (f"/admin/users/{target.id}/password", f"/admin/users/{target.id}/unlock"):
        assert client.post(url, data={"csrf_token": token, "mode": "generate"}).status_code == 403
    assert client.get("/admin/users/import").status_code == 403
    assert user_named("wang").check_password(PASSWORD)


# ---------------------------------------------------------------------------
# User names: case-insensitive, no control characters; real names and phones
# ---------------------------------------------------------------------------


def new_user(client, **fields):
    data = {"username": "wang", "real_name": "王五", "role": "caller", "county": "", "phone": "",
            "password": "caller-pass-1", "confirm": "caller-pass-1"}
    return post_form(client, "/admin/users/new", {**data, **fields})


def test_user_names_are_unique_whatever_the_case(client, admin, county, make_user, new_client):
    make_user("wang", "caller", county)
    for taken in ("WANG", "Wang", "ｗａｎｇ"):
        response = new_user(client, username=taken, county=str(county.id))
        assert response.status_code == 400, taken
        shown = "WANG" if taken == "WANG" else ("Wang" if taken == "Wang" else "wang")
        assert f"用户名“{shown}”已存在（不区分大小写）。" in flashes(text(response))
    assert user_count() == 2
    with pytest.raises(UserError, match="已存在（不区分大小写）"):
        create_user(db.session, "wAnG", "caller", "caller-pass-1", "岳阳县", real_name="王五")
    # signing in finds the account whatever the case
    assert sign_in(new_client(), "WANG").status_code == 302
    assert sign_in(new_client(), " Wang ").status_code == 302


def test_the_cli_refuses_a_name_differing_in_case(runner, make_user, county):
    make_user("wang", "caller", county)
    result = runner.invoke(args=["users", "create", "Wang", "--role", "caller", "--county", "岳阳县", "--name", "王五",
                                 "--password-stdin"], input="caller-pass-1\n")
    assert result.exit_code == 1 and "用户名“Wang”已存在（不区分大小写）。" in result.output
    db.session.rollback()
    assert user_count() == 1


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"username": "wang\x00li"}, "用户名：用户名不能包含控制字符"),
        ({"username": "wang\u200bli"}, "用户名：用户名不能包含控制字符"),
        ({"username": "wang\tli"}, "用户名：用户名不能包含空格或换行"),
        ({"real_name": "王\n五"}, "姓名：姓名不能包含控制字符或换行"),
        ({"real_name": "王" * 21}, "姓名：姓名不超过20个字"),
        ({"real_name": "  "}, "姓名：请填写姓名"),
        ({"phone": "12345"}, "手机（可不填）：手机号码“12345”无效：电话号码格式不正确（应为11位手机号或带区号的固定电话）"),
    ],
    ids=["nul", "zero-width", "tab", "name-newline", "name-too-long", "name-blank", "bad-phone"],
)
def test_control_characters_and_bad_names_are_refused(client, admin, county, fields, message):
    response = new_user(client, county=str(county.id), **fields)
    assert response.status_code == 400
    assert message in flashes(text(response))
    assert user_count() == 1


def test_the_service_refuses_control_characters_too(app, county):
    for name, message in (("wang\x1bli", "用户名不能包含控制字符"), ("a" * 51, "用户名不超过50个字符"),
                          ("", "请填写用户名")):
        with pytest.raises(UserError, match=message):
            create_user(db.session, name, "caller", "caller-pass-1", "岳阳县", real_name="王五")
    with pytest.raises(UserError, match="请填写姓名"):
        create_user(db.session, "wang", "caller", "caller-pass-1", "岳阳县")


def test_real_name_and_phone_are_stored_listed_and_edited(client, admin, county):
    response = new_user(client, county=str(county.id), phone="138-0013-8000")
    assert response.status_code == 302
    user = user_named("wang")
    assert (user.real_name, user.phone, user.display_name) == ("王五", "13800138000", "王五")
    listing = text(client.get("/admin/users"))
    assert "王五" in listing and "138****8000" in listing and "13800138000" not in listing
    page = text(client.get(f"/admin/users/{user.id}/edit"))
    assert 'value="王五"' in page and 'value="13800138000"' in page
    edited = post_form(client, f"/admin/users/{user.id}/edit",
                       {"real_name": "王小五", "phone": "0730-8221234", "role": "caller", "county": str(county.id),
                        "enabled": "y"})
    assert edited.status_code == 302
    user = user_named("wang")
    assert (user.real_name, user.phone) == ("王小五", "07308221234")
    [row] = audit_rows("user_update")
    assert json.loads(row.detail) == {"real_name": ["王五", "王小五"], "phone": ["138****8000", "073****1234"]}
    # a name once given cannot be emptied
    cleared = post_form(client, f"/admin/users/{user.id}/edit",
                        {"real_name": "", "role": "caller", "county": str(county.id), "enabled": "y"})
    assert cleared.status_code == 400 and "姓名：请填写姓名" in flashes(text(cleared))


def test_an_older_account_without_a_real_name_can_still_be_edited(client, admin, county, make_user):
    old = make_user("old", "caller", county)
    response = post_form(client, f"/admin/users/{old.id}/edit", {"real_name": "", "role": "caller",
                                                                 "county": str(county.id)})
    assert response.status_code == 302 and user_named("old").is_enabled is False
    assert user_named("old").display_name == "old"


# ---------------------------------------------------------------------------
# Bulk creation from a sheet
# ---------------------------------------------------------------------------

HEADER = ["用户名", "姓名", "角色", "县区", "手机", "初始密码"]
ROWS = [
    ["zhangsan", "张三", "调查员", "岳阳县", "13800138001", ""],                # 2 created, generated password
    ["lisi", "李四", "supervisor", "岳阳县", "0730-8221234", "Strong-pass-2026x"],  # 3 created, its own password
    ["city2", "刘七", "市级管理员", "华容县", "", ""],                           # 4 created (an admin: county ignored)
    ["ZhangSan", "张三丰", "调查员", "岳阳县", "", ""],                          # 5 duplicate of row 2
    ["TAKEN", "占用", "调查员", "岳阳县", "", ""],                               # 6 exists already
    ["wangwu", "王五", "调查员", "火星县", "", ""],                              # 7 unknown county
    ["zhaoliu", "赵六", "院长", "岳阳县", "", ""],                               # 8 unknown role
    ["sunqi", "孙七", "caller", "岳阳县", "12345", ""],                          # 9 bad phone
    ["zhouba", "", "调查员", "岳阳县", "", ""],                                  # 10 no name
    ["wujiu", "吴九", "调查员", "岳阳县", "", "1234567890"],                     # 11 weak password
    ["zheng shi", "郑十", "调查员", "岳阳县", "", ""],                           # 12 space in the name
]
REJECTED = {
    5: "与第2行的用户名重复（不区分大小写）",
    6: "用户名“TAKEN”已存在（不区分大小写）",
    7: "县区“火星县”不存在",
    8: "角色“院长”无法识别",
    9: "手机号码“12345”无效",
    10: "请填写姓名",
    11: "该密码过于常见",
    12: "用户名不能包含空格或换行",
}
CREATED = {"zhangsan", "lisi", "city2"}


def sheet(tmp_path: Path, rows=ROWS, name="用户.xlsx") -> Path:
    frame = pd.DataFrame(rows, columns=HEADER)
    if name.endswith(".csv"):
        path = tmp_path / name
        frame.to_csv(path, index=False, encoding="utf-8-sig")
        return path
    return write_xlsx(tmp_path / name, {"用户": frame})


@pytest.fixture
def importing(client, admin, county, make_user):
    make_user("taken", "caller", county)
    return admin


def upload(client, path: Path, filename: str | None = None):
    token = csrf_token(text(client.get("/admin/users/import")))
    return client.post("/admin/users/import", data={"csrf_token": token,
                                                    "file": (io.BytesIO(path.read_bytes()), filename or path.name)},
                       content_type="multipart/form-data")


def rejected_rows(page: str) -> dict[int, str]:
    rows = re.findall(r'<tr class="rejected"><td>[^<]*</td><td class="num">(\d+)</td><td>[^<]*</td><td>[^<]*</td>'
                      r"<td>([^<]*)</td></tr>", page)
    found: dict[int, str] = {}
    for number, reason in rows:
        found.setdefault(int(number), html_lib.unescape(reason))
    return found


def test_bulk_import_previews_then_creates_exactly_the_accepted_rows_once(client, importing, tmp_path, new_client):
    before = user_count()
    response = upload(client, sheet(tmp_path))
    assert response.status_code == 302
    preview_url = response.headers["Location"]
    assert re.fullmatch(r"/admin/users/import/[0-9a-f]{32}", preview_url)

    preview = text(client.get(preview_url))
    assert "预览（未写入）" in preview and "将创建 <strong>3</strong> 个用户，拒绝 8 行" in preview
    for number, reason in REJECTED.items():
        assert reason in rejected_rows(preview)[number], (number, rejected_rows(preview)[number])
    assert "Strong-pass-2026x" not in preview and "1234567890" not in preview  # passwords never shown
    assert user_count() == before and audit_rows("user_create") == []  # the preview wrote nothing

    confirmed = post_form(client, preview_url + "/confirm", {}, token_from=preview_url)
    assert confirmed.status_code == 302 and confirmed.headers["Location"] == preview_url
    result = text(client.get(preview_url))
    assert "已创建 3 个用户，拒绝 8 行。新用户首次登录时须修改密码。" in flashes(result)
    assert set(rejected_rows(result)) == set(REJECTED)
    assert user_count() == before + 3
    created = {u.username: u for u in db.session.scalars(select(User).where(User.username.in_(CREATED)))}
    assert set(created) == CREATED and all(u.must_change_password for u in created.values())
    assert (created["zhangsan"].real_name, created["zhangsan"].phone, created["zhangsan"].county.name) == (
        "张三", "13800138001", "岳阳县")
    assert (created["lisi"].role, created["lisi"].phone) == ("supervisor", "07308221234")
    assert (created["city2"].role, created["city2"].county_id) == ("admin", None)
    assert created["lisi"].check_password("Strong-pass-2026x")
    assert len(audit_rows("user_create")) == 3 and len(audit_rows("user_import")) == 1

    # a second confirmation (double click, retry) creates nothing
    again = post_form(client, preview_url + "/confirm", {}, token_from=preview_url)
    assert again.status_code == 302
    assert "这批用户已经确认创建过，没有重复创建。" in flashes(text(client.get(preview_url)))
    assert user_count() == before + 3 and len(audit_rows("user_import")) == 1

    # the generated passwords, once
    download = post_form(client, preview_url + "/passwords", {}, token_from=preview_url)
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment")
    table = pd.read_excel(io.BytesIO(download.data), header=1, dtype=str, engine="calamine")
    passwords = dict(zip(table["用户名"], table["初始密码"]))
    assert set(passwords) == CREATED
    assert passwords["lisi"] == "（导入表中提供的密码）"
    assert len(audit_rows("export.user_passwords")) == 1
    assert goes_to_change(sign_in(new_client(), "zhangsan", passwords["zhangsan"]))
    assert goes_to_change(sign_in(new_client(), "CITY2", passwords["city2"]))
    second = post_form(client, preview_url + "/passwords", {}, token_from=preview_url)
    assert second.status_code == 302
    assert "初始密码文件只能下载一次" in flashes(text(client.get(preview_url)))[0]

    # the error report downloads; the same file again creates nobody more
    with client.get(preview_url + "/report.csv") as report:
        assert report.status_code == 200 and "火星县" in report.data.decode("utf-8-sig")
    again = upload(client, sheet(tmp_path))
    repeat = text(client.get(again.headers["Location"]))
    assert "将创建 <strong>0</strong> 个用户" in repeat and "确认创建" not in repeat.split("被拒绝的行")[0]


def test_bulk_import_is_all_or_nothing(client, importing, tmp_path, make_user, county):
    response = upload(client, sheet(tmp_path))
    preview_url = response.headers["Location"]
    before = user_count()
    make_user("LiSi", "caller", county)  # taken between the preview and the confirmation

    refused = post_form(client, preview_url + "/confirm", {}, token_from=preview_url)

    assert refused.status_code == 302
    page = text(client.get(preview_url))
    assert any(m.startswith("没有创建任何用户：预览之后数据已有变化") for m in flashes(page))
    assert user_count() == before + 1 and audit_rows("user_import") == []


def test_bulk_import_reads_csv_with_english_roles(client, importing, tmp_path):
    rows = [["sunqi", "孙七", "Caller", "岳阳县", "13900139000", ""], ["zhouba", "周八", "ADMIN", "", "", ""]]
    preview_url = upload(client, sheet(tmp_path, rows, name="users.csv")).headers["Location"]
    assert "将创建 <strong>2</strong> 个用户，拒绝 0 行" in text(client.get(preview_url))
    post_form(client, preview_url + "/confirm", {}, token_from=preview_url)
    assert user_named("sunqi").role == "caller" and user_named("zhouba").role == "admin"


@pytest.mark.parametrize(
    "content, filename, message",
    [
        (b"%PDF-1.4 not a sheet", "users.pdf", "用户表：只支持 .xlsx、.xls、.csv 文件"),
        (b"PK\x03\x04 broken zip", "users.xlsx", "文件无法导入：无法读取 Excel 文件"),
        ("姓名,电话\n张三,13800138000\n".encode(), "users.csv", "文件无法导入：未找到表头"),
        (b"\x00\x01\x02\xff\xfe" * 100, "users.csv", "文件无法导入："),
    ],
    ids=["pdf", "broken-xlsx", "no-header", "binary-csv"],
)
def test_a_file_that_is_not_a_user_sheet_gets_a_chinese_message(client, importing, tmp_path, content, filename,
                                                                 message):
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    response = upload(client, path, filename)
    assert response.status_code == 400
    assert any(m.startswith(message) for m in flashes(text(response))), flashes(text(response))
    assert user_count() == 2


def test_a_sheet_over_the_row_cap_is_refused(client, importing, tmp_path, monkeypatch):
    monkeypatch.setattr(importer_module, "MAX_ROWS", 3)
    response = upload(client, sheet(tmp_path))
    assert response.status_code == 400 and "文件无法导入：文件超过 3 行，请分批导入。" in flashes(text(response))


def test_another_admin_cannot_see_an_import(client, importing, tmp_path, make_user, new_client):
    preview_url = upload(client, sheet(tmp_path)).headers["Location"]
    make_user("city3", "admin")
    other = new_client()
    sign_in(other, "city3")
    assert other.get(preview_url).status_code == 404
    assert other.get("/admin/users/import/not-a-token").status_code == 404


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def test_cli_users_create_with_name_phone_and_the_forced_change(runner, county):
    result = runner.invoke(args=["users", "create", "wang", "--role", "caller", "--county", "岳阳县", "--name", "王五",
                                 "--phone", "13800138000", "--password-stdin"], input="caller-pass-1\n")
    assert result.exit_code == 0, result.output
    assert "已创建用户 wang（王五，调查员）" in result.output and "首次登录时须修改密码。" in result.output
    scripted = runner.invoke(args=["users", "create", "city", "--role", "admin", "--name", "刘七", "--no-force-change",
                                   "--password-stdin"], input="Admin-pass-2026x\n")
    assert scripted.exit_code == 0, scripted.output
    missing = runner.invoke(args=["users", "create", "li", "--role", "admin", "--password-stdin"], input="x\n")
    assert missing.exit_code == 2 and "--name" in missing.output
    db.session.rollback()
    wang, city = user_named("wang"), user_named("city")
    assert (wang.real_name, wang.phone, wang.must_change_password) == ("王五", "13800138000", True)
    assert (city.real_name, city.must_change_password) == ("刘七", False)
    [row, _] = audit_rows("user_create")
    assert row.actor.startswith("cli") and row.user_id is None
    assert "--no-force-change" in runner.invoke(args=["users", "create", "--help"]).output


def test_cli_users_import(runner, app, county, make_user, tmp_path, new_client):
    make_user("taken", "caller", county)
    path = sheet(tmp_path)

    dry = runner.invoke(args=["users", "import", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "read=11 created=3 rejected=8" in dry.output and "预览模式：数据库未作更改。" in dry.output
    assert "初始密码文件" not in dry.output
    db.session.rollback()
    assert user_count() == 1

    result = runner.invoke(args=["users", "import", str(path), "--passwords-dir", str(tmp_path / "secret")])
    assert result.exit_code == 0, result.output
    assert "read=11 created=3 rejected=8" in result.output
    assert "第7行 县区：县区“火星县”不存在" in result.output
    assert "错误报告：" in result.output
    passwords_file = Path(re.search(r"初始密码文件：(\S+\.xlsx)", result.output).group(1))
    assert stat.S_IMODE(os.stat(passwords_file).st_mode) == 0o600
    db.session.rollback()
    assert user_count() == 4
    table = pd.read_excel(passwords_file, header=1, dtype=str, engine="calamine")
    password = dict(zip(table["用户名"], table["初始密码"]))["zhangsan"]
    assert goes_to_change(sign_in(new_client(), "zhangsan", password))

    again = runner.invoke(args=["users", "import", str(path)])
    assert again.exit_code == 0 and "read=11 created=0 rejected=11" in again.output
    assert "初始密码文件" not in again.output
    db.session.rollback()
    assert user_count() == 4


@pytest.mark.parametrize("name, content", [("missing.xlsx", None), ("users.pdf", b"%PDF"), ("users.xlsx", b"junk")])
def test_cli_users_import_refuses_an_unreadable_file(runner, app, tmp_path, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = runner.invoke(args=["users", "import", str(path)])
    assert result.exit_code == 1 and "导入失败：" in result.output and "Traceback" not in result.output
    assert re.search(r"[\u4e00-\u9fff]", result.output)


def test_login_key_folds_case_and_width():
    assert login_key(" ＷＡＮＧ ") == login_key("wang") == "wang"


# ---------------------------------------------------------------------------
# Real names where people read who did something
# ---------------------------------------------------------------------------


def test_real_names_in_the_opening_script_the_history_and_the_board(app, make_team, make_user, county, monkeypatch,
                                                                    new_client):
    from tests.calls_support import at, drawn_round

    monkeypatch.setattr("app.calls.routes.clock_now", lambda: at(23, 9, 30))
    monkeypatch.setattr("app.reports.routes.clock_now", lambda: at(23, 9, 30))
    setup = drawn_round(county, make_team, make_user)
    setup.caller.real_name = "张三"
    setup.supervisor.real_name = "李督导"
    db.session.commit()
    caller_login, supervisor_login = setup.caller.username, setup.supervisor.username

    caller = new_client()
    assert sign_in(caller, caller_login).status_code == 302
    assert "张三 · 调查员 · 岳阳县" in text(caller.get("/calls/"))
    token = csrf_token(text(caller.get("/calls/")))
    case_url = caller.post("/calls/next", data={"csrf_token": token}).headers["Location"]
    screen = text(caller.get(case_url))
    assert "我是岳阳县卫生健康局的工作人员张三。" in screen
    assert f"工作人员{caller_login}" not in screen
    reply = caller.post(case_url + "/attempt", data={"csrf_token": token, "outcome": "no_answer", "number": "1"})
    assert reply.status_code == 200 and db.session.scalar(select(func.count()).select_from(Attempt)) == 1
    history = text(caller.get(case_url))
    assert '<span class="who">张三</span>' in history and caller_login not in history.split('class="history-list"')[1]

    supervisor = new_client()
    assert sign_in(supervisor, supervisor_login).status_code == 302
    board = text(supervisor.get("/calls/board"))
    assert "<tr><td>张三</td>" in board and f"<td>{caller_login}</td>" not in board
    assert "李督导 · 县级督导" in board
    cases = text(supervisor.get(f"/calls/cases?round={setup.round.id}"))
    assert f"张三（{caller_login}）" in cases  # the assign form's choices


def test_old_uploads_are_forgotten(tmp_path):
    store = importer_module.ImportStore(tmp_path)
    old, path = store.new(".xlsx")
    path.write_bytes(b"x")
    (store.folder(old) / "passwords.xlsx").write_bytes(b"secret")
    long_ago = os.stat(store.folder(old)).st_mtime - importer_module.KEEP_SECONDS - 60
    os.utime(store.folder(old), (long_ago, long_ago))
    fresh, _ = store.new(".csv")
    assert not store.folder(old).exists() and store.folder(fresh).is_dir()
    assert store.take_passwords(fresh) is None


def test_cli_reset_password_and_unlock_for_a_locked_out_admin(app, runner, make_user, client):
    from app.models import AuditLog, User

    make_user("boss", "admin")
    for _ in range(6):  # locks the account
        client.post("/", data={"username": "boss", "password": "wrong-password-x",
                               "csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    unlocked = runner.invoke(args=["users", "unlock", "BOSS"])
    assert unlocked.exit_code == 0 and "已解除用户 boss 的锁定" in unlocked.output
    again = runner.invoke(args=["users", "unlock", "boss"])
    assert again.exit_code == 0 and "没有被锁定" in again.output
    reset = runner.invoke(args=["users", "reset-password", "boss"])
    assert reset.exit_code == 0, reset.output
    temporary = reset.output.split("临时密码（只显示这一次）：")[1].strip()
    db.session.expire_all()
    user = db.session.scalar(db.select(User).where(User.username == "boss"))
    assert user.must_change_password and user.check_password(temporary)
    weak = runner.invoke(args=["users", "reset-password", "boss", "--password-stdin"], input="12345678\n")
    assert weak.exit_code == 1 and "至少10位" in weak.output
    missing = runner.invoke(args=["users", "unlock", "nobody"])
    assert missing.exit_code == 1 and "用户“nobody”不存在" in missing.output
    actions = set(db.session.scalars(db.select(AuditLog.action)))
    assert {"user_unlock"} <= actions
