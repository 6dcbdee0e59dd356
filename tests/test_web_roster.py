"""The roster pages (upload → preview → confirm, error reports) and the organisation pages
(county → institution → team) through the test client: roles, CSRF, county scoping, masking."""
from __future__ import annotations

import html as html_lib
import io
import re
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditLog, ImportBatch, Institution, Resident
from app.roster.context import import_context
from app.roster.importer import import_and_commit
from app.roster.batch import ImportOptions
from tests.helpers import TODAY, csrf_token, resident_count
from tests.rosters import HEADER, INSTITUTION, TEAM, Person, make_id, people, rows_of, write_csv, write_xlsx

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def text(response) -> str:
    return response.get_data(as_text=True)


def stats(page: str) -> dict[str, str]:
    """The counts block of a batch page: {'读取': '4', ...}."""
    return dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]*)</dd>", page))


def flashes(page: str) -> list[str]:
    return [html_lib.unescape(m) for m in re.findall(r'<div class="flash flash-\w+"[^>]*>([^<]*)</div>', page)]


def counts() -> dict[str, int]:
    db.session.rollback()
    return {t.name: db.session.scalar(select(func.count()).select_from(t)) for t in db.metadata.sorted_tables}


def batch_id_from(location: str) -> int:
    match = re.fullmatch(r"/roster/batches/(\d+)", location)
    assert match, location
    return int(match.group(1))


@pytest.fixture
def admin(client, make_user, login):
    user = make_user("cityadmin", "admin")
    login("cityadmin")
    return user


def upload(client, path: Path, *, county: str = "", create_missing: bool = False, full: bool = False, token: str | None = "fetch"):
    if token == "fetch":
        token = csrf_token(text(client.get("/roster/import")))
    data = {"county": county, "file": (io.BytesIO(Path(path).read_bytes()), Path(path).name)}
    if token is not None:
        data["csrf_token"] = token
    if create_missing:
        data["create_missing"] = "y"
    if full:
        data["full"] = "y"
    return client.post("/roster/import", data=data, content_type="multipart/form-data")


def confirm(client, batch_id: int, token: str | None = "fetch"):
    if token == "fetch":
        token = csrf_token(text(client.get(f"/roster/batches/{batch_id}")))
    data = {"csrf_token": token} if token is not None else {}
    return client.post(f"/roster/batches/{batch_id}/confirm", data=data)


def roster_with_one_bad_row(tmp_path) -> tuple[Path, list[Person]]:
    persons = people(4)
    rows = rows_of(persons)
    rows[2][HEADER.index("联系电话")] = "8221234"
    return write_xlsx(tmp_path / "岳阳县花名册.xlsx", rows), persons


# ---------------------------------------------------------------------------
# Upload → preview → confirm
# ---------------------------------------------------------------------------


def test_upload_shows_a_preview_and_writes_nothing(client, admin, team, tmp_path):
    path, _persons = roster_with_one_bad_row(tmp_path)
    before = counts()

    response = upload(client, path)

    assert response.status_code == 302
    preview_id = batch_id_from(response.headers["Location"])
    page = text(client.get(response.headers["Location"]))
    assert "预览（未写入）" in page and "岳阳县花名册.xlsx" in page
    assert stats(page) == {"读取": "4", "新增": "3", "更新": "0", "未变": "0", "拒绝": "1"}
    assert "确认导入" in page
    rows = re.findall(r"<tr><td>([^<]*)</td><td class=\"num\">(\d+)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", page)
    assert rows == [("签约居民", "6", "联系电话", "8221234", "固定电话缺少区号")]
    after = counts()
    assert after == {**before, "import_batches": 1, "audit_log": before["audit_log"] + 1}
    preview = db.session.get(ImportBatch, preview_id)
    assert (preview.status, preview.created_by, preview.created_by_id) == ("preview", "cityadmin", admin.id)
    assert preview.source_file and Path(client.application.config["UPLOAD_DIR"], preview.source_file).exists()


