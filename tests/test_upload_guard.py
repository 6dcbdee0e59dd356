"""Files built to hurt the reader: each is refused with one Chinese message, the roster import
records a failed batch, and the process that was asked to read it carries on.

Every file is built here (xlsxwriter, then the zip rewritten by hand where a real exporter
would not go); nothing big is committed. Where a real bomb would take gigabytes, the limit is
made small instead (``UPLOAD_MAX_ROWS``, ``READER_MAX_MEMORY_MB``)."""
from __future__ import annotations

import html as html_lib
import io
import os
import re
import threading
import time
import zipfile
from pathlib import Path

import pytest
import xlsxwriter
from sqlalchemy import select

from app.core import sandbox
from app.core.sheets import SheetFileError
from app.core.upload_guard import ReadLimits, child_failure_message
from app.extensions import db
from app.models import ImportBatch
from app.roster.normalize import open_roster
from tests.helpers import csrf_token
from tests.rosters import HEADER, people, rows_of, write_csv

# ---------------------------------------------------------------------------
# The files
# ---------------------------------------------------------------------------


def workbook(path: Path, rows: list[list[str]], *, sheets: int = 1, header: list[str] = HEADER) -> Path:
    book = xlsxwriter.Workbook(str(path))
    for number in range(sheets):
        sheet = book.add_worksheet(f"名册{number + 1}")
        for r, row in enumerate([header, *rows]):
            for c, value in enumerate(row):
                sheet.write_string(r, c, str(value))
    book.close()
    return path


def rewrite(path: Path, change, extra: dict[str, bytes] | None = None) -> Path:
    """The workbook with its first sheet's XML changed by ``change`` (and members added)."""
    source = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(source)) as old, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as new:
        for member in old.infolist():
            data = old.read(member.filename)
            if member.filename == "xl/worksheets/sheet1.xml":
                data = change(data)
            new.writestr(member.filename, data)
        for name, data in (extra or {}).items():
            new.writestr(name, data)
    return path


FAR_CELL = b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row></sheetData>'


def forged_dimension(tmp_path: Path) -> Path:
    """The 2 KB workbook that made calamine ask for 512 GiB: a dimension of XFD1048576 and a
    cell there."""
    path = workbook(tmp_path / "forged.xlsx", rows_of(people(2)))
    path = rewrite(path, lambda xml: re.sub(rb'<dimension ref="[^"]*"/>', b'<dimension ref="A1:XFD1048576"/>', xml)
                   .replace(b"</sheetData>", FAR_CELL))
    assert path.stat().st_size < 10_000
    return path


def long_cell(tmp_path: Path) -> Path:
    rows = rows_of(people(3))
    rows[1][HEADER.index("住址")] = "岳阳县" * 500
    return workbook(tmp_path / "long-cell.xlsx", rows)


def huge_cell(tmp_path: Path) -> Path:
    """One cell of 30 MB (the 300 MB cell, scaled down): a few KB once compressed."""
    rows = rows_of(people(2))
    path = workbook(tmp_path / "huge-cell.xlsx", rows)
    return rewrite(path, lambda xml: xml.replace(
        b"</sheetData>", b'<row r="9"><c r="A9" t="inlineStr"><is><t>' + b"x" * (30 << 20) + b"</t></is></c></row></sheetData>"))


def zip_bomb(tmp_path: Path) -> Path:
    path = workbook(tmp_path / "bomb.xlsx", rows_of(people(2)))
    return rewrite(path, lambda xml: xml, {"xl/media/image1.bin": bytes(64 << 20)})


def many_sheets(tmp_path: Path) -> Path:
    return workbook(tmp_path / "sheets.xlsx", rows_of(people(1)), sheets=60)


def many_columns(tmp_path: Path) -> Path:
    header = HEADER + [f"备注{i}" for i in range(300)]
    rows = [row + [""] * 299 + ["x"] for row in rows_of(people(2))]
    return workbook(tmp_path / "columns.xlsx", rows, header=header)


def csv_quote(tmp_path: Path) -> Path:
    path = write_csv(tmp_path / "quote.csv", rows_of(people(3)))
    text = path.read_text("utf-8").splitlines()
    text[2] = text[2].replace(",", ',"', 1)
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


def csv_columns(tmp_path: Path) -> Path:
    path = tmp_path / "columns.csv"
    header = ",".join(HEADER) + "," * 1_000_000
    path.write_text(header + "\n" + ",".join(rows_of(people(1))[0]) + "\n", encoding="utf-8")
    return path


def csv_long_cell(tmp_path: Path) -> Path:
    rows = rows_of(people(3))
    rows[2][HEADER.index("住址")] = "x" * 5000
    return write_csv(tmp_path / "long-cell.csv", rows)


