"""Input nobody types by hand must not crash a request: ids beyond what a row can have, in the
path, the query string, a form or the session. Each gets the Chinese error page or is treated
as "no such row", on both databases."""
from __future__ import annotations

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
                    f"/reports/rankings?level=team&county={huge}", f"/reports/monthly.xlsx?county={huge}"):
            response = client.get(url)
            assert response.status_code in (200, 302, 400, 404), (url, response.status_code)


def test_a_session_naming_an_impossible_user_is_signed_out(app, client):
    with client.session_transaction() as session:
        session["_user_id"] = f"{2**63}.mark"
    response = client.get("/calls/")
    assert response.status_code == 302 and "/?next=" in response.headers["Location"] or \
        response.headers["Location"].endswith("/")