def test_confirm_imports_once_and_only_once(client, admin, team, tmp_path):
    path, persons = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])
    token = csrf_token(text(client.get(f"/roster/batches/{preview_id}")))

    response = confirm(client, preview_id, token)

    assert response.status_code == 302
    applied_id = batch_id_from(response.headers["Location"])
    assert applied_id != preview_id
    page = text(client.get(response.headers["Location"]))
    assert "导入完成：读取 4 行，新增 3，更新 0，未变 0，拒绝 1" in flashes(page)
    assert "已导入" in page and stats(page)["新增"] == "3"
    assert resident_count() == 3
    applied = db.session.get(ImportBatch, applied_id)
    assert (applied.status, applied.preview_of_id, applied.imported) == ("applied", preview_id, 3)
    db.session.expire_all()
    names = {r.name for r in db.session.scalars(select(Resident))}
    assert names == {persons[0].name, persons[1].name, persons[3].name}
    preview_page = text(client.get(f"/roster/batches/{preview_id}"))
    assert f"查看导入 #{applied_id}" in preview_page
    assert 'action="/roster/batches/%d/confirm"' % preview_id not in preview_page

    again = confirm(client, preview_id, token)  # a second click, a stale tab

    assert again.status_code == 302 and again.headers["Location"] == f"/roster/batches/{preview_id}"
    assert flashes(text(client.get(again.headers["Location"]))) == ["该批次已确认导入。"]
    assert resident_count() == 3
    statuses = [b.status for b in db.session.scalars(select(ImportBatch).order_by(ImportBatch.id))]
    assert statuses == ["preview", "applied"]  # a second click is no failure
    assert confirm(client, applied_id, token).status_code == 404  # only previews can be confirmed
    assert resident_count() == 3


def test_full_roster_upload_previews_and_applies_deactivation(client, admin, team, tmp_path):
    persons = people(3)
    first = batch_id_from(upload(client, write_csv(tmp_path / "a.csv", rows_of(persons))).headers["Location"])
    confirm(client, first)

    response = upload(client, write_csv(tmp_path / "b.csv", rows_of(persons[:2])), full=True)

    preview_id = batch_id_from(response.headers["Location"])
    page = text(client.get(f"/roster/batches/{preview_id}"))
    assert "全量名册" in page
    assert stats(page) == {"读取": "2", "新增": "0", "更新": "0", "未变": "2", "拒绝": "0", "停用": "1"}
    assert db.session.scalar(select(func.count()).select_from(Resident).where(Resident.active.is_(True))) == 3
    applied = confirm(client, preview_id)
    assert applied.status_code == 302
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Resident).where(Resident.active.is_(True))) == 2
    assert resident_count() == 3


def test_confirm_keeps_the_preview_options(client, admin, county, tmp_path):
    persons = people(3, institution="东塘镇中心卫生院", team="甲团队")
    path = write_csv(tmp_path / "new.csv", rows_of(persons))

    response = upload(client, path, county="岳阳县", create_missing=True)

    preview_id = batch_id_from(response.headers["Location"])
    page = text(client.get(f"/roster/batches/{preview_id}"))
    assert "县区：岳阳县" in page and "自动新建机构和团队" in page
    assert stats(page)["新建机构/团队"] == "1 / 1"
    assert counts()["institutions"] == 0
    applied = confirm(client, preview_id)
    assert applied.status_code == 302
    assert resident_count() == 3
    inst = db.session.scalar(select(Institution))
    assert (inst.name, inst.county_id, inst.type) == ("东塘镇中心卫生院", county.id, "中心卫生院")


def test_unreadable_upload_is_refused_with_a_chinese_message(client, admin, team, tmp_path):
    path = tmp_path / "broken.xlsx"
    path.write_bytes(b"PK\x03\x04 not a workbook" * 10)

    response = upload(client, path)

    assert response.status_code == 400
    assert "文件无法导入：无法读取 Excel 文件：文件已损坏、被加密或不是有效的 Excel 文件。" in flashes(text(response))
    assert resident_count() == 0
    assert [b.status for b in db.session.scalars(select(ImportBatch))] == ["failed"]


