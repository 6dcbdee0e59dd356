"""Input nobody types by hand must not crash a request: ids beyond what a row can have, in the
path, the query string, a form or the session. Each gets the Chinese error page or is treated
as "no such row", on both databases."""
from __future__ import annotations

import io
import re

from app.core.ids import MAX_ID, as_id

HUGE = (MAX_ID + 1, 2**63, 10**30)


def test_as_id():
    assert [as_id(v) for v in ("1", " 42 ", str(MAX_ID))] == [1, 42, MAX_ID]
    assert [as_id(v) for v in ("", None, "0", "-1", "1.5", "x1", str(MAX_ID + 1), "９", "1" * 40)] == [None] * 9


def _int_routes(app) -> list[tuple[str, str]]:
    """(method, URL) for each rule with an id in its path, each id written as {}."""
    urls = set()
    for rule in app.url_map.iter_rules():
        if "<int:" not in rule.rule:
            continue
        url = rule.rule.replace("<int:", "<id:")
        url = re.sub(r"<id:\w+>", "{}", url)
        url = re.sub(r"<any\(([^,)]+)[^)]*\):\w+>", lambda m: m.group(1).strip().strip("'\""), url)
        url = re.sub(r"<(?:string:)?\w+>", "x", url)
        urls.update((method, url) for method in rule.methods - {"HEAD", "OPTIONS"})
    return sorted(urls)


def test_every_id_in_a_path_beyond_the_range_is_not_found(app, client, login, make_user):
    make_user("boss", "admin")
    login("boss")
    urls = _int_routes(app)
    assert len(urls) > 20  # the crawl reached the id routes
    for method, template in urls:
        for huge in HUGE:
            url = template.replace("{}", str(huge))
            response = client.open(url, method=method)
            assert response.status_code == 404, (method, url, response.status_code)
            assert "页面不存在" in response.get_data(as_text=True)


def test_ids_in_query_strings_and_forms_beyond_the_range_find_nothing(client, login, make_user, county):
    make_user("boss", "admin")
    login("boss")
    for huge in HUGE:
        for url in (f"/calls/cases?round={huge}", f"/calls/cases?county={huge}", f"/admin/users?county={huge}",
                    f"/reports/rankings?level=team&county={huge}", f"/reports/monthly.xlsx?county={huge}",
                    f"/calls/board?county={huge}", f"/reports/problems?county={huge}",
                    f"/reports/problems?institution={huge}&team={huge}",
                    f"/audit/?since=0001-01-01", f"/audit/?until=9999-12-31", f"/audit/export.xlsx?until=9999-12-31"):
            response = client.get(url)
            assert response.status_code in (200, 302, 400, 404), (url, response.status_code)


def test_a_session_naming_an_impossible_user_is_signed_out(app, client):
    with client.session_transaction() as session:
        session["_user_id"] = f"{2**63}.mark"
    response = client.get("/calls/")
    assert response.status_code == 302 and "/?next=" in response.headers["Location"] or \
        response.headers["Location"].endswith("/")


# ---------------------------------------------------------------------------
# NUL and other control characters: PostgreSQL refuses them in any text, so each is refused
# (with a Chinese message) before it reaches the database, on both databases
# ---------------------------------------------------------------------------

NUL = "\x00"


def _page(response) -> str:
    return response.get_data(as_text=True)


def _post(client, url, data, token_from=None):
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', _page(client.get(token_from or url)))
    return client.post(url, data={**data, "csrf_token": token.group(1)})


def test_a_nul_in_the_sign_in_name_is_a_failed_sign_in(client, make_user):
    make_user("boss", "admin")
    for name in (f"boss{NUL}", NUL, f"bo{NUL}ss\x07"):
        response = _post(client, "/", {"username": name, "password": "test-password-1"})
        assert response.status_code in (200, 400), response.status_code
        assert "不能包含控制字符" in _page(response) or "用户名或密码错误" in _page(response)
    response = _post(client, "/", {"username": "boss", "password": f"test-password-1{NUL}"})
    assert response.status_code == 200 and "用户名或密码错误" in _page(response)