def csv_big5(tmp_path: Path) -> Path:
    header = ["姓名", "身份證號", "聯繫電話", "簽約機構", "簽約團隊", "簽約醫生", "簽約日期", "人群分類", "住址"]
    return write_csv(tmp_path / "big5.csv", [["張偉", "", "", "新牆鎮衛生院", "張偉團隊", "", "", "", "岳陽縣"]],
                     header=header, encoding="big5")


def csv_undecodable(tmp_path: Path) -> Path:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe\x00\x81\x30" * 200)
    return path


REFUSED = {
    "forged dimension": (forged_dimension, r"工作表 sheet1 声明的范围（XFD1048576）有 16384 列，超过上限 256 列"),
    "long cell": (long_cell, r"工作表“名册1”第3行第9列的内容有 1500 个字符，超过单元格上限 1000 个字符"),
    "huge cell": (huge_cell, r"压缩比超过 100 倍（解压后 30 MB），疑似压缩炸弹"),
    "zip bomb": (zip_bomb, r"部件 xl/media/image1.bin 的压缩比超过 100 倍（解压后 64 MB），疑似压缩炸弹"),
    "many sheets": (many_sheets, r"Excel 文件有 60 个工作表，超过上限 50 个"),
    "many columns": (many_columns, r"有 309 列，超过上限 256 列"),
    "csv quote": (csv_quote, r"CSV 格式错误：有未闭合的引号"),
    "csv columns": (csv_columns, r"文件有 \d+ 列，超过上限 256 列"),
    "csv long cell": (csv_long_cell, r"第4行第9列的内容有 5000 个字符，超过单元格上限 1000 个字符"),
    "big5": (csv_big5, r"^无法识别文件编码，请另存为UTF-8或GBK编码的CSV。$"),
    "undecodable": (csv_undecodable, r"^无法识别文件编码，请另存为UTF-8或GBK编码的CSV。$"),
}


# ---------------------------------------------------------------------------
# The reader
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_the_reader_refuses_it_in_chinese(tmp_path, kind):
    build, message = REFUSED[kind]
    path = build(tmp_path)
    with pytest.raises(SheetFileError, match=message):
        source = open_roster(path, 1000)
        list(source.chunks())


def test_a_csv_of_blank_lines_is_read(tmp_path):
    """100,000 blank lines fill whole blocks with nothing: pandas finds no column in them."""
    persons = people(2)
    path = write_csv(tmp_path / "blank.csv", rows_of(persons[:1]))
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\r\n" * 150_000 + ",".join(rows_of(persons[1:])[0]) + "\r\n")
    source = open_roster(path, 50_000)
    names = [n for block in source.blocks() for n in source.csv.parse(block).frame["name"]]
    assert names == [p.name for p in persons]
    assert [n for chunk in open_roster(path, 50_000).chunks() for n in chunk.frame["name"]] == names


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_no_more_rows_than_allowed(tmp_path, suffix):
    rows = rows_of(people(12))
    path = write_csv(tmp_path / "rows.csv", rows) if suffix == ".csv" else workbook(tmp_path / "rows.xlsx", rows)
    limits = ReadLimits(max_rows=10)
    with pytest.raises(SheetFileError, match="超过上限 10 行：请分批导入"):
        source = open_roster(path, 5, limits)
        list(source.blocks() if source.csv else source.chunks())
    assert sum(len(c.frame) for c in open_roster(path, 5, ReadLimits(max_rows=13)).chunks()) == 12


def test_a_hidden_sheet_is_named(tmp_path):
    path = tmp_path / "hidden.xlsx"
    book = xlsxwriter.Workbook(str(path))
    for name in ("名册", "备用"):
        sheet = book.add_worksheet(name)
        for r, row in enumerate([HEADER, *rows_of(people(2))]):
            for c, value in enumerate(row):
                sheet.write_string(r, c, value)
    sheet.hide()
    book.close()
    source = open_roster(path)
    assert source.hidden_sheets == ["备用"]
    assert "未读取隐藏的工作表：备用" in source.notice


def test_a_reader_that_outgrows_its_memory_ends_alone(tmp_path):
    """A cell far down and right, without a dimension to give it away: reading it needs a
    grid of a few hundred MB, more than the child may take; the child dies, not this process."""
    path = workbook(tmp_path / "far.xlsx", rows_of(people(2)))
    rewrite(path, lambda xml: re.sub(rb'<dimension ref="[^"]*"/>', b"", xml).replace(
        b"</sheetData>", b'<row r="400000"><c r="IV400000" t="inlineStr"><is><t>x</t></is></c></row></sheetData>'))
    with pytest.raises(SheetFileError, match=r"^文件无法读取：读取时所需内存超过上限（64 MB）"):
        list(open_roster(path, 1000, ReadLimits(memory_mb=64)).chunks())
    # the same file is within a bigger allowance: the limit, not the file, stopped it
    assert open_roster(path, 1000, ReadLimits(memory_mb=4096)).sheets == ["名册1"]