def test_upload_of_an_unsupported_type_is_refused(client, admin, team, tmp_path):
    path = tmp_path / "roster.pdf"
    path.write_bytes(b"%PDF-1.4")

    response = upload(client, path)

    assert response.status_code == 200  # the form again, with the field's error
    assert "名册文件：只支持 .xlsx、.xls、.csv 文件" in flashes(text(response))
    assert counts()["import_batches"] == 0


def test_confirm_after_the_upload_vanished_asks_for_a_new_upload(client, admin, team, tmp_path):
    path, _ = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])
    preview = db.session.get(ImportBatch, preview_id)
    Path(client.application.config["UPLOAD_DIR"], preview.source_file).unlink()

    response = confirm(client, preview_id)

    assert response.status_code == 302 and response.headers["Location"] == "/roster/import"
    assert "预览时上传的文件已不存在，请重新上传。" in flashes(text(client.get("/roster/import")))
    assert resident_count() == 0


def test_error_report_downloads_are_audit_logged(client, admin, team, tmp_path):
    path, _ = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])
    page = text(client.get(f"/roster/batches/{preview_id}"))
    assert f"/roster/batches/{preview_id}/report.xlsx" in page and f"/roster/batches/{preview_id}/report.csv" in page

    xlsx = client.get(f"/roster/batches/{preview_id}/report.xlsx")
    xlsx_body = xlsx.get_data()
    xlsx.close()
    csv = client.get(f"/roster/batches/{preview_id}/report.csv")
    csv_body = csv.get_data()
    csv.close()

    assert xlsx.status_code == 200 and csv.status_code == 200
    assert "attachment" in xlsx.headers["Content-Disposition"]
    assert f"导入错误报告-{preview_id}.xlsx" in unquote(xlsx.headers["Content-Disposition"])
    frame = pd.read_excel(io.BytesIO(xlsx_body), dtype=str, engine="openpyxl")
    assert frame.values.tolist() == [["签约居民", "6", "联系电话", "8221234", "固定电话缺少区号"]]
    assert csv_body.startswith(b"\xef\xbb\xbf")  # BOM, for Excel on Windows
    assert csv_body.decode("utf-8-sig").splitlines() == ["工作表,行号,列,值,原因", "签约居民,6,联系电话,8221234,固定电话缺少区号"]
    db.session.rollback()
    logs = db.session.scalars(select(AuditLog).where(AuditLog.action == "export.import_errors").order_by(AuditLog.id)).all()
    assert [(a.user_id, a.actor, a.target) for a in logs] == [(admin.id, "cityadmin", f"import_batch:{preview_id}")] * 2
    assert logs[0].detail.endswith(".xlsx") and logs[1].detail.endswith(".csv")


def test_rejected_values_are_escaped_on_the_page_and_neutralised_in_the_report(client, admin, team, tmp_path):
    persons = people(2)
    persons[0].name = "<script>alert(1)</script>"  # rejected: digits in the name
    persons[1].phone = "=HYPERLINK(\"http://x\")"  # rejected: not a phone
    preview_id = batch_id_from(upload(client, write_csv(tmp_path / "evil.csv", rows_of(persons))).headers["Location"])

    page = text(client.get(f"/roster/batches/{preview_id}"))

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    csv = client.get(f"/roster/batches/{preview_id}/report.csv")
    body = csv.get_data().decode("utf-8-sig")
    csv.close()
    values = pd.read_csv(io.StringIO(body), dtype=str, keep_default_na=False)["值"].tolist()
    assert values == ["<script>alert(1)</script>", "'=HYPERLINK(\"http://x\")"]
    xlsx = client.get(f"/roster/batches/{preview_id}/report.xlsx")
    frame = pd.read_excel(io.BytesIO(xlsx.get_data()), dtype=str, engine="openpyxl")
    xlsx.close()
    assert frame["值"].tolist() == values  # a string cell, never a formula


