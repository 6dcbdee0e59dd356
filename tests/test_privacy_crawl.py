"""Nothing the product shows or exports rebuilds an ID number, and full phones stay where they
belong (docs/privacy.md).

A county is seeded the way it is in production: a roster imported from a file (with one bad
row, so there is an error report), a month drawn, one interview done over HTTP and one case
held by a caller. Then, as each role, a crawler follows every same-origin link reachable from
the navigation (breadth first, bounded), submits every GET form it meets once as it stands
(search, filters, month and unit selectors: some exports are reached only that way), downloads
the spreadsheets it meets (read cell by cell) and checks every page and file:

(a) no seeded resident's full ID number appears;
(b) for every resident whose name or masked ID appears, the ID cannot be rebuilt from what the
    page shows: region (the county's code) + birth date (in any common notation) + last four;
    concretely the birth date never appears there, and a roster page shows the birth year, not
    an age as of today (which, watched day by day, gives the birthday);
(c) a resident's full phone appears only on the case screen of a case the crawling caller
    holds, or in a call list (the download and the print page, both audit-logged).
"""
from __future__ import annotations

import csv
import html
import io
import re
from collections import deque
from datetime import date
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit

import openpyxl
import pytest
from sqlalchemy import select

from app.extensions import db
from app.draws.services import draw_month_and_commit
from app.models import Case, Resident
from app.roster.batch import ImportOptions
from app.roster.context import import_context
from app.roster.importer import import_and_commit
from tests.calls_support import at
from tests.draws_support import MONTH, NOW, SETTINGS
from tests.helpers import PASSWORD, csrf_token
from tests.rosters import INSTITUTION, OTHER_TEAM, REGION, TEAM, Person, bad_check_digit, make_id, people, rows_of
from tests.rosters import write_csv

MAX_PAGES = 400
MAX_VARIANTS = 12  # query-string variants of one path (filters, pages) followed
ROUTES_WITH_CLOCKS = ("app.calls.routes", "app.reports.routes", "app.reports.problem_routes", "app.draws.routes",
                      "app.overview.routes", "app.scheduler.routes")
SPREADSHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# ---------------------------------------------------------------------------
# The seeded county
# ---------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    state = {"now": at(23, 9, 30)}
    for module in ROUTES_WITH_CLOCKS:
        monkeypatch.setattr(f"{module}.clock_now", lambda: state["now"], raising=False)
    return state


def sign_in(app, username: str):
    client = app.test_client()
    page = client.get("/").get_data(as_text=True)
    reply = client.post("/", data={"username": username, "password": PASSWORD, "csrf_token": csrf_token(page)})
    assert reply.status_code == 302, reply.get_data(as_text=True)[:300]
    return client


@pytest.fixture
def seeded(app, county, make_team, make_user, clock, tmp_path):
    make_team(county, INSTITUTION, TEAM)
    make_team(county, INSTITUTION, OTHER_TEAM)
    persons = people(16, first_seq=200) + people(10, first_seq=400, birth_year=1945, team=OTHER_TEAM)
    persons = [Person(name=f"{p.name}{'甲' if p.team == TEAM else '乙'}", id=p.id, phone=f"1{i + 30}{i:08d}",
                      team=p.team, labels=p.labels) for i, p in enumerate(persons)]
    rejected = Person("错号丙", bad_check_digit(make_id("19700707", "777")), phone="13712345678")
    admin = make_user("cityadmin", "admin")
    ctx = import_context(app, actor=admin.username, user_id=admin.id)
    result = import_and_commit(db.session, write_csv(tmp_path / "岳阳县名册.csv", rows_of(persons + [rejected])),
                               ImportOptions(), ctx)
    assert (result.imported, result.rejected) == (len(persons), 1), result
    draw_month_and_commit(db.session, MONTH, now=NOW, settings=SETTINGS, actor="test", county_ids=[county.id])
    supervisor = make_user("super", "supervisor", county)
    caller = make_user("caller", "caller", county)
    make_user("other", "caller", county)

    with app.app_context():  # one interview, done over HTTP by the caller
        client = sign_in(app, "caller")
        post = lambda url, data=None: client.post(url, data={**(data or {}), "csrf_token": csrf_token(  # noqa: E731
            client.get("/calls/").get_data(as_text=True))})
        case_id = int(post("/calls/next").headers["Location"].rsplit("/", 1)[1])
        url = post(f"/calls/case/{case_id}/start", {"number": "1"}).headers["Location"]
        for value in ("self", "yes", "yes", ["follow_up", "checkup"], "3", "helpful", "satisfied", "yes",
                      "医生很负责", "no"):
            url = post(url, {"value": value}).headers["Location"]
        assert url.endswith("/review"), url
        post(url.replace("/review", "/finish"))
        held = int(post("/calls/next").headers["Location"].rsplit("/", 1)[1])  # one more, held on
    db.session.rollback()
    assert db.session.get(Case, case_id).outcome == "complete"
    assert db.session.get(Case, held).leased_by_id == caller.id
    residents = {r.name: r for r in db.session.scalars(select(Resident))}
    assert len(residents) == len(persons)
    return {"persons": persons, "rejected": rejected, "residents": residents, "held": held,
            "users": {"admin": admin, "supervisor": supervisor, "caller": caller}}