def _allocate(megabytes: int):
    yield len(bytearray(megabytes << 20))


def _spin():
    while True:
        pass
    yield  # pragma: no cover


def test_the_child_runs_out_of_memory_and_time_alone():
    with pytest.raises(sandbox.ChildFailed) as info:
        list(sandbox.stream(_allocate, (512,), sandbox.Limits(memory_mb=64, timeout_s=60)))
    assert info.value.reason == "memory"
    assert list(sandbox.stream(_allocate, (16,), sandbox.Limits(memory_mb=64, timeout_s=60))) == [16 << 20]
    with pytest.raises(sandbox.ChildFailed) as info:
        list(sandbox.stream(_spin, (), sandbox.Limits(memory_mb=64, timeout_s=1)))
    assert info.value.reason == "timeout"


def _stuck():
    yield "first"
    threading.Event().wait()  # never set: a child blocked on a lock, using no CPU


def test_a_stuck_child_is_ended_without_waiting_for_its_whole_time_limit(monkeypatch):
    monkeypatch.setattr(sandbox, "STALL_SECONDS", 2.0)
    items = sandbox.stream(_stuck, (), sandbox.Limits(memory_mb=64, timeout_s=60))
    assert next(items) == "first"
    with pytest.raises(sandbox.ChildFailed) as info:
        next(items)
    # ended by the stall check, not by the time limit, and said as such
    assert (info.value.reason, info.value.detail) == ("timeout", "stalled")
    assert "停止响应" in child_failure_message(info.value, ReadLimits())