def test_error_report_of_a_clean_batch_or_odd_format_is_404(client, admin, team, tmp_path):
    clean = batch_id_from(upload(client, write_csv(tmp_path / "ok.csv", rows_of(people(2)))).headers["Location"])
    path, _ = roster_with_one_bad_row(tmp_path)
    dirty = batch_id_from(upload(client, path).headers["Location"])

    assert client.get(f"/roster/batches/{clean}/report.xlsx").status_code == 404
    assert client.get(f"/roster/batches/{dirty}/report.pdf").status_code == 404
    assert client.get("/roster/batches/9999/report.csv").status_code == 404
    assert counts()["audit_log"] == 2 + 1  # the two previews and the sign-in, no export


# ---------------------------------------------------------------------------
# CSRF, roles, anonymous users, GET requests
# ---------------------------------------------------------------------------


def test_posts_without_csrf_token_are_refused(client, admin, team, tmp_path):
    path, _ = roster_with_one_bad_row(tmp_path)

    refused_upload = upload(client, path, token=None)

    assert refused_upload.status_code == 400
    assert "表单已过期或来源无效" in text(refused_upload)
    assert counts()["import_batches"] == 0

    preview_id = batch_id_from(upload(client, path).headers["Location"])
    refused_confirm = confirm(client, preview_id, token=None)
    assert refused_confirm.status_code == 400
    forged = confirm(client, preview_id, token="not-a-token")
    assert forged.status_code == 400
    assert resident_count() == 0
    assert [b.status for b in db.session.scalars(select(ImportBatch))] == ["preview"]


@pytest.mark.parametrize("role", ["supervisor", "caller"])
def test_county_staff_cannot_import(client, make_user, login, county, team, tmp_path, role):
    make_user("other-admin", "admin")
    make_user("staff", role, county)
    ctx = import_context(client.application, actor="test")
    ctx.today = TODAY
    path, _ = roster_with_one_bad_row(tmp_path)
    preview = import_and_commit(db.session, path, ImportOptions(dry_run=True), ctx)
    login("staff")
    token = csrf_token(text(client.get("/org/")))
    before = counts()

    assert client.get("/roster/import").status_code == 403
    assert upload(client, path, token=token).status_code == 403
    assert client.get("/roster/batches").status_code == 403
    assert client.get(f"/roster/batches/{preview.batch_id}").status_code == 403
    assert confirm(client, preview.batch_id, token=token).status_code == 403
    assert client.get(f"/roster/batches/{preview.batch_id}/report.csv").status_code == 403
    page = text(client.get("/org/"))
    assert "导入名册" not in page
    assert counts() == before


@pytest.mark.parametrize(
    "url", ["/roster/import", "/roster/batches", "/roster/batches/1", "/roster/batches/1/report.xlsx", "/org/", "/org/teams/1"]
)
def test_anonymous_users_are_sent_to_sign_in(client, team, url):
    response = client.get(url)

    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/?next=") and unquote(location.split("next=", 1)[1]) == url
    assert "登录" in text(client.get(location))


def test_anonymous_post_changes_nothing(client, team, tmp_path):
    path, _ = roster_with_one_bad_row(tmp_path)
    token = csrf_token(text(client.get("/")))
    before = counts()

    response = upload(client, path, token=token)

    assert response.status_code == 302 and response.headers["Location"].startswith("/?next=")
    assert counts() == before


def test_get_requests_change_nothing(client, admin, team, tmp_path):
    path, _ = roster_with_one_bad_row(tmp_path)
    preview_id = batch_id_from(upload(client, path).headers["Location"])
    before = counts()

    for url in ("/roster/import", "/roster/batches", f"/roster/batches/{preview_id}", "/org/", f"/org/teams/{1}"):
        assert client.get(url).status_code == 200, url
    assert client.get(f"/roster/batches/{preview_id}/confirm").status_code == 405

    assert counts() == before
    batches_page = text(client.get("/roster/batches"))
    assert "岳阳县花名册.xlsx" in batches_page and "预览" in batches_page


