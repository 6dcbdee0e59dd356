"""Response headers: nothing holding personal data may be cached (pages, downloads, the JSON
API), no page may be framed, and the application names no server."""
from __future__ import annotations

import re

from tests.calls_support import at, drawn_round


def token(client, url: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', client.get(url).get_data(as_text=True)).group(1)


def assert_private(response) -> None:
    assert response.headers["Cache-Control"] == "no-store", response.headers.get("Cache-Control")
    assert "ETag" not in response.headers and "Last-Modified" not in response.headers
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "Server" not in response.headers


def test_pages_and_downloads_are_not_cached(client, login, make_user):
    make_user("boss", "admin")
    assert_private(client.get("/"))  # the sign-in page
    login("boss")
    assert_private(client.get("/admin/users"))
    download = client.get("/org/import/template.xlsx")
    assert download.status_code == 200 and download.mimetype.endswith("sheet")
    assert_private(download)
    assert_private(client.get("/no-such-page"))


def test_the_json_api_is_not_cached(client, login, county, make_team, make_user, monkeypatch):
    monkeypatch.setattr("app.calls.routes.clock_now", lambda: at(23, 9, 30))
    setup = drawn_round(county, make_team, make_user)
    login(setup.caller.username)
    case_url = client.post("/calls/next", data={"csrf_token": token(client, "/calls/")}).headers["Location"]
    response = client.post(f"{case_url}/renew", data={"csrf_token": token(client, case_url)})
    assert response.status_code == 200 and response.is_json
    assert_private(response)


def test_style_sheets_may_be_cached(client):
    with client.get("/static/app.css") as css:
        assert css.status_code == 200 and css.headers.get("Cache-Control") != "no-store"