def test_a_busy_child_is_not_taken_for_a_stuck_one(monkeypatch):
    monkeypatch.setattr(sandbox, "STALL_SECONDS", 1.0)
    with pytest.raises(sandbox.ChildFailed) as info:
        list(sandbox.stream(_spin, (), sandbox.Limits(memory_mb=64, timeout_s=3)))
    assert (info.value.reason, info.value.detail) == ("timeout", "no data")


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def test_closing_the_stream_early_ends_the_child():
    before = set(_children(os.getpid()))
    items = sandbox.stream(_allocate_forever, (), sandbox.Limits(memory_mb=256, timeout_s=60))
    assert next(items) == 0
    [child] = set(_children(os.getpid())) - before
    items.close()
    deadline = time.monotonic() + 30
    while child in _children(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert child not in _children(os.getpid())


def _allocate_forever():
    number = 0
    while True:
        yield number
        number += 1


# ---------------------------------------------------------------------------
# Through the web and the command line
# ---------------------------------------------------------------------------


def text(response) -> str:
    return response.get_data(as_text=True)


def flashes(page: str) -> list[str]:
    return [html_lib.unescape(m) for m in re.findall(r'<div class="flash flash-\w+"[^>]*>([^<]*)</div>', page)]


@pytest.fixture
def admin(client, make_user, login):
    user = make_user("cityadmin", "admin")
    login("cityadmin")
    return user


def post_file(client, url: str, path: Path):
    token = csrf_token(text(client.get(url)))
    data = {"csrf_token": token, "file": (io.BytesIO(path.read_bytes()), path.name)}
    if url == "/roster/import":
        data["county"] = ""
    return client.post(url, data=data, content_type="multipart/form-data")


# (a body over 500 KB, like the CSV of a million columns, leaves the test client a temporary file open: that
# one goes through the command line below)
WEB = ["forged dimension", "huge cell", "zip bomb", "many sheets", "csv quote", "csv long cell", "big5"]


@pytest.mark.parametrize("kind", WEB)
def test_the_roster_upload_refuses_it_and_records_a_failed_batch(app, client, admin, tmp_path, kind):
    build, message = REFUSED[kind]
    response = post_file(client, "/roster/import", build(tmp_path))
    assert response.status_code == 400
    [shown] = flashes(text(response))
    assert shown.startswith("文件无法导入：") and re.search(message.lstrip("^"), shown), shown
    db.session.rollback()
    [batch] = db.session.scalars(select(ImportBatch)).all()
    assert batch.status == "failed" and re.search(message, batch.message), batch.message
    assert client.get("/roster/import").status_code == 200  # the process that read it is alive


def both_sheets_long_cell(tmp_path: Path) -> Path:
    """A sheet both the organisation and the user import recognise, one cell too long."""
    path = tmp_path / "sheet.csv"
    lines = ["县区,机构,用户名,姓名,角色,手机", "岳阳县,新墙镇卫生院,zhang,张伟,调查员,13900000000",
             "岳阳" * 600 + "县,新墙镇卫生院,li,李娜,调查员,13900000001"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


OTHER_SHEETS = {**REFUSED, "long cell": (both_sheets_long_cell, r"第3行第1列的内容有 1201 个字符，超过单元格上限 1000 个字符")}


@pytest.mark.parametrize("kind", ["forged dimension", "zip bomb", "long cell"])
def test_the_organisation_and_user_sheets_refuse_it(client, admin, tmp_path, kind):
    build, message = OTHER_SHEETS[kind]
    path = build(tmp_path)
    for url in ("/org/import", "/admin/users/import"):
        response = post_file(client, url, path)
        assert response.status_code == 400, url
        page = html_lib.unescape(text(response))
        assert re.search(message.lstrip("^").rstrip("$"), page), url
    assert client.get("/org/import").status_code == 200


def test_the_memory_limit_applies_to_uploads(app, client, admin, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "READER_MAX_MEMORY_MB", 64)
    path = workbook(tmp_path / "far.xlsx", rows_of(people(2)))
    rewrite(path, lambda xml: re.sub(rb'<dimension ref="[^"]*"/>', b"", xml).replace(
        b"</sheetData>", b'<row r="400000"><c r="IV400000" t="inlineStr"><is><t>x</t></is></c></row></sheetData>'))
    response = post_file(client, "/roster/import", path)
    assert response.status_code == 400
    assert "读取时所需内存超过上限（64 MB）" in flashes(text(response))[0]
    db.session.rollback()
    assert db.session.scalars(select(ImportBatch.status)).all() == ["failed"]
    assert client.get("/roster/import").status_code == 200


def test_the_row_limit_applies_to_uploads(app, client, admin, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "UPLOAD_MAX_ROWS", 5)
    response = post_file(client, "/roster/import", write_csv(tmp_path / "rows.csv", rows_of(people(8))))
    assert response.status_code == 400
    assert "超过上限 5 行" in flashes(text(response))[0]


@pytest.mark.parametrize("name", ["roster.txt", "roster.xlsm"])
def test_the_web_and_the_command_line_accept_the_same_files(app, client, admin, runner, tmp_path, name):
    path = write_csv(tmp_path / name, rows_of(people(2)))
    for url in ("/roster/import", "/org/import", "/admin/users/import"):
        assert "只支持 .xlsx、.xls、.csv 文件" in html_lib.unescape(text(post_file(client, url, path))), url
    for command in (["roster", "import"], ["org", "import"], ["users", "import"]):
        result = runner.invoke(args=[*command, str(path)])
        assert result.exit_code != 0, command
        assert f"不支持的文件类型“{path.suffix}”：请上传 .xlsx、.xls 或 .csv 文件。" in result.output, command


@pytest.mark.parametrize("kind", ["forged dimension", "zip bomb", "csv quote", "csv columns", "big5"])
def test_the_command_line_refuses_it_with_a_failed_batch(app, runner, tmp_path, kind):
    build, message = REFUSED[kind]
    result = runner.invoke(args=["roster", "import", str(build(tmp_path))])
    assert result.exit_code == 1
    assert result.output.startswith("Error: 导入失败：") and re.search(message.lstrip("^").rstrip("$"), result.output)
    db.session.rollback()
    assert db.session.scalars(select(ImportBatch.status)).all() == ["failed"]


def test_the_organisation_and_user_sheets_name_a_hidden_sheet(client, admin, tmp_path):
    path = tmp_path / "units-and-users.xlsx"
    book = xlsxwriter.Workbook(str(path))
    for name in ("名单", "旧名单"):
        sheet = book.add_worksheet(name)
        for r, row in enumerate([["县区", "县区代码", "机构", "用户名", "姓名", "角色", "手机"],
                                 ["岳阳县", "430621", "新墙镇卫生院", "zhangwei", "张伟", "调查员", "13900000000"]]):
            for c, value in enumerate(row):
                sheet.write_string(r, c, value)
    sheet.hide()
    book.close()
    for url in ("/org/import", "/admin/users/import"):
        response = post_file(client, url, path)
        assert response.status_code == 302, url
        page = html_lib.unescape(text(client.get(response.headers["Location"])))
        assert "未读取隐藏的工作表：旧名单（如需导入，请在 Excel 中取消隐藏后重新上传）" in page, url