# ---------------------------------------------------------------------------
# Organisation pages: counts, county scoping, masking
# ---------------------------------------------------------------------------


@pytest.fixture
def two_counties(app, make_county, make_team, tmp_path):
    """岳阳县 (one institution, two teams, three residents + one inactive) and 华容县 (two residents)."""
    yyx = make_county("岳阳县", "430621")
    hrx = make_county("华容县", "430623")
    a_team = make_team(yyx, INSTITUTION, TEAM)
    a_team2 = make_team(yyx, INSTITUTION, "李娜家庭医生团队")
    b_team = make_team(hrx, "东山镇卫生院", "刘洋家庭医生团队")
    ctx = import_context(app, actor="test")
    ctx.today = TODAY
    a = [
        Person("张三", make_id("19500101", "111"), phone="13800138000", labels="高血压、65岁及以上老年人"),
        Person("李四", make_id("19600101", "222"), phone="0730-8221234", labels="2型糖尿病"),
        Person("王五", make_id("19700101", "333"), phone="13900139000", team="李娜家庭医生团队", labels=""),
        Person("赵六", make_id("19800101", "444"), phone="13700137000", labels="高血压"),
    ]
    b = [
        Person("钱七", make_id("19500101", "555", "430623"), phone="13600136000", institution="东山镇卫生院", team="刘洋家庭医生团队"),
        Person("孙八", make_id("19550101", "666", "430623"), phone="13500135000", institution="东山镇卫生院", team="刘洋家庭医生团队"),
    ]
    import_and_commit(db.session, write_csv(tmp_path / "all.csv", rows_of(a + b)), ImportOptions(), ctx)
    # 赵六 leaves the roster of 新墙镇卫生院
    import_and_commit(db.session, write_csv(tmp_path / "a.csv", rows_of(a[:3])), ImportOptions(full=True), ctx)
    assert db.session.scalar(select(func.count()).select_from(Resident).where(Resident.active.is_(True))) == 5
    return {"A": yyx, "B": hrx, "a_team": a_team, "a_team2": a_team2, "b_team": b_team, "a": a, "b": b}


def unit_row(page: str, name: str) -> list[str]:
    """The cells of the unit table row whose link text is name."""
    for row in re.findall(r"<tr>(.*?)</tr>", page, flags=re.S):
        if re.search(rf">{re.escape(name)}</a>", row):
            return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
    raise AssertionError(f"no row for {name}")


def test_admin_sees_every_county_with_counts(client, make_user, login, two_counties):
    make_user("cityadmin", "admin")
    login("cityadmin")
    A, B = two_counties["A"], two_counties["B"]

    page = text(client.get("/org/"))

    # name, code, institutions, active, inactive, do-not-call, then one column per label
    assert unit_row(page, "岳阳县")[:6] == ["岳阳县", "430621", "1", "3", "1", "0"]
    assert unit_row(page, "华容县")[:6] == ["华容县", "430623", "1", "2", "0", "0"]
    for url in (
        f"/org/counties/{A.id}",
        f"/org/counties/{B.id}",
        f"/org/institutions/{two_counties['b_team'].institution_id}",
        f"/org/teams/{two_counties['b_team'].id}",
    ):
        assert client.get(url).status_code == 200, url
    county_page = text(client.get(f"/org/counties/{A.id}"))
    assert unit_row(county_page, INSTITUTION)[:6] == [INSTITUTION, "乡镇卫生院", "2", "3", "1", "0"]
    inst_page = text(client.get(f"/org/institutions/{two_counties['a_team'].institution_id}"))
    row = unit_row(inst_page, TEAM)
    assert row[:6] == [TEAM, "张伟", "", "2", "1", "0"]
    labels = re.findall(r'<th class="num small">([^<]+)</th>', inst_page)
    by_label = dict(zip(labels, row[6:]))
    assert (by_label["高血压"], by_label["65岁及以上老年人"], by_label["2型糖尿病"], by_label["一般人群"]) == ("1", "1", "1", "0")
    assert unit_row(inst_page, "李娜家庭医生团队")[3] == "1"