def test_a_nul_in_a_users_fields_gets_the_chinese_message(client, login, make_user, county):
    boss = make_user("boss", "admin")
    login("boss")
    base = {"username": "wang", "real_name": "王五", "role": "caller", "county": str(county.id), "phone": "",
            "password": "caller-pass-1", "confirm": "caller-pass-1"}
    for field in ("username", "real_name", "phone"):
        response = _post(client, "/admin/users/new", {**base, field: f"wang{NUL}li"})
        assert response.status_code == 400, field
        assert "不能包含控制字符" in _page(response) or "无效" in _page(response), field
    response = _post(client, f"/admin/users/{boss.id}/edit",
                     {"role": "admin", "county": "", "enabled": "y", "real_name": f"王{NUL}", "phone": ""})
    assert response.status_code == 400 and "不能包含控制字符" in _page(response)


def test_a_nul_in_an_attempt_note_gets_the_chinese_message(app, client, login, county, make_team, make_user,
                                                          monkeypatch):
    from tests.calls_support import at, drawn_round

    monkeypatch.setattr("app.calls.routes.clock_now", lambda: at(23, 9, 30))
    setup = drawn_round(county, make_team, make_user)
    login(setup.caller.username)
    first = _post(client, "/calls/next", {}, token_from="/calls/")
    case_url = first.headers["Location"]
    response = _post(client, f"{case_url}/attempt", {"outcome": "no_answer", "number": "1", "note": f"忙{NUL}"},
                     token_from=case_url)
    assert response.status_code in (200, 302, 400), response.status_code
    followed = client.get(case_url) if response.status_code == 302 else response
    assert "不能包含控制字符" in _page(followed)


def test_a_nul_in_a_query_string_is_refused_in_chinese(client, login, make_user):
    make_user("boss", "admin")
    login("boss")
    for url in (f"/admin/users?q=a{NUL}", f"/calls/cases?q=1{NUL}", f"/org/?q={NUL}"):
        response = client.get(url)
        assert response.status_code in (200, 302, 400, 404), (url, response.status_code)
        if response.status_code == 400:
            assert "控制字符" in _page(response)


def test_a_nul_in_a_user_import_sheet_rejects_its_row_in_chinese(client, login, make_user, county, tmp_path):
    make_user("boss", "admin")
    login("boss")
    rows = ["用户名,姓名,角色,所属县区,手机,初始密码",
            "good1,张三,调查员,岳阳县,,",
            f"bad{NUL}name,李四,调查员,岳阳县,,",
            f"bad2,王{NUL}五,调查员,岳阳县,,",
            f"bad3,赵六,调查员,岳阳县,138{NUL}00138000,",
            f"bad4,钱七,调查{NUL}员,岳阳县,,",
            f"bad5,孙八,调查员,岳阳{NUL}县,,"]
    content = ("\n".join(rows) + "\n").encode("utf-8-sig")
    page = _page(client.get("/admin/users/import"))
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post("/admin/users/import", content_type="multipart/form-data",
                           data={"csrf_token": token, "file": (io.BytesIO(content), "users.csv")})
    assert response.status_code in (200, 302, 400), response.status_code
    preview = _page(client.get(response.headers["Location"])) if response.status_code == 302 else _page(response)
    assert "Traceback" not in preview and "Internal Server Error" not in preview
    if response.status_code == 302:
        assert "将创建 <strong>1</strong> 个用户，拒绝 5 行" in preview
        assert "用户名不能包含控制字符" in preview


def test_the_error_page_survives_a_broken_template_or_database(make_app, monkeypatch, dialect):
    from sqlalchemy import text as sql

    import app as factory
    from app.extensions import db

    broken = make_app(PROPAGATE_EXCEPTIONS=False)

    @broken.route("/boom")
    def boom():
        raise RuntimeError("boom")

    @broken.route("/echo")
    def echo():
        from flask import request
        return str(db.session.scalar(sql("SELECT :x"), {"x": request.args.get("x", "")}) is not None)

    client = broken.test_client()
    page = client.get("/boom")
    assert page.status_code == 500 and "服务器内部错误" in _page(page)

    def unusable(*_args, **_kwargs):
        raise RuntimeError("the database is gone")

    monkeypatch.setattr(factory, "render_template", unusable)
    page = client.get("/boom")
    assert page.status_code == 500 and "服务器内部错误" in _page(page)
    assert "Internal Server Error" not in _page(page) and page.mimetype == "text/html"
    monkeypatch.undo()

    # text with a NUL that no form caught: refused as bad input where the database refuses it
    page = client.get("/echo?x=a%00b")
    if dialect == "postgresql":
        assert page.status_code == 400 and "不能包含控制字符" in _page(page)
    else:
        assert page.status_code == 200
    assert client.get("/echo?x=ab").status_code == 200