# ---------------------------------------------------------------------------
# The crawler
# ---------------------------------------------------------------------------


def _cells_of_xlsx(data: bytes) -> str:
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    try:
        return "\n".join("\t".join("" if v is None else str(v) for v in row)
                         for sheet in book.worksheets for row in sheet.iter_rows(values_only=True))
    finally:
        book.close()


def _cells_of_csv(data: bytes) -> str:
    return "\n".join("\t".join(row) for row in csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def _links(page: str, base: str) -> list[str]:
    out = []
    for href in re.findall(r'<a\b[^>]*\bhref="([^"]+)"', page):
        href = html.unescape(href)
        if href.startswith(("tel:", "mailto:", "javascript:", "#")):
            continue
        url = urljoin(base, href)
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or parts.path.startswith("/static/"):
            continue
        out.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    return out


class _GetForms(HTMLParser):
    """The GET forms of a page (a form without ``method`` is one), each with the values a
    browser would send unchanged: inputs' values (checked boxes only), a select's selected
    option (else its first), a textarea's text. Buttons send nothing."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[str, list[tuple[str, str]]]] = []
        self._form: list[tuple[str, str]] | None = None
        self._action = ""
        self._select: tuple[str, list[str], list[int]] | None = None  # name, options, selected
        self._option_text: list[str] | None = None  # inside an <option> without a value
        self._textarea: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: ("" if v is None else v) for k, v in attrs}
        if tag == "form":
            get = (a.get("method") or "get").lower() == "get"
            self._form, self._action = ([], a.get("action", "")) if get else (None, "")
        elif self._form is None:
            return
        elif tag == "input" and a.get("name") and "disabled" not in a:
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "reset", "image", "file"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._form.append((a["name"], a.get("value", "on")))
                return
            self._form.append((a["name"], a.get("value", "")))
        elif tag == "select" and a.get("name") and "disabled" not in a:
            self._select = (a["name"], [], [])
        elif tag == "option" and self._select is not None:
            self._select[1].append(a.get("value", ""))
            if "selected" in a:
                self._select[2].append(len(self._select[1]) - 1)
            self._option_text = [] if "value" not in a else None
        elif tag == "textarea" and a.get("name"):
            self._textarea = (a["name"], [])

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1].append(data)
        elif self._option_text is not None:
            self._option_text.append(data)

    def handle_endtag(self, tag):
        if self._form is None:
            return
        if tag == "option" and self._select is not None and self._option_text is not None:
            self._select[1][-1] = "".join(self._option_text).strip()  # no value: it sends its text
            self._option_text = None
        elif tag == "select" and self._select is not None:
            name, options, selected = self._select
            if options:
                self._form.append((name, options[selected[0] if selected else 0]))
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self._form.append((self._textarea[0], "".join(self._textarea[1])))
            self._textarea = None
        elif tag == "form":
            self.forms.append((self._action, self._form))
            self._form = None


def _form_urls(page: str, base: str) -> list[str]:
    """The URL each GET form of ``page`` requests when submitted as it stands."""
    parser = _GetForms()
    parser.feed(page)
    out = []
    for action, fields in parser.forms:
        target = urljoin(base, action or base)
        query = urlencode(fields)
        out.extend(_links(f'<a href="{html.escape(target.split("?")[0] + ("?" + query if query else ""))}">', base))
    return out


def crawl(client, forms: bool = True) -> tuple[dict[str, tuple[str, str]], set[str]]:
    """{url: (kind, text)} of every page and export reached from the start page, by its links
    and (``forms``) by submitting each GET form once as it stands, and the URLs among them that
    only a form led to. ``kind`` is html, xlsx, csv or json; ``text`` what a person sees in it
    (cells of a spreadsheet)."""
    seen: dict[str, tuple[str, str]] = {}
    variants: dict[str, int] = {}
    linked: set[str] = {"/"}  # every URL some link (or redirect) points to
    from_forms: set[str] = set()
    queue = deque(["/"])
    queued = {"/"}
    while queue and len(seen) < MAX_PAGES:
        url = queue.popleft()
        with client.get(url) as reply:
            status, mimetype, data = reply.status_code, reply.mimetype, reply.get_data()
            location = reply.headers.get("Location")
        if status in (301, 302, 303) and location:
            target = _links(f'<a href="{location}">', url)
            linked.update(target)
            for link in target:
                if link not in queued:
                    queued.add(link)
                    queue.append(link)
            continue
        if status != 200:
            continue
        if mimetype == SPREADSHEET or url.split("?")[0].endswith(".xlsx"):
            seen[url] = ("xlsx", _cells_of_xlsx(data))
            continue
        if mimetype == "text/csv" or url.split("?")[0].endswith(".csv"):
            seen[url] = ("csv", _cells_of_csv(data))
            continue
        body = data.decode("utf-8")
        if mimetype == "application/json":
            seen[url] = ("json", body)
            continue
        seen[url] = ("html", html.unescape(body))
        links = _links(body, url)
        linked.update(links)
        submitted = _form_urls(body, url) if forms else []
        from_forms.update(submitted)
        for link in links + submitted:
            path = link.split("?")[0]
            if link in queued or "/logout" in path:
                continue
            if "?" in link:
                if variants.get(path, 0) >= MAX_VARIANTS:
                    continue
                variants[path] = variants.get(path, 0) + 1
            queued.add(link)
            queue.append(link)
    return seen, {url for url in from_forms - linked if url in seen}


# ---------------------------------------------------------------------------
# What must never be shown
# ---------------------------------------------------------------------------


def birth_notations(day: date) -> set[str]:
    y, m, d = day.year, day.month, day.day
    return {f"{y}-{m:02d}-{d:02d}", f"{y}{m:02d}{d:02d}", f"{y}年{m}月{d}日", f"{y}年{m:02d}月{d:02d}日",
            f"{y}/{m}/{d}", f"{y}/{m:02d}/{d:02d}", f"{y}.{m:02d}.{d:02d}", f"{y}-{m}-{d}"}


def rebuild(text: str, name: str, masked: str, region: str, births: dict[str, date]) -> str | None:
    """What someone reading ``text`` could do: when the page names the person (or shows their
    masked ID), take the region from the county, a birth date shown anywhere on it and the
    last four of the masked ID, and put them together. None when a part is missing."""
    if name not in text and masked not in text:
        return None
    shown_births = [day for day in births.values() if any(n in text for n in birth_notations(day))]
    last4 = masked[-4:] if masked in text else None
    for day in shown_births:
        if last4:
            return f"{region}{day:%Y%m%d}{last4}"
    return None


def phone_forms(phone: str) -> set[str]:
    return {phone, f"{phone[:3]} {phone[3:7]} {phone[7:]}", f"{phone[:3]}-{phone[3:7]}-{phone[7:]}"}


def allowed_full_phone(url: str, kind: str, role: str, held: dict[int, str]) -> set[str]:
    """The full phones ``url`` may show to ``role``: a call list shows its round's, the case
    screen of a case the caller holds shows that case's."""
    if re.fullmatch(r"/draws/\d+/(call-list\.(xlsx|csv)|print)", url):
        return {"*"}
    match = re.fullmatch(r"/calls/case/(\d+)", url)
    if match and role in ("caller", "supervisor") and int(match.group(1)) in held:
        return {held[int(match.group(1))]}
    return set()


@pytest.mark.parametrize("role", ["admin", "supervisor", "caller"])
def test_no_page_or_export_rebuilds_an_id_or_leaks_a_phone(app, seeded, role):
    user = seeded["users"][role]
    with app.app_context():
        client = sign_in(app, user.username)
        pages, form_only = crawl(client)
    db.session.rollback()
    held = {c.id: c.phone for c in db.session.scalars(select(Case).where(Case.leased_by_id == user.id,
                                                                         Case.status == "queued"))}
    persons = seeded["persons"]
    residents = seeded["residents"]
    births = {p.name: date(int(p.id[6:10]), int(p.id[10:12]), int(p.id[12:14])) for p in persons}
    clear_ids = [p.id for p in persons] + [seeded["rejected"].id]

    # the crawl submitted the GET forms: the case search for every role, the audit log's
    # filters and the reports' month and unit selectors for staff
    assert any(url.startswith("/calls/cases?") and "q=" in url for url in form_only), sorted(form_only)
    if role != "caller":
        assert any(url.startswith("/audit/?") for url in form_only), sorted(form_only)
        assert any(url.startswith("/reports/rankings?") for url in form_only), sorted(form_only)
        assert any(url.startswith("/reports/problems?") for url in form_only), sorted(form_only)

    # the crawl is not vacuous: it saw the roster or the cases, and the exports there are
    kinds = [kind for kind, _ in pages.values()]
    names_seen = {p.name for p in persons if any(p.name in text for _, text in pages.values())}
    if role == "caller":
        assert len(pages) >= 10, sorted(pages)
        assert any(re.fullmatch(r"/calls/case/\d+", url) for url in pages)
        assert not any(url.startswith("/org/") and url != "/org/" for url in pages), sorted(pages)
        assert seeded["held"] in held
    else:
        assert len(pages) >= 40, sorted(pages)
        assert kinds.count("xlsx") >= 2 and kinds.count("csv") >= 1, sorted(pages)
        assert any(re.fullmatch(r"/org/teams/\d+", url) for url in pages)
        assert any(re.fullmatch(r"/draws/\d+/call-list\.xlsx", url) for url in pages)
        assert len(names_seen) == len(persons)  # every resident is on some page (the team pages)
        if role == "admin":  # the import's error report
            assert any(re.fullmatch(r"/roster/batches/\d+/report\.xlsx", url) for url in pages), sorted(pages)
    assert len(names_seen) >= 10

    shown_full = []
    for url, (kind, text) in pages.items():
        # (a) no clear ID number, in either case of its check character
        for ident in clear_ids:
            assert ident not in text and ident.lower() not in text, (url, ident)
        # (b) nothing that rebuilds one
        for person in persons:
            masked = residents[person.name].id_masked
            assert masked == "*" * 14 + person.id[-4:]
            if person.name in text or masked in text:
                for notation in birth_notations(births[person.name]):
                    assert notation not in text, (url, person.name, notation)
            assert rebuild(text, person.name, masked, REGION, births) is None, (url, person.name)
        # a roster page shows the birth year, never an age as of today (it would tick on the birthday)
        if re.fullmatch(r"/org/teams/\d+(\?.*)?", url):
            assert "<th>年龄</th>" not in text and "<th>出生年份</th>" in text, url
        # (c) full phones only where they belong
        allowed = allowed_full_phone(url, kind, role, held)
        for person in persons:
            if any(form in text for form in phone_forms(person.phone)):
                assert "*" in allowed or person.phone in allowed, (url, person.name)
                shown_full.append(url)
    if role == "caller":
        assert f"/calls/case/{seeded['held']}" in shown_full  # the held case did show its phone
    else:
        assert any("/call-list." in url for url in shown_full)


def test_the_rebuild_attempt_finds_an_id_when_the_parts_are_shown():
    """The check above is not blind: a page with the old mask's last four and a birth date
    beside the name gives the ID back."""
    ident = make_id("19600101", "201")
    page = f"<td>居民甲</td><td>1960-01-01</td><td>**************{ident[-4:]}</td>"
    assert rebuild(page, "居民甲", "*" * 14 + ident[-4:], REGION, {"居民甲": date(1960, 1, 1)}) == ident
    assert rebuild(page.replace("1960-01-01", "65岁"), "居民甲", "*" * 14 + ident[-4:], REGION,
                   {"居民甲": date(1960, 1, 1)}) is None


def test_the_crawler_submits_each_get_form_as_it_stands():
    page = """
    <form method="post" action="/x"><input name="csrf_token" value="t"></form>
    <form class="search"><input type="hidden" name="round" value="7"><input type="search" name="q" value="">
      <select name="status"><option value="">全部</option><option value="done">已结束</option></select>
      <select name="month"><option>2026-10</option><option selected>2026-11</option></select>
      <input type="checkbox" name="all" value="1"><input type="checkbox" name="mine" value="1" checked>
      <button type="submit" name="go" value="1">查找</button></form>
    <form method="GET" action="/audit/"><textarea name="note">a&amp;b</textarea></form>"""

    assert _form_urls(page, "/calls/cases?page=2") == [
        "/calls/cases?round=7&q=&status=&month=2026-11&mine=1", "/audit/?note=a%26b"]