@pytest.mark.parametrize("role", ["supervisor", "caller"])
def test_county_staff_see_only_their_county(client, make_user, login, two_counties, role):
    A = two_counties["A"]
    B = two_counties["B"]
    make_user("staff", role, A)
    login("staff")

    page = text(client.get("/org/"))
    assert "岳阳县" in page and "华容县" not in page
    own = (f"/org/counties/{A.id}", f"/org/institutions/{two_counties['a_team'].institution_id}",
           f"/org/teams/{two_counties['a_team'].id}")
    if role == "caller":  # a caller works on cases, not on the roster: counts only, no unit page
        assert "/org/counties/" not in page and "机构与团队</a>" not in page
        for url in own:
            response = client.get(url)
            assert response.status_code == 403, url
            assert "张三" not in text(response)
        return
    assert unit_row(page, "岳阳县")[3] == "3"
    for url in own:
        assert client.get(url).status_code == 200, url
    for url in (
        f"/org/counties/{B.id}",
        f"/org/institutions/{two_counties['b_team'].institution_id}",
        f"/org/teams/{two_counties['b_team'].id}",
        "/org/counties/9999",
        "/org/institutions/9999",
        "/org/teams/9999",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        body = text(response)
        assert "东山镇卫生院" not in body and "刘洋" not in body and "钱七" not in body


def test_team_page_masks_phones_and_ids(client, make_user, login, two_counties):
    make_user("cityadmin", "admin")
    login("cityadmin")

    page = text(client.get(f"/org/teams/{two_counties['a_team'].id}"))

    assert "张三" in page and "李四" in page and "赵六" in page
    assert "138****8000" in page and "073****1234" in page
    for full in ("13800138000", "138 0013 8000", "07308221234", "0730-8221234", "13700137000"):
        assert full not in page
    for person in two_counties["a"]:
        if person.team != TEAM:
            assert person.name not in page
            continue
        assert person.id not in page and person.id[6:14] not in page
        assert "*" * 14 + person.id[-4:] in page
    zhao = re.search(r"<tr class=\"muted\">(.*?)</tr>", page, flags=re.S).group(1)
    assert "赵六" in zhao and "已停用" in zhao
    assert "高血压、65岁及以上老年人" in page or "65岁及以上老年人、高血压" in page

    found = text(client.get(f"/org/teams/{two_counties['a_team'].id}?q=8000"))
    assert "张三" in found and "李四" not in found


def test_team_search_keeps_its_query_across_pages(client, make_user, login, team, tmp_path):
    ctx = import_context(client.application, actor="test")
    ctx.today = TODAY
    import_and_commit(db.session, write_csv(tmp_path / "many.csv", rows_of(people(55))), ImportOptions(), ctx)
    import_and_commit(
        db.session,
        write_csv(tmp_path / "one.csv", [Person("外人", make_id("19990101", "901"), phone="13512345678").row()]),
        ImportOptions(),
        ctx,
    )
    make_user("cityadmin", "admin")
    login("cityadmin")

    page = text(client.get(f"/org/teams/{team.id}?q=居民"))

    assert "共 55 条" in page
    next_link = html_lib.unescape(re.search(r'<a href="([^"]+)">下一页</a>', page).group(1))
    assert "q=" in next_link, next_link
    second = text(client.get(next_link))
    assert "外人" not in second


def test_team_search_does_not_reveal_masked_phone_digits(client, make_user, login, two_counties):
    make_user("staff", "supervisor", two_counties["A"])
    login("staff")
    url = f"/org/teams/{two_counties['a_team'].id}?q="

    assert "张三" in text(client.get(url + "8000"))  # the four digits on screen: fine
    true_suffix = "张三" in text(client.get(url + "00138000"))  # the real number is 13800138000
    false_suffix = "张三" in text(client.get(url + "00938000"))

    assert true_suffix == false_suffix  # the page must not confirm hidden digits
